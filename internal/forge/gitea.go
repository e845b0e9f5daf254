package forge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// giteaPage is the page size asked of Gitea: its default maximum.
const giteaPage = 50

// gitea is the Client of Gitea and Forgejo (API v1).
type gitea struct {
	api      *api
	hookType string // "gitea" or "forgejo"
}

func newGitea(kind Kind, root, token string, hc *http.Client) (Client, error) {
	h := http.Header{}
	h.Set("Accept", "application/json")
	if token != "" {
		h.Set("Authorization", "token "+token)
	}
	a, err := newAPI(root, hc, h, token)
	if err != nil {
		return nil, err
	}
	return &gitea{api: a, hookType: string(kind)}, nil
}

// repoPath is a repository's path on Gitea and GitHub: /repos/owner/name.
func repoPath(repo Repo) (string, error) {
	if err := checkRepo(repo, false); err != nil {
		return "", err
	}
	return "/repos/" + seg(repo.Owner) + "/" + seg(repo.Name), nil
}

// hubState maps a state, and its description, onto the states of GitHub
// (error, failure, pending, success) and Gitea (the same and warning).
// Gitea stores whatever it is sent, so nothing else is sent. Neither has
// running, which becomes pending saying so.
func hubState(st Status) (string, string, error) {
	switch st.State {
	case Pending, Success, Failure, Error:
		return string(st.State), st.Description, nil
	case Running:
		if st.Description == "" {
			return "pending", "Running", nil
		}
		return "pending", st.Description, nil
	}
	return "", "", fmt.Errorf("commit state %q: want pending, running, success, failure or error", st.State)
}

// statusBody is the commit status Gitea and GitHub take.
type statusBody struct {
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
}

func (g *gitea) SetStatus(ctx context.Context, repo Repo, sha string, st Status) error {
	p, err := repoPath(repo)
	if err != nil {
		return err
	}
	if err := checkSHA(sha); err != nil {
		return err
	}
	state, desc, err := hubState(st)
	if err != nil {
		return err
	}
	in := statusBody{State: state, Context: st.Context, Description: cutRunes(desc, maxDescription), TargetURL: st.TargetURL}
	_, err = g.api.do(ctx, call{method: http.MethodPost, path: p + "/statuses/" + seg(sha), in: in})
	return err
}

func (g *gitea) OpenPullRequests(ctx context.Context, repo Repo) ([]Pull, error) {
	p, err := repoPath(repo)
	if err != nil {
		return nil, err
	}
	var out []Pull
	for page := 1; len(out) < MaxPullRequests; page++ {
		q := url.Values{"state": {"open"}, "limit": {strconv.Itoa(giteaPage)}, "page": {strconv.Itoa(page)}}
		var prs []hubPull
		if _, err := g.api.do(ctx, call{method: http.MethodGet, path: p + "/pulls", query: q, out: &prs}); err != nil {
			return nil, err
		}
		for _, pr := range prs {
			if len(out) == MaxPullRequests {
				break
			}
			pull, err := hubPullOf(pr)
			if err != nil {
				return nil, fmt.Errorf("pull requests of %s: %w", repo, err)
			}
			out = append(out, pull)
		}
		if len(prs) < giteaPage {
			break
		}
	}
	return out, nil
}

// IsCollaborator asks the collaborators endpoint, then whether user owns
// the repository: Gitea does not list the owner as a collaborator. Members
// of an owning organization's teams are not found this way.
func (g *gitea) IsCollaborator(ctx context.Context, repo Repo, user string) (bool, error) {
	p, err := repoPath(repo)
	if err != nil {
		return false, err
	}
	if err := checkUser(user); err != nil {
		return false, err
	}
	_, err = g.api.do(ctx, call{method: http.MethodGet, path: p + "/collaborators/" + seg(user)})
	if err == nil {
		return true, nil
	}
	if !statusIs(err, http.StatusNotFound) {
		return false, err
	}
	var r struct {
		Owner hubUser `json:"owner"`
	}
	if _, err := g.api.do(ctx, call{method: http.MethodGet, path: p, out: &r}); err != nil {
		return false, err
	}
	return r.Owner.Login != "" && strings.EqualFold(r.Owner.Login, user), nil
}

type giteaHook struct {
	Type         string            `json:"type"`
	Active       bool              `json:"active"`
	Events       []string          `json:"events"`
	BranchFilter string            `json:"branch_filter"`
	Config       map[string]string `json:"config"`
}

// CreateHook registers a hook of Gitea's own type (Forgejo's on Forgejo).
// Tags arrive as push events; "pull_request" takes in every pull request
// event, synchronization included.
func (g *gitea) CreateHook(ctx context.Context, repo Repo, hook Hook) (string, error) {
	p, err := repoPath(repo)
	if err != nil {
		return "", err
	}
	kinds, err := checkHook(hook)
	if err != nil {
		return "", err
	}
	var events []string
	for _, k := range kinds {
		switch k {
		case Push, Tag:
			events = appendOnce(events, "push")
		case PullRequest:
			events = appendOnce(events, "pull_request")
		}
	}
	in := giteaHook{
		Type: g.hookType, Active: true, Events: events, BranchFilter: "*",
		Config: map[string]string{"url": hook.URL, "content_type": "json", "secret": hook.Secret},
	}
	var out struct {
		ID json.Number `json:"id"`
	}
	if _, err := g.api.do(ctx, call{method: http.MethodPost, path: p + "/hooks", in: in, out: &out, redact: []string{hook.Secret}}); err != nil {
		return "", err
	}
	return hookID(out.ID)
}

func (g *gitea) DeleteHook(ctx context.Context, repo Repo, id string) error {
	p, err := repoPath(repo)
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("webhook of %s without an id", repo)
	}
	_, err = g.api.do(ctx, call{method: http.MethodDelete, path: p + "/hooks/" + seg(id)})
	if statusIs(err, http.StatusNotFound) {
		return nil
	}
	return err
}
