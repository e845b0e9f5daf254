package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
)

// TestGitHookChecksSignatureAndInput sends the webhook what a user's Git
// host (or someone else) might: unsigned, wrongly signed, malformed, a
// ping, and a push of a repository no application follows.
func TestGitHookChecksSignatureAndInput(t *testing.T) {
	skipShort(t)
	d := newDevNode(t)
	d.extra = []string{"--webhook-secret", "s3cret"}
	d.start(t)
	url := "http://" + d.httpAddr + "/hooks/git"
	sign := func(body string) string {
		m := hmac.New(sha256.New, []byte("s3cret"))
		m.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	post := func(body, sig, event string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		if event != "" {
			req.Header.Set("X-GitHub-Event", event)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("POST /hooks/git: %v", err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	push := `{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/nobody.git"}}`
	for _, tt := range []struct {
		name, body, sig, event string
		code                   int
		says                   string
	}{
		{"unsigned", push, "", "push", http.StatusUnauthorized, "X-Hub-Signature-256"},
		{"wrong signature", push, sign("other"), "push", http.StatusUnauthorized, "X-Hub-Signature-256"},
		{"ping", `{"zen":"hi"}`, sign(`{"zen":"hi"}`), "ping", http.StatusOK, "pong"},
		{"not JSON", "{", sign("{"), "push", http.StatusBadRequest, "not a push event"},
		{"no repository URL", `{"ref":"x"}`, sign(`{"ref":"x"}`), "push", http.StatusBadRequest, "repository"},
		{"repository nobody follows", push, sign(push), "push", http.StatusAccepted, `"apps":[]`},
	} {
		code, body := post(tt.body, tt.sig, tt.event)
		if code != tt.code || !strings.Contains(body, tt.says) {
			t.Errorf("%s: got %d %q, want %d containing %q", tt.name, code, body, tt.code, tt.says)
		}
	}
	// The coordinator is still fine.
	if code, _, err := httpGet("http://" + d.httpAddr + "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("readyz after bad hooks: %d %v", code, err)
	}
}
