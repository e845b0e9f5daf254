package coordinator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// pushEvent is the part of a GitHub-style push event Gantry reads. Gitea,
// Forgejo and GitLab send the same repository URL fields.
type pushEvent struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Repository struct {
		CloneURL string `json:"clone_url"`
		HTMLURL  string `json:"html_url"`
		URL      string `json:"url"`
		SSHURL   string `json:"ssh_url"`
		GitURL   string `json:"git_url"`
		// GitLab
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
	} `json:"repository"`
}

// handleGitHook takes a push announcement: the applications following the
// pushed repository are polled at once. The payload only says where to
// look; the commit deployed is always the one the repository itself names.
// Without a webhook secret only gantry dev (Config.UnsignedHooks) takes
// pushes.
func (s *Server) handleGitHook(w http.ResponseWriter, r *http.Request) {
	if s.cfg.WebhookSecret == "" && !s.cfg.UnsignedHooks {
		http.Error(w, "webhooks need --webhook-secret: this coordinator takes no unsigned pushes", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 5<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if secret := s.cfg.WebhookSecret; secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Hub-Signature-256"))) {
			http.Error(w, "X-Hub-Signature-256: missing or wrong", http.StatusUnauthorized)
			return
		}
	}
	if ev := r.Header.Get("X-GitHub-Event"); ev == "ping" {
		w.Write([]byte("pong\n"))
		return
	}
	var ev pushEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "body: not a push event: "+err.Error(), http.StatusBadRequest)
		return
	}
	var urls []string
	for _, u := range []string{ev.Repository.CloneURL, ev.Repository.HTMLURL, ev.Repository.URL, ev.Repository.SSHURL, ev.Repository.GitURL, ev.Repository.GitHTTPURL, ev.Repository.GitSSHURL} {
		if u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		http.Error(w, "repository: no URL (clone_url, html_url, url, ssh_url or git_url)", http.StatusBadRequest)
		return
	}
	apps := s.gitops.Matching(urls)
	if apps == nil {
		apps = []string{}
	}
	if len(apps) > 0 {
		if err := s.nc.Publish(s.ns.GitPush(), []byte(strings.Join(urls, "\n"))); err != nil {
			http.Error(w, "pass the push on: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	s.log.Info("git push announced", zap.Strings("repository", urls), zap.String("ref", ev.Ref), zap.Strings("apps", apps))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]any{"apps": apps})
}
