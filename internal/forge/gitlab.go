package forge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// gitlabDeveloper is the least access level that counts as a
// collaborator: Developer may push to unprotected branches.
const gitlabDeveloper = 30

// gitlab is the Client of GitLab (API v4).
type gitlab struct {
	api *api
}

func newGitLab(root, token string, hc *http.Client) (Client, error) {
	h := http.Header{}
	h.Set("Accept", "application/json")
	if token != "" {
		h.Set("PRIVATE-TOKEN", token)
	}
	a, err := newAPI(root, hc, h, token)
	if err != nil {
		return nil, err
	}
	return &gitlab{api: a}, nil
}

// gitlabProject is the project's path: /projects/ and its id, or its
// namespace path escaped whole (group%2Fsub%2Fname).
func gitlabProject(repo Repo) (string, error) {
	id := repo.ID
	if id == "" {
		if err := checkRepo(repo, true); err != nil {
			return "", err
		}
		id = repo.Owner + "/" + repo.Name
	} else if strings.Contains(id, "%") {
		u, err := url.PathUnescape(id)
		if err != nil {
			return "", fmt.Errorf("GitLab project id %q: %w", id, err)
		}
		id = u
	}
	return "/projects/" + seg(id), nil
}

// gitlabState maps a state onto GitLab's pending, running, success,
// failed and canceled: failure is failed, and so is error, except an
// error whose description says it was canceled (how Gantry reports a
// canceled build), which is canceled.
func gitlabState(st Status) (string, error) {
	switch st.State {
	case Pending, Running, Success:
		return string(st.State), nil
	case Failure:
		return "failed", nil
	case Error:
		d := strings.ToLower(strings.TrimSpace(st.Description))
		if strings.HasPrefix(d, "canceled") || strings.HasPrefix(d, "cancelled") {
			return "canceled", nil
		}
		return "failed", nil
	}
	return "", fmt.Errorf("commit state %q: want pending, running, success, failure or error", st.State)
}

