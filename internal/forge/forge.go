package forge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gantryci/gantry/internal/limit"
)

// Kind names a forge.
type Kind string

// The forges Gantry speaks to. None is a project built from plain Git,
// without webhooks or statuses.
const (
	Gitea   Kind = "gitea"
	Forgejo Kind = "forgejo"
	GitHub  Kind = "github"
	GitLab  Kind = "gitlab"
	None    Kind = "none"
)

var kinds = []Kind{Gitea, Forgejo, GitHub, GitLab, None}

// ParseKind reads a forge name as a flag or config gives it; "" is None.
func ParseKind(s string) (Kind, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return None, nil
	}
	for _, k := range kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown forge %q: want one of gitea, forgejo, github, gitlab, none", limit.Prefix(s, 64))
}

// State is a commit status as Gantry has it; each Client maps it onto what
// its forge accepts.
type State string

// Gantry's commit states.
const (
	Pending State = "pending"
	Running State = "running"
	Success State = "success"
	Failure State = "failure" // the pipeline ran and failed
	Error   State = "error"   // the pipeline could not run
)

// maxDescription is the longest status description sent, in characters:
// GitHub refuses more than 140.
const maxDescription = 140

// Status is one commit status.
type Status struct {
	State State
	// Context names the check ("gantry/build"); GitLab calls it name.
	Context     string
	Description string // cut to 140 characters
	TargetURL   string
}

// Repo names a repository on a forge.
type Repo struct {
	// Owner is the user or organization; on GitLab the whole namespace
	// path, which may hold subgroups ("group/sub").
	Owner string
	Name  string
	// ID is GitLab's project id: the numeric id, or the path
	// "group/sub/name" (escaped or not). Empty means Owner/Name. Other
	// forges ignore it.
	ID string
}

// String is owner/name.
func (r Repo) String() string { return r.Owner + "/" + r.Name }

// Pull is an open pull (GitLab: merge) request. (It is not named
// PullRequest: that is the EventKind.)
type Pull struct {
	Number int
	SHA    string // head commit
	// Ref is where the forge keeps the head: refs/pull/N/head, or
	// refs/merge-requests/N/head on GitLab.
	Ref    string
	Base   string // target branch
	Fork   bool   // the head lives in another repository
	Author string
}

// Hook is a webhook to register.
type Hook struct {
	URL    string
	Secret string
	// Events is what to deliver, among Push, Tag and PullRequest; none
	// means all three. Manual and Cron are skipped (no forge sends them),
	// other kinds refused.
	Events []EventKind
}

// Client talks to one forge's API as one credential. Implementations are
// safe for concurrent use.
type Client interface {
	// SetStatus sets the status of commit sha in repo.
	SetStatus(ctx context.Context, repo Repo, sha string, st Status) error
	// OpenPullRequests lists open pull requests. It reads the first
	// MaxPullRequests; a repository with more has the rest left out.
	OpenPullRequests(ctx context.Context, repo Repo) ([]Pull, error)
	// IsCollaborator tells whether user is a collaborator of repo (on
	// GitLab: a member at Developer level or above), so that their pull
	// requests may be built. An unknown user is not one.
	IsCollaborator(ctx context.Context, repo Repo, user string) (bool, error)
	// CreateHook registers a webhook sending JSON and returns its id.
	CreateHook(ctx context.Context, repo Repo, hook Hook) (id string, err error)
	// DeleteHook deletes a webhook; one already gone is not an error.
	DeleteHook(ctx context.Context, repo Repo, id string) error
}

// MaxPullRequests is the most open pull requests OpenPullRequests returns
// (one page of the forge's API).
const MaxPullRequests = 100

// New returns the Client for kind at baseURL, the forge's web root
// (http://127.0.0.1:3000, https://github.com, https://gitlab.example.com),
// authenticating with token; an empty token makes anonymous calls. The
// API root is derived: /api/v1 for Gitea and Forgejo, api.github.com for
// github.com and /api/v3 for GitHub Enterprise, /api/v4 for GitLab. A nil
// httpClient means one with a 30 s timeout that follows redirects only
// within the host.
func New(kind Kind, baseURL string, token string, httpClient *http.Client) (Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("forge URL %s: %w", limit.Prefix(baseURL, 256), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("forge URL %s: want http(s)://host[:port][/path], without credentials or query", limit.Prefix(u.Redacted(), 256))
	}
	web := u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/")
	switch kind {
	case Gitea, Forgejo:
		return newGitea(kind, apiRoot(web, "/api/v1"), token, httpClient)
	case GitHub:
		root := apiRoot(web, "/api/v3")
		switch strings.ToLower(u.Hostname()) {
		case "github.com", "www.github.com", "api.github.com":
			root = "https://api.github.com"
		}
		return newGitHub(root, token, httpClient)
	case GitLab:
		return newGitLab(apiRoot(web, "/api/v4"), token, httpClient)
	case None:
		return nil, fmt.Errorf("forge %q has no API", kind)
	}
	return nil, fmt.Errorf("unknown forge %q", limit.Prefix(string(kind), 64))
}

// apiRoot appends suffix to web unless it is there already.
func apiRoot(web, suffix string) string {
	if strings.HasSuffix(web, suffix) {
		return web
	}
	return web + suffix
}

