package coordinator

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGitHookNeedsASecretOutsideDev(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cfg  Config
		code int
		says string
	}{
		{"no secret", Config{}, http.StatusForbidden, "--webhook-secret"},
		{"no secret under gantry dev", Config{UnsignedHooks: true}, http.StatusOK, "pong"},
		{"a secret, unsigned ping", Config{WebhookSecret: "s3cret"}, http.StatusUnauthorized, "X-Hub-Signature-256"},
	} {
		s := &Server{cfg: tt.cfg}
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(`{"zen":"hi"}`))
		req.Header.Set("X-GitHub-Event", "ping")
		rec := httptest.NewRecorder()
		s.handleGitHook(rec, req)
		if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tt.name, rec.Code, rec.Body.String(), tt.code, tt.says)
		}
	}
}

func TestValidHTTPHosts(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"console.example.com", "gantry", "gantry-api.gantry.svc.cluster.local.", "console.example.com:8443", "10.0.0.1"} {
		if err := validHTTPHosts([]string{h}); err != nil {
			t.Errorf("%q refused: %v", h, err)
		}
	}
	for _, h := range []string{"", "https://console.example.com", "console.example.com/", "*.example.com", "a b", "-x.example", "x.example:http", "x.example:99999"} {
		if err := validHTTPHosts([]string{h}); err == nil || !strings.Contains(err.Error(), "http hosts") {
			t.Errorf("%q accepted (%v)", h, err)
		}
	}
}
