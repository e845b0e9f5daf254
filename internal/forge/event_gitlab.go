package forge

import (
	"fmt"
	"strconv"
)

// GitLab's webhook payloads: only the fields Gantry reads.

type glProject struct {
	ID                int64  `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
	GitHTTPURL        string `json:"git_http_url"`
	GitSSHURL         string `json:"git_ssh_url"`
	WebURL            string `json:"web_url"`
	HTTPURL           string `json:"http_url"` // older spelling
	SSHURL            string `json:"ssh_url"`  // older spelling
}

// glRepository is the deprecated twin of project that payloads still
// carry.
type glRepository struct {
	GitHTTPURL string `json:"git_http_url"`
	GitSSHURL  string `json:"git_ssh_url"`
	Homepage   string `json:"homepage"`
	URL        string `json:"url"`
}

func glURLs(p *glProject, r *glRepository) ([]string, error) {
	var c []string
	if p != nil {
		c = append(c, p.GitHTTPURL, p.GitSSHURL, p.WebURL, p.HTTPURL, p.SSHURL)
	}
	if r != nil {
		c = append(c, r.GitHTTPURL, r.GitSSHURL, r.Homepage, r.URL)
	}
	return repoURLs("project.git_http_url", c...)
}

type glCommit struct {
	ID       string   `json:"id"`
	Added    []string `json:"added"`
	Modified []string `json:"modified"`
	Removed  []string `json:"removed"`
}

type glPush struct {
	Ref               string        `json:"ref"`
	Before            string        `json:"before"`
	After             string        `json:"after"`
	CheckoutSHA       string        `json:"checkout_sha"` // null when deleting
	UserUsername      string        `json:"user_username"`
	Project           *glProject    `json:"project"`
	Repository        *glRepository `json:"repository"`
	Commits           []glCommit    `json:"commits"`
	TotalCommitsCount int           `json:"total_commits_count"`
}

type glMergeRequest struct {
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	Project          *glProject    `json:"project"`
	Repository       *glRepository `json:"repository"`
	ObjectAttributes *struct {
		IID             int    `json:"iid"`
		Action          string `json:"action"`
		OldRev          string `json:"oldrev"`
		SourceProjectID int64  `json:"source_project_id"`
		TargetProjectID int64  `json:"target_project_id"`
		TargetBranch    string `json:"target_branch"`
		LastCommit      struct {
			ID string `json:"id"`
		} `json:"last_commit"`
	} `json:"object_attributes"`
}

// parseGitLab normalizes a GitLab delivery whose X-Gitlab-Event is event.
func parseGitLab(ev *Event, event string, body []byte) error {
	switch event {
	case "Push Hook", "Tag Push Hook":
		return parseGitLabPush(ev, body)
	case "Merge Request Hook":
		return parseGitLabMR(ev, body)
	}
	return fmt.Errorf("%w: %q", ErrIgnored, event)
}

func parseGitLabPush(ev *Event, body []byte) error {
	var p glPush
	if err := decode(body, &p); err != nil {
		return err
	}
	var err error
	if ev.Repo, err = glURLs(p.Project, p.Repository); err != nil {
		return err
	}
	if ev.Author, err = login("user_username", p.UserUsername); err != nil {
		return err
	}
	if err := pushRef(ev, p.Ref, p.Before, p.After, p.CheckoutSHA, false); err != nil {
		return err
	}
	if len(p.Commits) == 0 {
		return nil
	}
	var c changes
	for _, cm := range p.Commits {
		c.add(cm.Added, cm.Modified, cm.Removed)
	}
	ev.Changed, ev.Truncated = c.list, c.truncated || p.TotalCommitsCount > len(p.Commits)
	return nil
}

func parseGitLabMR(ev *Event, body []byte) error {
	var p glMergeRequest
	if err := decode(body, &p); err != nil {
		return err
	}
	var err error
	if ev.Repo, err = glURLs(p.Project, p.Repository); err != nil {
		return err
	}
	a := p.ObjectAttributes
	if a == nil {
		return fmt.Errorf("%w: field object_attributes missing", ErrPayload)
	}
	ev.Kind = PullRequest
	if ev.PullRequest = a.IID; ev.PullRequest <= 0 {
		return fmt.Errorf("%w: field object_attributes.iid missing", ErrPayload)
	}
	if ev.Author, err = login("user.username", p.User.Username); err != nil {
		return err
	}
	if ev.Action, err = text("object_attributes.action", a.Action, maxName); err != nil {
		return err
	}
	switch {
	case ev.Action == "open":
		ev.Action = "opened"
	case ev.Action == "reopen":
		ev.Action = "reopened"
	case ev.Action == "update" && a.OldRev != "":
		ev.Action = "synchronize"
	case ev.Action == "update":
		return fmt.Errorf("%w: merge request %d updated without new commits", ErrIgnored, ev.PullRequest)
	default:
		return fmt.Errorf("%w: merge request %d %s", ErrIgnored, ev.PullRequest, actionName(ev.Action))
	}
	if ev.SHA, err = commitID("object_attributes.last_commit.id", a.LastCommit.ID, true); err != nil {
		return err
	}
	if ev.Branch, err = required("object_attributes.target_branch", a.TargetBranch, maxRef); err != nil {
		return err
	}
	ev.Ref = "refs/merge-requests/" + strconv.Itoa(ev.PullRequest) + "/head"
	ev.Fork = a.SourceProjectID == 0 || a.SourceProjectID != a.TargetProjectID
	return nil
}
