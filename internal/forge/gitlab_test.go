package forge

import (
	"context"
	"reflect"
	"testing"
)

func TestGitLabClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const project = "/api/v4/projects/group%2Fsub%2Fapp"
	f := newFake(t, map[string]reply{
		"POST " + project + "/statuses/" + shaAfter:  {201, `{"id": 93, "status": "failed"}`},
		"POST " + project + "/statuses/" + shaHead:   {400, `{"message": "Cannot transition status via :run from :running (Reasons: ...)"}`},
		"POST " + project + "/statuses/" + shaBefore: {400, `{"message": "name is too long"}`},
		"GET " + project + "/merge_requests?per_page=100&state=opened": {200, `[
		  {"id": 84, "iid": 3, "state": "opened", "sha": "` + shaHead + `", "source_branch": "f", "target_branch": "main",
		   "source_project_id": 16, "target_project_id": 15, "author": {"id": 7, "username": "bob"}},
		  {"id": 83, "iid": 2, "state": "opened", "sha": "` + shaAfter + `", "source_branch": "g", "target_branch": "release",
		   "source_project_id": 15, "target_project_id": 15, "author": {"id": 8, "username": "carol"}}]`},
		"GET /api/v4/users?username=bob":    {200, `[{"id": 7, "username": "bob", "state": "active"}]`},
		"GET /api/v4/users?username=carol":  {200, `[{"id": 8, "username": "carol"}]`},
		"GET /api/v4/users?username=dave":   {200, `[{"id": 9, "username": "dave"}]`},
		"GET /api/v4/users?username=ghost":  {200, `[]`},
		"GET " + project + "/members/all/7": {200, `{"id": 7, "username": "bob", "access_level": 30}`},
		"GET " + project + "/members/all/8": {200, `{"id": 8, "username": "carol", "access_level": 20}`},
		"GET " + project + "/members/all/9": {404, `{"message": "404 Not found"}`},
		"POST " + project + "/hooks":        {201, `{"id": 1, "url": "https://ci.example.com/hook", "push_events": true}`},
		"DELETE " + project + "/hooks/1":    {204, ""},
		"POST /api/v4/projects/15/hooks":    {201, `{"id": 2}`},
	})
	c, err := New(GitLab, f.url+"/", "glpat-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := RepoFromURL("https://gitlab.example.com/group/sub/app.git")
	if err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"PRIVATE-TOKEN": "glpat-token", "Authorization": ""}

	states := map[State]string{
		Pending: "pending",
		Running: "running",
		Success: "success",
		Failure: "failed",
		Error:   "failed",
	}
	for st, want := range states {
		if err := c.SetStatus(ctx, repo, shaAfter, Status{State: st, Context: "gantry/build", Description: "d", TargetURL: "https://ci/r/1"}); err != nil {
			t.Errorf("SetStatus(%s): %v", st, err)
			continue
		}
		checkRequest(t, f.last(t), "POST", project+"/statuses/"+shaAfter, auth,
			`{"state": "`+want+`", "name": "gantry/build", "description": "d", "target_url": "https://ci/r/1"}`)
	}
	if err := c.SetStatus(ctx, repo, shaAfter, Status{State: Error, Context: "gantry/build", Description: "Canceled by alice"}); err != nil {
		t.Errorf("SetStatus(canceled): %v", err)
	} else {
		checkRequest(t, f.last(t), "POST", project+"/statuses/"+shaAfter, auth, `{"state": "canceled", "name": "gantry/build", "description": "Canceled by alice"}`)
	}
	if err := c.SetStatus(ctx, repo, shaHead, Status{State: Running, Context: "gantry/build"}); err != nil {
		t.Errorf("SetStatus to the state it has: %v; want it taken as done", err)
	}
	if err := c.SetStatus(ctx, repo, shaBefore, Status{State: Running, Context: "gantry/build"}); !statusIs(err, 400) {
		t.Errorf("SetStatus refused: %v; want the 400", err)
	}
	f.requests()

	pulls, err := c.OpenPullRequests(ctx, repo)
	want := []Pull{
		{Number: 3, SHA: shaHead, Ref: "refs/merge-requests/3/head", Base: "main", Fork: true, Author: "bob"},
		{Number: 2, SHA: shaAfter, Ref: "refs/merge-requests/2/head", Base: "release", Author: "carol"},
	}
	if err != nil || !reflect.DeepEqual(pulls, want) {
		t.Errorf("OpenPullRequests = %+v, %v; want %+v", pulls, err, want)
	}
	checkRequest(t, f.last(t), "GET", project+"/merge_requests?per_page=100&state=opened", auth, "")

	for user, want := range map[string]bool{"bob": true, "carol": false, "dave": false, "ghost": false} {
		if got, err := c.IsCollaborator(ctx, repo, user); err != nil || got != want {
			t.Errorf("IsCollaborator(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	f.requests()

	id, err := c.CreateHook(ctx, repo, Hook{URL: "https://ci.example.com/hook", Secret: "hook-secret", Events: []EventKind{PullRequest}})
	if err != nil || id != "1" {
		t.Errorf("CreateHook = %q, %v", id, err)
	}
	checkRequest(t, f.last(t), "POST", project+"/hooks", auth, `{"url": "https://ci.example.com/hook", "token": "hook-secret",
	  "push_events": false, "tag_push_events": false, "merge_requests_events": true, "enable_ssl_verification": true}`)
	id, err = c.CreateHook(ctx, Repo{ID: "15"}, Hook{URL: "https://ci.example.com/hook", Secret: "hook-secret"})
	if err != nil || id != "2" {
		t.Errorf("CreateHook by project id = %q, %v", id, err)
	}
	checkRequest(t, f.last(t), "POST", "/api/v4/projects/15/hooks", auth, `{"url": "https://ci.example.com/hook", "token": "hook-secret",
	  "push_events": true, "tag_push_events": true, "merge_requests_events": true, "enable_ssl_verification": true}`)

	if err := c.DeleteHook(ctx, Repo{ID: "group%2Fsub%2Fapp"}, "1"); err != nil {
		t.Errorf("DeleteHook: %v", err)
	}
	checkRequest(t, f.last(t), "DELETE", project+"/hooks/1", auth, "")
}
