package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// sign is the hex HMAC-SHA256 of body keyed with secret.
func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// headers builds a header set from name, value pairs.
func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// giteaHeaders is what Gitea sends with a delivery: its own headers and
// GitHub's and Gogs' too.
func giteaHeaders(event, secret, body string) http.Header {
	return headers(
		"X-Gitea-Event", event, "X-Gitea-Event-Type", event, "X-Gitea-Delivery", "d-gitea",
		"X-Gitea-Signature", sign(secret, body),
		"X-GitHub-Event", event, "X-GitHub-Delivery", "d-gitea", "X-Hub-Signature-256", "sha256="+sign(secret, body),
		"X-Gogs-Event", event, "X-Gogs-Delivery", "d-gitea",
	)
}

// forgejoHeaders is what Forgejo sends: Gitea's headers and its own.
func forgejoHeaders(event, secret, body string) http.Header {
	h := giteaHeaders(event, secret, body)
	h.Set("X-Forgejo-Event", event)
	h.Set("X-Forgejo-Delivery", "d-forgejo")
	h.Set("X-Forgejo-Signature", sign(secret, body))
	return h
}

func githubHeaders(event, secret, body string) http.Header {
	return headers("X-GitHub-Event", event, "X-GitHub-Delivery", "d-github", "X-Hub-Signature-256", "sha256="+sign(secret, body))
}

func gitlabHeaders(event, secret string) http.Header {
	return headers("X-Gitlab-Event", event, "X-Gitlab-Event-UUID", "d-gitlab", "X-Gitlab-Token", secret)
}

func TestDetect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		h    http.Header
		want Kind
	}{
		{"gitea, with GitHub's headers too", giteaHeaders("push", "s", "{}"), Gitea},
		{"forgejo, with Gitea's headers too", forgejoHeaders("push", "s", "{}"), Forgejo},
		{"github", githubHeaders("push", "s", "{}"), GitHub},
		{"gitlab", gitlabHeaders("Push Hook", "s"), GitLab},
	}
	for _, c := range cases {
		if got, ok := Detect(c.h); got != c.want || !ok {
			t.Errorf("%s: Detect = %q, %v; want %q", c.name, got, ok, c.want)
		}
	}
	if got, ok := Detect(headers("Content-Type", "application/json")); got != None || ok {
		t.Errorf("Detect without forge headers = %q, %v; want none, false", got, ok)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	const body, secret = `{"ref":"refs/heads/main"}`, "hook-secret"
	good := []struct {
		kind Kind
		h    http.Header
	}{
		{Gitea, giteaHeaders("push", secret, body)},
		{Forgejo, forgejoHeaders("push", secret, body)},
		{Gitea, headers("X-Forgejo-Signature", sign(secret, body))},
		{GitHub, githubHeaders("push", secret, body)},
		{GitHub, headers("X-Hub-Signature-256", "sha256="+strings.ToUpper(sign(secret, body)))},
		{GitLab, gitlabHeaders("Push Hook", secret)},
	}
	for _, c := range good {
		if err := Verify(c.kind, c.h, []byte(body), []byte(secret)); err != nil {
			t.Errorf("Verify(%s) of a good delivery: %v", c.kind, err)
		}
	}

	bad := []struct {
		name   string
		kind   Kind
		h      http.Header
		body   string
		secret string
		msg    string
	}{
		{"gitea, wrong secret", Gitea, giteaHeaders("push", "other", body), body, secret, "X-Gitea-Signature does not match"},
		{"gitea, body changed", Gitea, giteaHeaders("push", secret, body), body + " ", secret, "does not match"},
		{"gitea, only GitHub's signature", Gitea, githubHeaders("push", secret, body), body, secret, "no X-Gitea-Signature"},
		{"gitea, not hex", Gitea, headers("X-Gitea-Signature", "zz"), body, secret, "not a hex"},
		{"forgejo, wrong secret", Forgejo, forgejoHeaders("push", "other", body), body, secret, "X-Forgejo-Signature does not match"},
		{"github, wrong secret", GitHub, githubHeaders("push", "other", body), body, secret, "X-Hub-Signature-256 does not match"},
		{"github, missing", GitHub, headers("X-GitHub-Event", "push"), body, secret, "no X-Hub-Signature-256"},
		{"github, no prefix", GitHub, headers("X-Hub-Signature-256", sign(secret, body)), body, secret, "sha256="},
		{"github, sha1", GitHub, headers("X-Hub-Signature-256", "sha1="+sign(secret, body)), body, secret, "sha256="},
		{"gitlab, wrong token", GitLab, gitlabHeaders("Push Hook", "other"), body, secret, "X-Gitlab-Token does not match"},
		{"gitlab, token prefix", GitLab, gitlabHeaders("Push Hook", "hook-"), body, secret, "does not match"},
		{"gitlab, missing", GitLab, headers("X-Gitlab-Event", "Push Hook"), body, secret, "no X-Gitlab-Token"},
		{"empty secret", GitHub, githubHeaders("push", "", body), body, "", "no webhook secret"},
		{"none", None, githubHeaders("push", secret, body), body, secret, "no webhooks"},
	}
	for _, c := range bad {
		err := Verify(c.kind, c.h, []byte(c.body), []byte(c.secret))
		if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: Verify = %v; want ErrSignature saying %q", c.name, err, c.msg)
		}
	}
}
