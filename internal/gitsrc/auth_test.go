package gitsrc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/gantryci/gantry/internal/gitsrc/gitsrctest"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	basic := func(u, p string) func(any) bool {
		return func(a any) bool {
			b, ok := a.(*githttp.BasicAuth)
			return ok && b.Username == u && b.Password == p
		}
	}
	sshUser := func(u string) func(any) bool {
		return func(a any) bool {
			k, ok := a.(*gitssh.PublicKeys)
			return ok && k.User == u
		}
	}
	for _, c := range []struct {
		url  string
		cred []byte
		ok   func(any) bool
	}{
		{"https://git.example/r.git", []byte("ghp_token\n"), basic(TokenUser, "ghp_token")},
		{"https://git.example/r.git", []byte("me:pa:ss"), basic("me", "pa:ss")},
		{"http://127.0.0.1:8080/r.git", []byte("me:pw"), basic("me", "pw")},
		{"ssh://deploy@git.example/r.git", key, sshUser("deploy")},
		{"git@git.example:org/r.git", key, sshUser("git")},
		{"ssh://git.example/r.git", key, sshUser("git")},
	} {
		a, err := Auth(c.url, c.cred)
		if err != nil || !c.ok(a) {
			t.Errorf("Auth(%s) = %#v, %v", c.url, a, err)
		}
	}
	if a, err := Auth("https://git.example/r.git", []byte(" \n")); a != nil || err != nil {
		t.Errorf("empty credential: %v, %v; want none", a, err)
	}
	for _, c := range []struct {
		url  string
		cred []byte
		want string
	}{
		{"git@git.example:r.git", []byte("a-token"), "must be an SSH private key"},
		{"https://git.example/r.git", key, "is an HTTP URL"},
		{"file:///srv/r.git", []byte("tok"), "file URLs take no credentials"},
		{"ssh://git.example/r.git", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END OPENSSH PRIVATE KEY-----\n"), "SSH private key"},
	} {
		_, err := Auth(c.url, c.cred)
		if !errors.Is(err, ErrCredential) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Auth(%s) = %v, want ErrCredential saying %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("error quotes the key: %v", err)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://me:s3cret@git.example/r.git": "https://me:***@git.example/r.git",
		"https://ghp_token@git.example/r.git": "https://***@git.example/r.git",
		"https://git.example/r.git":           "https://git.example/r.git",
		"ssh://git@git.example/r.git":         "ssh://git@git.example/r.git",
		"git@git.example:r.git":               "git@git.example:r.git",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestCloneWithCredentials(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	root := t.TempDir()
	repo := filepath.Join(root, "r.git")
	run(t, root, "init", "-q", "-b", "main", repo)
	os.WriteFile(filepath.Join(repo, "f"), []byte("private"), 0o644)
	run(t, repo, "add", "f")
	run(t, repo, "commit", "-q", "-m", "one")
	head := run(t, repo, "rev-parse", "HEAD")
	const token = "tok-5ecret-value"
	url := gitsrctest.Serve(t, root, TokenUser, token) + "/r.git"
	ctx := context.Background()

	if _, err := Clone(ctx, url, "", filepath.Join(t.TempDir(), "co"), nil); err == nil {
		t.Fatal("clone without credentials succeeded")
	}
	_, err := Clone(ctx, url, "", filepath.Join(t.TempDir(), "co"), []byte("wrong-token"))
	if err == nil || strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("clone with a wrong token: %v", err)
	}
	out := filepath.Join(t.TempDir(), "co")
	sha, err := Clone(ctx, url, "main", out, []byte(token+"\n"))
	if err != nil || sha != head {
		t.Fatalf("Clone = %q, %v; want %s", sha, err, head)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "f")); string(b) != "private" {
		t.Errorf("checked out %q", b)
	}
	if got, err := ResolveAuth(ctx, url, "main", []byte(TokenUser+":"+token)); err != nil || got != head {
		t.Errorf("ResolveAuth = %q, %v", got, err)
	}
	// Credentials in the URL itself never reach an error message.
	bad := strings.Replace(url, "://", "://me:in-url-secret@", 1) + "-missing"
	if _, err := Clone(ctx, bad, "", filepath.Join(t.TempDir(), "co"), nil); err == nil || strings.Contains(err.Error(), "in-url-secret") {
		t.Errorf("clone of a missing repository: %v", err)
	}
}
