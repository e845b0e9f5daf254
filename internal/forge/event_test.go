package forge

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

const (
	shaBefore = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
	shaAfter  = "1481a2de7b2a7d02428ad93446ab166be7793fbb"
	shaTagObj = "2b4d0f1c9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"
	shaHead   = "3c5e7a9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c"
	shaZero   = "0000000000000000000000000000000000000000"
)

// fill replaces {{key}} in a template with values, given as key, value
// pairs.
func fill(tmpl string, kv ...string) string {
	var pairs []string
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, "{{"+kv[i]+"}}", kv[i+1])
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}

const oneCommit = `[{"id": "` + shaAfter + `", "message": "Add a.go", "added": ["a.go"], "removed": ["old.txt"], "modified": ["README.md", "a.go"]}]`

const giteaRepo = `{"id": 1, "owner": {"id": 1, "login": "alice", "username": "alice"}, "name": "app", "full_name": "alice/app", "private": false,
  "html_url": "http://127.0.0.1:3000/alice/app", "ssh_url": "git@127.0.0.1:alice/app.git", "clone_url": "http://127.0.0.1:3000/alice/app.git", "default_branch": "main"}`

const giteaFork = `{"id": 2, "owner": {"id": 2, "login": "bob", "username": "bob"}, "name": "app", "full_name": "bob/app", "fork": true,
  "html_url": "http://127.0.0.1:3000/bob/app", "ssh_url": "git@127.0.0.1:bob/app.git", "clone_url": "http://127.0.0.1:3000/bob/app.git"}`

var giteaURLs = []string{"http://127.0.0.1:3000/alice/app.git", "http://127.0.0.1:3000/alice/app", "git@127.0.0.1:alice/app.git"}

// giteaPush is a Gitea push payload.
const giteaPush = `{
  "ref": "{{ref}}", "before": "{{before}}", "after": "{{after}}",
  "compare_url": "http://127.0.0.1:3000/alice/app/compare/0d1a...1481",
  "commits": {{commits}}, "total_commits": {{total}},
  "head_commit": {"id": "{{head}}", "message": "Add a.go"},
  "repository": ` + giteaRepo + `,
  "pusher": {"id": 1, "login": "alice", "username": "alice", "email": "alice@example.com"},
  "sender": {"id": 1, "login": "alice", "username": "alice"}
}`

// hubPR is a Gitea or GitHub pull request payload.
const hubPR = `{
  "action": "{{action}}", "number": 7,
  "pull_request": {
    "id": 9001, "number": 7, "state": "open", "title": "Add x", "user": {"id": 2, "login": "bob"},
    "head": {"label": "feature", "ref": "feature", "sha": "` + shaHead + `", "repo_id": 0, "repo": {{head_repo}}},
    "base": {"label": "main", "ref": "main", "sha": "` + shaBefore + `", "repo_id": 1, "repo": {{base_repo}}}
  },
  "repository": {{base_repo}},
  "sender": {"id": 2, "login": "bob"}
}`

const githubRepo = `{"id": 101, "node_id": "R_1", "name": "gantry", "full_name": "gantryci/gantry", "private": false,
  "owner": {"name": "gantryci", "login": "gantryci"}, "html_url": "https://github.com/gantryci/gantry", "url": "https://github.com/gantryci/gantry",
  "git_url": "git://github.com/gantryci/gantry.git", "ssh_url": "git@github.com:gantryci/gantry.git", "clone_url": "https://github.com/gantryci/gantry.git"}`

const githubFork = `{"id": 202, "name": "gantry", "full_name": "octocat/gantry", "html_url": "https://github.com/octocat/gantry",
  "ssh_url": "git@github.com:octocat/gantry.git", "clone_url": "https://github.com/octocat/gantry.git"}`

var githubURLs = []string{"https://github.com/gantryci/gantry.git", "https://github.com/gantryci/gantry", "git@github.com:gantryci/gantry.git", "git://github.com/gantryci/gantry.git"}

// githubPush is a GitHub push payload.
const githubPush = `{
  "ref": "{{ref}}", "before": "{{before}}", "after": "{{after}}",
  "created": false, "deleted": {{deleted}}, "forced": false, "base_ref": null,
  "compare": "https://github.com/gantryci/gantry/compare/0d1a26e67d8f...1481a2de7b2a",
  "commits": {{commits}}, "head_commit": {{head}},
  "repository": ` + githubRepo + `,
  "pusher": {"name": "octocat", "email": "octocat@example.com"},
  "sender": {"login": "octocat", "id": 1}
}`