// RepoFromURL derives the repository from a clone or web URL:
// https://host/owner/name(.git), http://user@host:port/owner/name.git,
// ssh://git@host:2222/owner/name.git, git@host:owner/name.git. Every
// segment but the last is the owner, so a GitLab namespace with subgroups
// comes out whole; a GitLab web path (/-/tree/main) is dropped. A forge
// served under a sub-path (https://host/gitea/owner/name) cannot be told
// apart from a namespace: its Owner would include the sub-path.
func RepoFromURL(raw string) (Repo, error) {
	_, _, p, err := splitURL(raw)
	if err != nil {
		return Repo{}, err
	}
	p = strings.Trim(p, "/")
	if i := strings.Index(p, "/-/"); i >= 0 {
		p = p[:i]
	}
	p = strings.TrimSuffix(strings.TrimSuffix(p, "/"), ".git")
	segs := strings.Split(p, "/")
	if len(segs) < 2 {
		return Repo{}, fmt.Errorf("repository URL %s: want owner/name in the path", quoteURL(raw))
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return Repo{}, fmt.Errorf("repository URL %s: path segment %q", quoteURL(raw), s)
		}
	}
	owner := strings.Join(segs[:len(segs)-1], "/")
	name := segs[len(segs)-1]
	return Repo{Owner: owner, Name: name, ID: owner + "/" + name}, nil
}

// BaseURL derives the forge's web root, scheme://host[:port], from a
// repository URL. SSH URLs give https://host: the forge's web port is not
// in them.
func BaseURL(repoURL string) (string, error) {
	scheme, host, _, err := splitURL(repoURL)
	if err != nil {
		return "", err
	}
	if scheme == "http" || scheme == "https" {
		return scheme + "://" + host, nil
	}
	h := host
	if u, err := url.Parse("//" + host); err == nil && u.Hostname() != "" {
		h = u.Hostname()
		if strings.Contains(h, ":") {
			h = "[" + h + "]" // IPv6
		}
	}
	return "https://" + h, nil
}

// splitURL splits a repository URL, scp-like SSH included, into scheme,
// host (with port, without user) and path. An scp-like URL has scheme ssh.
func splitURL(raw string) (scheme, host, path string, err error) {
	raw = strings.TrimSpace(raw)
	if len(raw) > maxURL || !utf8.ValidString(raw) {
		return "", "", "", fmt.Errorf("repository URL %s: too long or not UTF-8", quoteURL(raw))
	}
	if !strings.Contains(raw, "://") {
		// user@host:path, host:path
		colon := strings.Index(raw, ":")
		if colon > 0 && !strings.Contains(raw[:colon], "/") {
			h := raw[:colon]
			if at := strings.LastIndex(h, "@"); at >= 0 {
				h = h[at+1:]
			}
			if h != "" {
				return "ssh", h, raw[colon+1:], nil
			}
		}
		return "", "", "", fmt.Errorf("repository URL %s: want scheme://host/owner/name or user@host:owner/name", quoteURL(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("repository URL %s: %w", quoteURL(raw), err)
	}
	if u.Host == "" {
		return "", "", "", fmt.Errorf("repository URL %s: no host", quoteURL(raw))
	}
	return strings.ToLower(u.Scheme), u.Host, u.Path, nil
}

// quoteURL is a URL for an error: without its password, cut short.
func quoteURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		raw = u.Redacted()
	}
	return limit.Prefix(raw, 256)
}

// cutRunes returns s cut to n characters, the last one "…" when cut.
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// checkRepo refuses a repository the driver cannot name in a path.
func checkRepo(repo Repo, nested bool) error {
	if repo.Owner == "" || repo.Name == "" || strings.Contains(repo.Name, "/") || (!nested && strings.Contains(repo.Owner, "/")) {
		return fmt.Errorf("repository %q: want owner/name", limit.Prefix(repo.String(), 256))
	}
	return nil
}

// checkSHA refuses anything but a full commit id.
func checkSHA(sha string) error {
	if !isSHA(sha) {
		return fmt.Errorf("commit %q: want a full hex commit id", limit.Prefix(sha, 80))
	}
	return nil
}

// checkHook refuses a hook that cannot work and returns the forge event
// kinds it asks for, all three when none are named.
func checkHook(hook Hook) ([]EventKind, error) {
	if hook.URL == "" {
		return nil, errors.New("webhook without a URL")
	}
	if hook.Secret == "" {
		return nil, fmt.Errorf("webhook to %s without a secret: Verify would refuse its deliveries", quoteURL(hook.URL))
	}
	if len(hook.Events) == 0 {
		return []EventKind{Push, Tag, PullRequest}, nil
	}
	var events []EventKind
	for _, e := range hook.Events {
		switch e {
		case Push, Tag, PullRequest:
			events = append(events, e)
		case Manual, Cron: // Gantry's own; no forge sends them
		default:
			return nil, fmt.Errorf("webhook event %q: want push, tag or pull_request", limit.Prefix(string(e), 64))
		}
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("webhook to %s for no forge event: want push, tag or pull_request", quoteURL(hook.URL))
	}
	return events, nil
}

// appendOnce appends the names not yet in list.
func appendOnce(list []string, names ...string) []string {
	for _, n := range names {
		if !slices.Contains(list, n) {
			list = append(list, n)
		}
	}
	return list
}

// hookID reads the id of a created hook.
func hookID(id json.Number) (string, error) {
	if _, err := id.Int64(); err != nil || id == "0" {
		return "", fmt.Errorf("created webhook has no id (%q)", limit.Prefix(string(id), 32))
	}
	return id.String(), nil
}

// checkUser refuses an empty user name.
func checkUser(user string) error {
	if user == "" || len(user) > maxName {
		return fmt.Errorf("user %q: want a login of 1 to %d bytes", limit.Prefix(user, 64), maxName)
	}
	return nil
}
