package coordinator

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/coordinator/follow"
	"github.com/gantryci/gantry/internal/forge"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
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

// maxHookBody is the largest webhook body taken: it is forwarded to the
// leader in one message.
const maxHookBody = 3 << 20

// handleGitHook takes a forge's webhook. A delivery for a project (a
// repository whose pipeline Gantry builds) is verified with that
// project's webhook secret and recorded as a trigger by the leader before
// it is answered (DeliverWebhook, forwarded like any API call). A push to
// a repository GitOps applications follow makes them poll it at once: the
// payload only says where to look, the commit deployed is always the one
// the repository itself names; it is checked against --webhook-secret
// (X-Hub-Signature-256), and without one only gantry dev
// (Config.UnsignedHooks) takes it.
func (s *Server) handleGitHook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHookBody+1))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxHookBody {
		http.Error(w, fmt.Sprintf("body: larger than %d bytes", maxHookBody), http.StatusRequestEntityTooLarge)
		return
	}
	var urls []string
	if kind, ok := forge.Detect(r.Header); ok {
		urls, _ = forge.RepoURLs(kind, r.Header, body)
	}
	forProject := len(urls) > 0 && s.projectFollows(urls)
	if !forProject {
		// A push for GitOps applications: verified before anything else
		// is done with it.
		if len(urls) == 0 {
			var ev pushEvent
			if err := json.Unmarshal(body, &ev); err != nil {
				if err := s.appHookAllowed(r, body, nil); err != nil {
					http.Error(w, err.Error(), hookErrCode(err))
					return
				}
				http.Error(w, "body: not a push event: "+err.Error(), http.StatusBadRequest)
				return
			}
			urls = ev.urls()
		}
		if err := s.appHookAllowed(r, body, urls); err != nil {
			http.Error(w, err.Error(), hookErrCode(err))
			return
		}
		if r.Header.Get("X-GitHub-Event") == "ping" || r.Header.Get("X-Gitea-Event") == "ping" {
			w.Write([]byte("pong\n"))
			return
		}
		if len(urls) == 0 {
			http.Error(w, "repository: no URL (clone_url, html_url, url, ssh_url or git_url)", http.StatusBadRequest)
			return
		}
	}
	answer := map[string]any{}
	code := http.StatusAccepted
	if forProject {
		headers := make(map[string]string, len(r.Header))
		for k, v := range r.Header {
			if len(v) > 0 && len(headers) < 200 {
				headers[k] = v[0]
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		resp, err := s.self.Raw().DeliverWebhook(ctx, &gv1.DeliverWebhookRequest{Headers: headers, Body: body})
		cancel()
		if err != nil {
			st, _ := status.FromError(err)
			http.Error(w, st.Message(), hookHTTPCode(st.Code()))
			return
		}
		builds := []map[string]any{}
		for _, b := range resp.GetBuilds() {
			builds = append(builds, map[string]any{"project": b.GetBuild().GetTrigger().GetProject(), "build": b.GetBuild().GetNumber(), "job": b.GetBuild().GetJobId()})
		}
		answer["builds"] = builds
		if len(resp.GetIgnored()) > 0 {
			answer["ignored"] = resp.GetIgnored()
		}
	}
	apps := s.gitops.Matching(urls)
	if forProject && len(apps) > 0 && s.appHookAllowed(r, body, urls) != nil {
		apps = nil // the project's delivery is not signed for applications
	}
	if len(apps) > 0 {
		if err := s.nc.Publish(s.ns.GitPush(), []byte(strings.Join(urls, "\n"))); err != nil {
			http.Error(w, "pass the push on: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	if apps == nil {
		apps = []string{}
	}
	answer["apps"] = apps
	s.log.Info("git hook", zap.Strings("repository", urls), zap.Strings("apps", apps), zap.Any("builds", answer["builds"]))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(answer)
}

// errHookSecret and errHookUnsigned are why an application push is refused.
var (
	errHookUnsigned = errors.New("webhooks need --webhook-secret: this coordinator takes no unsigned pushes")
	errHookSecret   = errors.New("webhook signature (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token): missing or wrong")
)

func hookErrCode(err error) int {
	if errors.Is(err, errHookUnsigned) {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// appHookAllowed checks a push announced for GitOps applications: signed
// with the webhook secret of an application following the repository
// (one CreateApp registered on the forge), or with --webhook-secret; under
// gantry dev (Config.UnsignedHooks) unsigned pushes are taken too.
func (s *Server) appHookAllowed(r *http.Request, body []byte, urls []string) error {
	signed := false // an application following the repository has a secret
	if kind, ok := forge.Detect(r.Header); ok && len(urls) > 0 {
		if k := s.keyring.Load(); k != nil {
			for _, name := range s.gitops.Matching(urls) {
				a, ok := s.fsm.App(name)
				if !ok || len(a.GetWebhookSecret()) == 0 {
					continue
				}
				signed = true
				sec, err := k.Open(api.AppWebhookSecretName(name), a.GetWebhookKeyId(), a.GetWebhookSecret())
				if err == nil && forge.Verify(kind, r.Header, body, sec) == nil {
					return nil
				}
			}
		}
	}
	secret := s.cfg.WebhookSecret
	if secret == "" {
		if s.cfg.UnsignedHooks {
			return nil
		}
		if signed {
			return errHookSecret
		}
		return errHookUnsigned
	}
	// A forge's delivery is checked as that forge signs it (a hook
	// CreateApp registered); anything else as GitHub signs.
	if kind, ok := forge.Detect(r.Header); ok {
		if err := forge.Verify(kind, r.Header, body, []byte(secret)); err != nil {
			return fmt.Errorf("%w (%v)", errHookSecret, err)
		}
		return nil
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Hub-Signature-256"))) {
		return errHookSecret
	}
	return nil
}

// projectFollows reports whether a project builds the repository.
func (s *Server) projectFollows(urls []string) bool {
	want := map[string]bool{}
	for _, u := range urls {
		want[follow.NormalizeURL(u)] = true
	}
	for _, p := range s.fsm.ProjectHeads() {
		if want[follow.NormalizeURL(p.GetSpec().GetRepo())] {
			return true
		}
	}
	return false
}

// hookHTTPCode maps a DeliverWebhook refusal to the hook's HTTP answer.
func hookHTTPCode(c codes.Code) int {
	switch c {
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.NotFound:
		return http.StatusNotFound
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unavailable, codes.DeadlineExceeded:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (ev pushEvent) urls() []string {
	var urls []string
	for _, u := range []string{ev.Repository.CloneURL, ev.Repository.HTMLURL, ev.Repository.URL, ev.Repository.SSHURL, ev.Repository.GitURL, ev.Repository.GitHTTPURL, ev.Repository.GitSSHURL} {
		if u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}