const gitlabProjectJSON = `{"id": 15, "name": "Diaspora", "namespace": "Mike", "path_with_namespace": "mike/diaspora", "default_branch": "main",
  "web_url": "https://gitlab.example.com/mike/diaspora", "git_ssh_url": "git@gitlab.example.com:mike/diaspora.git",
  "git_http_url": "https://gitlab.example.com/mike/diaspora.git", "homepage": "https://gitlab.example.com/mike/diaspora",
  "url": "git@gitlab.example.com:mike/diaspora.git", "ssh_url": "git@gitlab.example.com:mike/diaspora.git",
  "http_url": "https://gitlab.example.com/mike/diaspora.git"}`

const gitlabRepositoryJSON = `{"name": "Diaspora", "url": "git@gitlab.example.com:mike/diaspora.git", "homepage": "https://gitlab.example.com/mike/diaspora",
  "git_http_url": "https://gitlab.example.com/mike/diaspora.git", "git_ssh_url": "git@gitlab.example.com:mike/diaspora.git"}`

var gitlabURLs = []string{"https://gitlab.example.com/mike/diaspora.git", "git@gitlab.example.com:mike/diaspora.git", "https://gitlab.example.com/mike/diaspora"}

// gitlabPushBody is a GitLab push or tag push payload.
const gitlabPushBody = `{
  "object_kind": "{{kind}}", "event_name": "{{kind}}",
  "before": "{{before}}", "after": "{{after}}", "ref": "{{ref}}", "ref_protected": true,
  "checkout_sha": {{checkout}},
  "user_id": 4, "user_name": "John Smith", "user_username": "jsmith", "project_id": 15,
  "project": ` + gitlabProjectJSON + `,
  "repository": ` + gitlabRepositoryJSON + `,
  "commits": {{commits}}, "total_commits_count": {{total}}
}`

// gitlabMRBody is a GitLab merge request payload.
const gitlabMRBody = `{
  "object_kind": "merge_request", "event_type": "merge_request",
  "user": {"id": 1, "name": "Administrator", "username": "root"},
  "project": ` + gitlabProjectJSON + `,
  "repository": ` + gitlabRepositoryJSON + `,
  "object_attributes": {
    "id": 99, "iid": 1, "target_branch": "main", "source_branch": "ms-viewport",
    "source_project_id": {{source}}, "target_project_id": 15, "state": "opened",
    "last_commit": {"id": "` + shaHead + `", "message": "fixed readme"},
    "action": "{{action}}"{{oldrev}}
  }
}`

type parseCase struct {
	name string
	kind Kind
	h    http.Header
	body string
	want Event
	err  error  // nil, ErrIgnored or ErrPayload
	msg  string // in the error
}

func runParse(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, c := range cases {
		ev, err := Parse(c.kind, c.h, []byte(c.body))
		if c.err == nil {
			if err != nil {
				t.Errorf("%s: Parse: %v", c.name, err)
			} else if !reflect.DeepEqual(ev, c.want) {
				t.Errorf("%s: Parse =\n%+v\nwant\n%+v", c.name, ev, c.want)
			}
			continue
		}
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: Parse = %v; want %v saying %q", c.name, err, c.err, c.msg)
		}
	}
}

