package forge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// githubAPIVersion is the REST API version asked for.
const githubAPIVersion = "2022-11-28"

// github is the Client of GitHub and GitHub Enterprise Server.
type github struct {
	api *api
}

func newGitHub(root, token string, hc *http.Client) (Client, error) {
	h := http.Header{}
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", githubAPIVersion)
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	a, err := newAPI(root, hc, h, token)
	if err != nil {
		return nil, err
	}
	return &github{api: a}, nil
}

func (g *github) SetStatus(ctx context.Context, repo Repo, sha string, st Status) error {
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

func (g *github) OpenPullRequests(ctx context.Context, repo Repo) ([]Pull, error) {
	p, err := repoPath(repo)
	if err != nil {
		return nil, err
	}
	q := url.Values{"state": {"open"}, "per_page": {strconv.Itoa(MaxPullRequests)}}
	var prs []hubPull
	if _, err := g.api.do(ctx, call{method: http.MethodGet, path: p + "/pulls", query: q, out: &prs}); err != nil {
		return nil, err
	}
	out := make([]Pull, 0, min(len(prs), MaxPullRequests))
	for _, pr := range prs[:min(len(prs), MaxPullRequests)] {
		pull, err := hubPullOf(pr)
		if err != nil {
			return nil, fmt.Errorf("pull requests of %s: %w", repo, err)
		}
		out = append(out, pull)
	}
	return out, nil
}

// IsCollaborator asks the collaborators endpoint, which counts outside
// collaborators, organization members with access and owners; any
// permission, read included, makes a collaborator.
func (g *github) IsCollaborator(ctx context.Context, repo Repo, user string) (bool, error) {
	p, err := repoPath(repo)
	if err != nil {
		return false, err
	}
	if err := checkUser(user); err != nil {
		return false, err
	}
	_, err = g.api.do(ctx, call{method: http.MethodGet, path: p + "/collaborators/" + seg(user)})
	switch {
	case err == nil:
		return true, nil
	case statusIs(err, http.StatusNotFound):
		return false, nil
	}
	return false, err
}

type githubHook struct {
	Name   string            `json:"name"`
	Active bool              `json:"active"`
	Events []string          `json:"events"`
	Config map[string]string `json:"config"`
}

// CreateHook registers a repository webhook; tags arrive as push events.
func (g *github) CreateHook(ctx context.Context, repo Repo, hook Hook) (string, error) {
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
	in := githubHook{
		Name: "web", Active: true, Events: events,
		Config: map[string]string{"url": hook.URL, "content_type": "json", "secret": hook.Secret, "insecure_ssl": "0"},
	}
	var out struct {
		ID json.Number `json:"id"`
	}
	if _, err := g.api.do(ctx, call{method: http.MethodPost, path: p + "/hooks", in: in, out: &out, redact: []string{hook.Secret}}); err != nil {
		return "", err
	}
	return hookID(out.ID)
}

func (g *github) DeleteHook(ctx context.Context, repo Repo, id string) error {
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
