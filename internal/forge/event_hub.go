package forge

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// githubMaxCommits is the most commits GitHub lists in a push payload;
// one listing that many may have left some out.
const githubMaxCommits = 2048

// GitHub's webhook payloads, which Gitea and Forgejo copy closely: only
// the fields Gantry reads.

type hubUser struct {
	Login    string `json:"login"`
	Username string `json:"username"` // Gitea
	Name     string `json:"name"`     // GitHub's pusher
}

type hubRepo struct {
	ID       int64  `json:"id"`
	FullName string `json:"full_name"`
	CloneURL string `json:"clone_url"`
	HTMLURL  string `json:"html_url"`
	SSHURL   string `json:"ssh_url"`
	GitURL   string `json:"git_url"` // GitHub's git:// spelling
}

func (r *hubRepo) urls() ([]string, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: field repository missing", ErrPayload)
	}
	return repoURLs("repository.clone_url", r.CloneURL, r.HTMLURL, r.SSHURL, r.GitURL)
}

type hubCommit struct {
	ID       string   `json:"id"`
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

type hubPush struct {
	Ref          string      `json:"ref"`
	Before       string      `json:"before"`
	After        string      `json:"after"`
	Deleted      bool        `json:"deleted"`
	TotalCommits *int        `json:"total_commits"` // Gitea
	Commits      []hubCommit `json:"commits"`
	HeadCommit   *hubCommit  `json:"head_commit"`
	Repository   *hubRepo    `json:"repository"`
	Pusher       hubUser     `json:"pusher"`
	Sender       hubUser     `json:"sender"`
}

type hubBranch struct {
	Ref  string   `json:"ref"`
	SHA  string   `json:"sha"`
	Repo *hubRepo `json:"repo"` // null when the fork was deleted
}

type hubPull struct {
	Number int       `json:"number"`
	Head   hubBranch `json:"head"`
	Base   hubBranch `json:"base"`
	User   hubUser   `json:"user"`
}

type hubPullEvent struct {
	Action      string   `json:"action"`
	Number      int      `json:"number"`
	PullRequest *hubPull `json:"pull_request"`
	Repository  *hubRepo `json:"repository"`
	Sender      hubUser  `json:"sender"`
}

// parseHub normalizes a GitHub, Gitea or Forgejo delivery of type event.
func parseHub(ev *Event, event string, body []byte) error {
	switch event {
	case "push":
		return parseHubPush(ev, body)
	case "pull_request", "pull_request_sync":
		return parseHubPull(ev, body)
	case "ping":
		return fmt.Errorf("%w: ping", ErrIgnored)
	case "create", "delete":
		return fmt.Errorf("%w: %s event (a push event goes with it)", ErrIgnored, event)
	}
	return fmt.Errorf("%w: %q event", ErrIgnored, event)
}

func parseHubPush(ev *Event, body []byte) error {
	var p hubPush
	if err := decode(body, &p); err != nil {
		return err
	}
	var err error
	if ev.Repo, err = p.Repository.urls(); err != nil {
		return err
	}
	if ev.Author, err = login("pusher.login", p.Pusher.Login, p.Pusher.Username, p.Sender.Login, p.Pusher.Name); err != nil {
		return err
	}
	peeled := ""
	if p.HeadCommit != nil {
		peeled = p.HeadCommit.ID
	}
	if err := pushRef(ev, p.Ref, p.Before, p.After, peeled, p.Deleted); err != nil {
		return err
	}
	if len(p.Commits) == 0 {
		return nil
	}
	var c changes
	for _, cm := range p.Commits {
		c.add(cm.Added, cm.Modified, cm.Removed)
	}
	ev.Changed, ev.Truncated = c.list, c.truncated
	if (p.TotalCommits != nil && *p.TotalCommits > len(p.Commits)) || len(p.Commits) >= githubMaxCommits {
		ev.Truncated = true
	}
	return nil
}

func parseHubPull(ev *Event, body []byte) error {
	var p hubPullEvent
	if err := decode(body, &p); err != nil {
		return err
	}
	var err error
	if ev.Repo, err = p.Repository.urls(); err != nil {
		return err
	}
	pr := p.PullRequest
	if pr == nil {
		return fmt.Errorf("%w: field pull_request missing", ErrPayload)
	}
	ev.Kind = PullRequest
	if ev.PullRequest = p.Number; ev.PullRequest == 0 {
		ev.PullRequest = pr.Number
	}
	if ev.PullRequest <= 0 {
		return fmt.Errorf("%w: field number missing", ErrPayload)
	}
	if ev.Author, err = login("pull_request.user.login", pr.User.Login, pr.User.Username, p.Sender.Login); err != nil {
		return err
	}
	if ev.Action, err = text("action", p.Action, maxName); err != nil {
		return err
	}
	switch ev.Action {
	case "opened", "reopened":
	case "synchronize", "synchronized": // GitHub, Gitea
		ev.Action = "synchronize"
	default:
		return fmt.Errorf("%w: pull request %d %s", ErrIgnored, ev.PullRequest, actionName(ev.Action))
	}
	if ev.SHA, err = commitID("pull_request.head.sha", pr.Head.SHA, true); err != nil {
		return err
	}
	if ev.Branch, err = required("pull_request.base.ref", pr.Base.Ref, maxRef); err != nil {
		return err
	}
	ev.Branch = strings.TrimPrefix(ev.Branch, "refs/heads/")
	ev.Ref = "refs/pull/" + strconv.Itoa(ev.PullRequest) + "/head"
	base := pr.Base.Repo
	if base == nil {
		base = p.Repository
	}
	ev.Fork = hubFork(pr.Head.Repo, base)
	return nil
}

// hubFork tells whether a pull request's head repository differs from its
// base; a head repository the payload does not name counts as a fork.
func hubFork(head, base *hubRepo) bool {
	switch {
	case head == nil || base == nil:
		return true
	case head.ID != 0 && base.ID != 0:
		return head.ID != base.ID
	case head.FullName != "" && base.FullName != "":
		return !strings.EqualFold(head.FullName, base.FullName)
	}
	return true
}

// actionName is an action for a message: "(no action)" when empty.
func actionName(a string) string {
	if a == "" {
		return "(no action)"
	}
	return a
}

// hubPullOf reads a pull request as GitHub and Gitea list them.
func hubPullOf(pr hubPull) (Pull, error) {
	if pr.Number <= 0 {
		return Pull{}, errors.New("pull request without a number")
	}
	sha, err := commitID("head.sha", pr.Head.SHA, true)
	if err != nil {
		return Pull{}, fmt.Errorf("pull request %d: %w", pr.Number, err)
	}
	base, err := required("base.ref", pr.Base.Ref, maxRef)
	if err != nil {
		return Pull{}, fmt.Errorf("pull request %d: %w", pr.Number, err)
	}
	author, err := login("user.login", pr.User.Login, pr.User.Username)
	if err != nil {
		return Pull{}, fmt.Errorf("pull request %d: %w", pr.Number, err)
	}
	return Pull{
		Number: pr.Number,
		SHA:    sha,
		Ref:    "refs/pull/" + strconv.Itoa(pr.Number) + "/head",
		Base:   base,
		Fork:   hubFork(pr.Head.Repo, pr.Base.Repo),
		Author: author,
	}, nil
}