type gitlabStatus struct {
	State       string `json:"state"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
}

// SetStatus sets a commit status. GitLab answers 400 when asked to set
// the state a status already has ("Cannot transition status"); that is
// taken as done.
func (g *gitlab) SetStatus(ctx context.Context, repo Repo, sha string, st Status) error {
	p, err := gitlabProject(repo)
	if err != nil {
		return err
	}
	if err := checkSHA(sha); err != nil {
		return err
	}
	state, err := gitlabState(st)
	if err != nil {
		return err
	}
	in := gitlabStatus{State: state, Name: st.Context, Description: cutRunes(st.Description, maxDescription), TargetURL: st.TargetURL}
	_, err = g.api.do(ctx, call{method: http.MethodPost, path: p + "/statuses/" + seg(sha), in: in})
	if he, ok := errors.AsType[*HTTPError](err); ok && he.Status == http.StatusBadRequest && strings.Contains(he.Body, "Cannot transition status") {
		return nil
	}
	return err
}

type gitlabMR struct {
	IID             int    `json:"iid"`
	SHA             string `json:"sha"`
	TargetBranch    string `json:"target_branch"`
	SourceProjectID int64  `json:"source_project_id"`
	TargetProjectID int64  `json:"target_project_id"`
	Author          struct {
		Username string `json:"username"`
	} `json:"author"`
}

func (g *gitlab) OpenPullRequests(ctx context.Context, repo Repo) ([]Pull, error) {
	p, err := gitlabProject(repo)
	if err != nil {
		return nil, err
	}
	q := url.Values{"state": {"opened"}, "per_page": {strconv.Itoa(MaxPullRequests)}}
	var mrs []gitlabMR
	if _, err := g.api.do(ctx, call{method: http.MethodGet, path: p + "/merge_requests", query: q, out: &mrs}); err != nil {
		return nil, err
	}
	out := make([]Pull, 0, min(len(mrs), MaxPullRequests))
	for _, mr := range mrs[:min(len(mrs), MaxPullRequests)] {
		pull, err := gitlabPullOf(mr)
		if err != nil {
			return nil, fmt.Errorf("merge requests of %s: %w", repo, err)
		}
		out = append(out, pull)
	}
	return out, nil
}

func gitlabPullOf(mr gitlabMR) (Pull, error) {
	if mr.IID <= 0 {
		return Pull{}, errors.New("merge request without an iid")
	}
	sha, err := commitID("sha", mr.SHA, true)
	if err != nil {
		return Pull{}, fmt.Errorf("merge request %d: %w", mr.IID, err)
	}
	base, err := required("target_branch", mr.TargetBranch, maxRef)
	if err != nil {
		return Pull{}, fmt.Errorf("merge request %d: %w", mr.IID, err)
	}
	author, err := login("author.username", mr.Author.Username)
	if err != nil {
		return Pull{}, fmt.Errorf("merge request %d: %w", mr.IID, err)
	}
	return Pull{
		Number: mr.IID,
		SHA:    sha,
		Ref:    "refs/merge-requests/" + strconv.Itoa(mr.IID) + "/head",
		Base:   base,
		Fork:   mr.SourceProjectID == 0 || mr.SourceProjectID != mr.TargetProjectID,
		Author: author,
	}, nil
}

// IsCollaborator looks the user up by name, then their access to the
// project, inherited memberships included: Developer or above counts.
func (g *gitlab) IsCollaborator(ctx context.Context, repo Repo, user string) (bool, error) {
	p, err := gitlabProject(repo)
	if err != nil {
		return false, err
	}
	if err := checkUser(user); err != nil {
		return false, err
	}
	var users []struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
	}
	if _, err := g.api.do(ctx, call{method: http.MethodGet, path: "/users", query: url.Values{"username": {user}}, out: &users}); err != nil {
		return false, err
	}
	var id int64
	for _, u := range users {
		if strings.EqualFold(u.Username, user) {
			id = u.ID
		}
	}
	if id == 0 {
		return false, nil
	}
	var member struct {
		AccessLevel int `json:"access_level"`
	}
	_, err = g.api.do(ctx, call{method: http.MethodGet, path: p + "/members/all/" + strconv.FormatInt(id, 10), out: &member})
	switch {
	case err == nil:
		return member.AccessLevel >= gitlabDeveloper, nil
	case statusIs(err, http.StatusNotFound):
		return false, nil
	}
	return false, err
}

type gitlabHook struct {
	URL                   string `json:"url"`
	Token                 string `json:"token"`
	PushEvents            bool   `json:"push_events"`
	TagPushEvents         bool   `json:"tag_push_events"`
	MergeRequestsEvents   bool   `json:"merge_requests_events"`
	EnableSSLVerification bool   `json:"enable_ssl_verification"`
}

// CreateHook registers a project hook. Every event flag is sent, false
// ones too: GitLab turns push events on when not told.
func (g *gitlab) CreateHook(ctx context.Context, repo Repo, hook Hook) (string, error) {
	p, err := gitlabProject(repo)
	if err != nil {
		return "", err
	}
	kinds, err := checkHook(hook)
	if err != nil {
		return "", err
	}
	in := gitlabHook{URL: hook.URL, Token: hook.Secret, EnableSSLVerification: true}
	for _, k := range kinds {
		switch k {
		case Push:
			in.PushEvents = true
		case Tag:
			in.TagPushEvents = true
		case PullRequest:
			in.MergeRequestsEvents = true
		}
	}
	var out struct {
		ID json.Number `json:"id"`
	}
	if _, err := g.api.do(ctx, call{method: http.MethodPost, path: p + "/hooks", in: in, out: &out, redact: []string{hook.Secret}}); err != nil {
		return "", err
	}
	return hookID(out.ID)
}

func (g *gitlab) DeleteHook(ctx context.Context, repo Repo, id string) error {
	p, err := gitlabProject(repo)
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