func TestParseGitea(t *testing.T) {
	t.Parallel()
	push := fill(giteaPush, "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "head", shaAfter, "commits", oneCommit, "total", "1")
	tag := fill(giteaPush, "ref", "refs/tags/v1.0", "before", shaZero, "after", shaTagObj, "head", shaAfter, "commits", "[]", "total", "0")
	del := fill(giteaPush, "ref", "refs/heads/old", "before", shaBefore, "after", shaZero, "head", shaZero, "commits", "[]", "total", "0")
	big := fill(giteaPush, "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "head", shaAfter, "commits", oneCommit, "total", "30")
	pr := func(action, head string) string {
		return fill(hubPR, "action", action, "head_repo", head, "base_repo", giteaRepo)
	}
	prEvent := func(action string, fork bool) Event {
		return Event{Kind: PullRequest, Repo: giteaURLs, Ref: "refs/pull/7/head", Branch: "main", SHA: shaHead,
			PullRequest: 7, Action: action, Fork: fork, Author: "bob", Delivery: "d-gitea"}
	}
	runParse(t, []parseCase{
		{name: "push", kind: Gitea, h: giteaHeaders("push", "s", push), body: push, want: Event{
			Kind: Push, Repo: giteaURLs, Ref: "refs/heads/main", Branch: "main", SHA: shaAfter, Before: shaBefore,
			Author: "alice", Changed: []string{"a.go", "README.md", "old.txt"}, Delivery: "d-gitea"}},
		{name: "push, more commits than listed", kind: Gitea, h: giteaHeaders("push", "s", big), body: big, want: Event{
			Kind: Push, Repo: giteaURLs, Ref: "refs/heads/main", Branch: "main", SHA: shaAfter, Before: shaBefore,
			Author: "alice", Changed: []string{"a.go", "README.md", "old.txt"}, Truncated: true, Delivery: "d-gitea"}},
		{name: "annotated tag", kind: Gitea, h: giteaHeaders("push", "s", tag), body: tag, want: Event{
			Kind: Tag, Repo: giteaURLs, Ref: "refs/tags/v1.0", Tag: "v1.0", SHA: shaAfter, Before: shaZero,
			Author: "alice", Delivery: "d-gitea"}},
		{name: "forgejo push", kind: Forgejo, h: forgejoHeaders("push", "s", push), body: push, want: Event{
			Kind: Push, Repo: giteaURLs, Ref: "refs/heads/main", Branch: "main", SHA: shaAfter, Before: shaBefore,
			Author: "alice", Changed: []string{"a.go", "README.md", "old.txt"}, Delivery: "d-forgejo"}},
		{name: "pr opened", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("opened", giteaRepo), want: prEvent("opened", false)},
		{name: "pr reopened", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("reopened", giteaRepo), want: prEvent("reopened", false)},
		{name: "pr synchronized", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("synchronized", giteaRepo), want: prEvent("synchronize", false)},
		{name: "pr from a fork", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("opened", giteaFork), want: prEvent("opened", true)},
		{name: "pr from a deleted fork", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("synchronized", "null"), want: prEvent("synchronize", true)},
		{name: "pr closed", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("closed", giteaRepo), err: ErrIgnored, msg: "pull request 7 closed"},
		{name: "pr labelled", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: pr("label_updated", giteaRepo), err: ErrIgnored, msg: "label_updated"},
		{name: "create", kind: Gitea, h: giteaHeaders("create", "s", ""), body: `{"ref":"v1.0","ref_type":"tag","repository":` + giteaRepo + `}`, err: ErrIgnored, msg: "create event"},
		{name: "issue comment", kind: Gitea, h: giteaHeaders("issue_comment", "s", ""), body: `{}`, err: ErrIgnored, msg: "issue_comment"},
		{name: "branch deleted", kind: Gitea, h: giteaHeaders("push", "s", del), body: del, err: ErrIgnored, msg: "deletion of refs/heads/old"},
		{name: "no after", kind: Gitea, h: giteaHeaders("push", "s", ""), body: strings.Replace(push, `"after"`, `"later"`, 1), err: ErrPayload, msg: "field after missing"},
		{name: "bad after", kind: Gitea, h: giteaHeaders("push", "s", ""), body: strings.Replace(push, `"after": "`+shaAfter, `"after": "main`, 1), err: ErrPayload, msg: "field after is not a commit id"},
		{name: "no repository", kind: Gitea, h: giteaHeaders("push", "s", ""), body: `{"ref":"refs/heads/main","after":"` + shaAfter + `"}`, err: ErrPayload, msg: "field repository missing"},
		{name: "pr without head sha", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: strings.Replace(pr("opened", giteaRepo), shaHead, "", 1), err: ErrPayload, msg: "pull_request.head.sha"},
		{name: "pr number of the wrong type", kind: Gitea, h: giteaHeaders("pull_request", "s", ""), body: strings.Replace(pr("opened", giteaRepo), `"number": 7,`, `"number": "7",`, 1), err: ErrPayload, msg: "field number"},
		{name: "not JSON", kind: Gitea, h: giteaHeaders("push", "s", ""), body: `payload=%7B%7D`, err: ErrPayload, msg: "content type"},
		{name: "no event header", kind: Gitea, h: headers("X-Gitea-Delivery", "d"), body: push, err: ErrPayload, msg: "no X-Gitea-Event header"},
	})
	// A deletion comes back marked, for the log.
	if ev, err := Parse(Gitea, giteaHeaders("push", "s", del), []byte(del)); !errors.Is(err, ErrIgnored) || !ev.Deleted || ev.Ref != "refs/heads/old" {
		t.Errorf("branch deletion: %+v, %v; want Deleted with ErrIgnored", ev, err)
	}
}

func TestParseGitHub(t *testing.T) {
	t.Parallel()
	head := `{"id": "` + shaAfter + `", "message": "Add a.go"}`
	push := fill(githubPush, "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "deleted", "false", "commits", oneCommit, "head", head)
	tag := fill(githubPush, "ref", "refs/tags/v2", "before", shaZero, "after", shaTagObj, "deleted", "false", "commits", "[]", "head", head)
	del := fill(githubPush, "ref", "refs/heads/old", "before", shaBefore, "after", shaZero, "deleted", "true", "commits", "[]", "head", "null")
	pr := func(action, headRepo string) string {
		return fill(hubPR, "action", action, "head_repo", headRepo, "base_repo", githubRepo)
	}
	prEvent := func(action string, fork bool) Event {
		return Event{Kind: PullRequest, Repo: githubURLs, Ref: "refs/pull/7/head", Branch: "main", SHA: shaHead,
			PullRequest: 7, Action: action, Fork: fork, Author: "bob", Delivery: "d-github"}
	}
	runParse(t, []parseCase{
		{name: "push", kind: GitHub, h: githubHeaders("push", "s", push), body: push, want: Event{
			Kind: Push, Repo: githubURLs, Ref: "refs/heads/main", Branch: "main", SHA: shaAfter, Before: shaBefore,
			Author: "octocat", Changed: []string{"a.go", "README.md", "old.txt"}, Delivery: "d-github"}},
		{name: "annotated tag", kind: GitHub, h: githubHeaders("push", "s", tag), body: tag, want: Event{
			Kind: Tag, Repo: githubURLs, Ref: "refs/tags/v2", Tag: "v2", SHA: shaAfter, Before: shaZero,
			Author: "octocat", Delivery: "d-github"}},
		{name: "pr opened", kind: GitHub, h: githubHeaders("pull_request", "s", ""), body: pr("opened", githubRepo), want: prEvent("opened", false)},
		{name: "pr synchronize", kind: GitHub, h: githubHeaders("pull_request", "s", ""), body: pr("synchronize", githubRepo), want: prEvent("synchronize", false)},
		{name: "pr from a fork", kind: GitHub, h: githubHeaders("pull_request", "s", ""), body: pr("opened", githubFork), want: prEvent("opened", true)},
		{name: "pr closed", kind: GitHub, h: githubHeaders("pull_request", "s", ""), body: pr("closed", githubRepo), err: ErrIgnored, msg: "pull request 7 closed"},
		{name: "pr labeled", kind: GitHub, h: githubHeaders("pull_request", "s", ""), body: pr("labeled", githubRepo), err: ErrIgnored, msg: "labeled"},
		{name: "ping", kind: GitHub, h: githubHeaders("ping", "s", ""), body: `{"zen": "Keep it logically awesome.", "hook_id": 1, "repository": ` + githubRepo + `}`, err: ErrIgnored, msg: "ping"},
		{name: "branch deleted", kind: GitHub, h: githubHeaders("push", "s", del), body: del, err: ErrIgnored, msg: "deletion of refs/heads/old"},
		{name: "no ref", kind: GitHub, h: githubHeaders("push", "s", ""), body: strings.Replace(push, `"ref"`, `"reff"`, 1), err: ErrPayload, msg: "field ref missing"},
		{name: "ref not full", kind: GitHub, h: githubHeaders("push", "s", ""), body: strings.Replace(push, "refs/heads/main", "main", 1), err: ErrPayload, msg: "not a full ref"},
		{name: "ref too long", kind: GitHub, h: githubHeaders("push", "s", ""), body: strings.Replace(push, "refs/heads/main", "refs/heads/"+strings.Repeat("x", 2000), 1), err: ErrPayload, msg: "ref is longer than 1024"},
		{name: "ref with a newline", kind: GitHub, h: githubHeaders("push", "s", ""), body: strings.Replace(push, "refs/heads/main", `refs/heads/ma\nin`, 1), err: ErrPayload, msg: "control character"},
		{name: "push to a note", kind: GitHub, h: githubHeaders("push", "s", ""), body: strings.Replace(push, "refs/heads/main", "refs/notes/commits", 1), err: ErrIgnored, msg: "neither a branch nor a tag"},
		{name: "pr without pull_request", kind: GitHub, h: githubHeaders("pull_request", "s", ""), body: `{"action": "opened", "number": 7, "repository": ` + githubRepo + `}`, err: ErrPayload, msg: "field pull_request missing"},
		{name: "delivery header too long", kind: GitHub, h: headers("X-GitHub-Event", "push", "X-GitHub-Delivery", strings.Repeat("d", 300)), body: push, err: ErrPayload, msg: "X-GitHub-Delivery"},
		{name: "body too large", kind: GitHub, h: githubHeaders("push", "s", ""), body: strings.Repeat(" ", MaxBody+1), err: ErrPayload, msg: "over"},
	})
}

func TestParseGitLab(t *testing.T) {
	t.Parallel()
	push := fill(gitlabPushBody, "kind", "push", "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "checkout", `"`+shaAfter+`"`, "commits", oneCommit, "total", "1")
	big := fill(gitlabPushBody, "kind", "push", "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "checkout", `"`+shaAfter+`"`, "commits", oneCommit, "total", "25")
	tag := fill(gitlabPushBody, "kind", "tag_push", "ref", "refs/tags/v1.0.0", "before", shaZero, "after", shaTagObj, "checkout", `"`+shaAfter+`"`, "commits", "[]", "total", "0")
	del := fill(gitlabPushBody, "kind", "push", "ref", "refs/heads/old", "before", shaBefore, "after", shaZero, "checkout", "null", "commits", "[]", "total", "0")
	mr := func(action, oldrev, source string) string {
		if oldrev != "" {
			oldrev = `, "oldrev": "` + oldrev + `"`
		}
		return fill(gitlabMRBody, "action", action, "oldrev", oldrev, "source", source)
	}
	mrEvent := func(action string, fork bool) Event {
		return Event{Kind: PullRequest, Repo: gitlabURLs, Ref: "refs/merge-requests/1/head", Branch: "main", SHA: shaHead,
			PullRequest: 1, Action: action, Fork: fork, Author: "root", Delivery: "d-gitlab"}
	}
	h := func(event string) http.Header { return gitlabHeaders(event, "s") }
	runParse(t, []parseCase{
		{name: "push", kind: GitLab, h: h("Push Hook"), body: push, want: Event{
			Kind: Push, Repo: gitlabURLs, Ref: "refs/heads/main", Branch: "main", SHA: shaAfter, Before: shaBefore,
			Author: "jsmith", Changed: []string{"a.go", "README.md", "old.txt"}, Delivery: "d-gitlab"}},
		{name: "push, more commits than listed", kind: GitLab, h: h("Push Hook"), body: big, want: Event{
			Kind: Push, Repo: gitlabURLs, Ref: "refs/heads/main", Branch: "main", SHA: shaAfter, Before: shaBefore,
			Author: "jsmith", Changed: []string{"a.go", "README.md", "old.txt"}, Truncated: true, Delivery: "d-gitlab"}},
		{name: "annotated tag", kind: GitLab, h: h("Tag Push Hook"), body: tag, want: Event{
			Kind: Tag, Repo: gitlabURLs, Ref: "refs/tags/v1.0.0", Tag: "v1.0.0", SHA: shaAfter, Before: shaZero,
			Author: "jsmith", Delivery: "d-gitlab"}},
		{name: "mr opened", kind: GitLab, h: h("Merge Request Hook"), body: mr("open", "", "15"), want: mrEvent("opened", false)},
		{name: "mr reopened", kind: GitLab, h: h("Merge Request Hook"), body: mr("reopen", "", "15"), want: mrEvent("reopened", false)},
		{name: "mr new commits", kind: GitLab, h: h("Merge Request Hook"), body: mr("update", shaBefore, "15"), want: mrEvent("synchronize", false)},
		{name: "mr from a fork", kind: GitLab, h: h("Merge Request Hook"), body: mr("open", "", "16"), want: mrEvent("opened", true)},
		{name: "mr retitled", kind: GitLab, h: h("Merge Request Hook"), body: mr("update", "", "15"), err: ErrIgnored, msg: "without new commits"},
		{name: "mr closed", kind: GitLab, h: h("Merge Request Hook"), body: mr("close", "", "15"), err: ErrIgnored, msg: "merge request 1 close"},
		{name: "mr merged", kind: GitLab, h: h("Merge Request Hook"), body: mr("merge", "", "15"), err: ErrIgnored, msg: "merge request 1 merge"},
		{name: "note", kind: GitLab, h: h("Note Hook"), body: `{"object_kind": "note"}`, err: ErrIgnored, msg: "Note Hook"},
		{name: "branch deleted", kind: GitLab, h: h("Push Hook"), body: del, err: ErrIgnored, msg: "deletion of refs/heads/old"},
		{name: "mr without last commit", kind: GitLab, h: h("Merge Request Hook"), body: strings.Replace(mr("open", "", "15"), shaHead, "", 1), err: ErrPayload, msg: "object_attributes.last_commit.id"},
		{name: "mr without attributes", kind: GitLab, h: h("Merge Request Hook"), body: `{"object_kind": "merge_request", "project": ` + gitlabProjectJSON + `}`, err: ErrPayload, msg: "object_attributes missing"},
		{name: "no project", kind: GitLab, h: h("Push Hook"), body: `{"object_kind": "push", "ref": "refs/heads/main", "after": "` + shaAfter + `"}`, err: ErrPayload, msg: "project.git_http_url"},
		{name: "iid of the wrong type", kind: GitLab, h: h("Merge Request Hook"), body: strings.Replace(mr("open", "", "15"), `"iid": 1`, `"iid": "one"`, 1), err: ErrPayload, msg: "object_attributes.iid"},
	})
}

func TestChangedBounded(t *testing.T) {
	t.Parallel()
	var files []string
	for i := range MaxChanged + 5 {
		files = append(files, fmt.Sprintf(`"dir/f%d.go"`, i))
	}
	commits := `[{"id": "` + shaAfter + `", "added": [` + strings.Join(files, ",") + `], "modified": ["dir/f1.go"]}]`
	body := fill(giteaPush, "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "head", shaAfter, "commits", commits, "total", "1")
	ev, err := Parse(Gitea, giteaHeaders("push", "s", body), []byte(body))
	if err != nil || len(ev.Changed) != MaxChanged || !ev.Truncated || ev.Changed[0] != "dir/f0.go" {
		t.Errorf("push of %d files: %d changed, truncated %v, %v; want %d, truncated", MaxChanged+5, len(ev.Changed), ev.Truncated, err, MaxChanged)
	}

	long := `[{"id": "` + shaAfter + `", "added": ["a.go", "` + strings.Repeat("d/", 3000) + `x"]}]`
	body = fill(giteaPush, "ref", "refs/heads/main", "before", shaBefore, "after", shaAfter, "head", shaAfter, "commits", long, "total", "1")
	ev, err = Parse(Gitea, giteaHeaders("push", "s", body), []byte(body))
	if err != nil || !reflect.DeepEqual(ev.Changed, []string{"a.go"}) || !ev.Truncated {
		t.Errorf("push with an over-long path: %q, truncated %v, %v; want [a.go], truncated", ev.Changed, ev.Truncated, err)
	}
}

func TestRepoURLs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind Kind
		body string
		want []string
	}{
		{Gitea, fill(hubPR, "action", "closed", "head_repo", giteaFork, "base_repo", giteaRepo), giteaURLs},
		{GitHub, `{"zen": "Design for failure.", "repository": ` + githubRepo + `}`, githubURLs},
		{GitLab, fill(gitlabMRBody, "action", "close", "oldrev", "", "source", "15"), gitlabURLs},
		{GitLab, `{"object_kind": "push", "repository": ` + gitlabRepositoryJSON + `}`, []string{gitlabURLs[0], gitlabURLs[1], gitlabURLs[2]}},
	}
	for _, c := range cases {
		got, err := RepoURLs(c.kind, nil, []byte(c.body))
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("RepoURLs(%s) = %q, %v; want %q", c.kind, got, err, c.want)
		}
	}
	for _, c := range []struct {
		kind Kind
		body string
		msg  string
	}{
		{GitHub, `{"zen": "x"}`, "field repository missing"},
		{Gitea, `{"repository": {"clone_url": 7}}`, "repository.clone_url"},
		{GitLab, `{"project": {}}`, "project.git_http_url"},
		{GitLab, `[]`, "not a JSON object"},
		{None, `{}`, "no webhooks"},
	} {
		if _, err := RepoURLs(c.kind, nil, []byte(c.body)); !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("RepoURLs(%s, %s) = %v; want ErrPayload saying %q", c.kind, c.body, err, c.msg)
		}
	}
}
