package forge

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func giteaPullJSON(n int, headRepo string) string {
	return fmt.Sprintf(`{"id": %d, "number": %d, "state": "open", "user": {"login": "bob", "username": "bob"},
	  "head": {"ref": "feature-%d", "sha": "%s", "repo": %s}, "base": {"ref": "main", "sha": "%s", "repo": %s}}`,
		1000+n, n, n, shaHead, headRepo, shaBefore, giteaRepo)
}

func TestGiteaClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var page1, page2 []string
	for n := 60; n > 10; n-- {
		page1 = append(page1, giteaPullJSON(n, giteaRepo))
	}
	page2 = append(page2, giteaPullJSON(9, giteaFork), giteaPullJSON(8, "null"))
	const repoPath = "/api/v1/repos/alice/app"
	f := newFake(t, map[string]reply{
		"POST " + repoPath + "/statuses/" + shaAfter:            {201, `{"id": 1, "status": "pending"}`},
		"GET " + repoPath + "/pulls?limit=50&page=1&state=open": {200, "[" + strings.Join(page1, ",") + "]"},
		"GET " + repoPath + "/pulls?limit=50&page=2&state=open": {200, "[" + strings.Join(page2, ",") + "]"},
		"GET " + repoPath + "/collaborators/bob":                {204, ""},
		"GET " + repoPath + "/collaborators/alice":              {404, `{"message": "Not Found"}`},
		"GET " + repoPath + "/collaborators/mallory":            {404, `{"message": "Not Found"}`},
		"GET " + repoPath + "/collaborators/eve":                {500, `{"message": "boom"}`},
		"GET " + repoPath:                                       {200, giteaRepo},
		"POST " + repoPath + "/hooks":                           {201, `{"id": 42, "type": "gitea", "active": true}`},
		"DELETE " + repoPath + "/hooks/42":                      {204, ""},
		"DELETE " + repoPath + "/hooks/43":                      {404, `{"message": "Not Found"}`},
		"DELETE " + repoPath + "/hooks/44":                      {403, `{"message": "Forbidden"}`},
	})
	c, err := New(Gitea, f.url, "gitea-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Owner: "alice", Name: "app"}
	auth := map[string]string{"Authorization": "token gitea-token", "Accept": "application/json"}

	states := []struct {
		st   Status
		body string
	}{
		{Status{State: Pending, Context: "gantry/build", Description: "Queued", TargetURL: "https://ci.example.com/r/1"},
			`{"state": "pending", "context": "gantry/build", "description": "Queued", "target_url": "https://ci.example.com/r/1"}`},
		{Status{State: Running, Context: "gantry/build"}, `{"state": "pending", "context": "gantry/build", "description": "Running"}`},
		{Status{State: Running, Context: "gantry/build", Description: "Step 2 of 3"}, `{"state": "pending", "context": "gantry/build", "description": "Step 2 of 3"}`},
		{Status{State: Success, Context: "gantry/build"}, `{"state": "success", "context": "gantry/build"}`},
		{Status{State: Failure, Context: "gantry/build"}, `{"state": "failure", "context": "gantry/build"}`},
		{Status{State: Error, Context: "gantry/build"}, `{"state": "error", "context": "gantry/build"}`},
		{Status{State: Failure, Context: "c", Description: strings.Repeat("é", 200)}, `{"state": "failure", "context": "c", "description": "` + strings.Repeat("é", 139) + `…"}`},
	}
	for _, s := range states {
		if err := c.SetStatus(ctx, repo, shaAfter, s.st); err != nil {
			t.Errorf("SetStatus(%s): %v", s.st.State, err)
			continue
		}
		checkRequest(t, f.last(t), "POST", repoPath+"/statuses/"+shaAfter, auth, s.body)
	}
	if err := c.SetStatus(ctx, repo, shaAfter, Status{State: "warning"}); err == nil {
		t.Error("SetStatus(warning) was sent; want a state Gantry does not have refused")
	}
	if err := c.SetStatus(ctx, repo, "main", Status{State: Success}); err == nil {
		t.Error("SetStatus of a branch name was sent; want a full commit id asked for")
	}
	if err := c.SetStatus(ctx, Repo{Owner: "a/b", Name: "app"}, shaAfter, Status{State: Success}); err == nil {
		t.Error("SetStatus to a nested owner was sent")
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("refused calls made requests: %+v", got)
	}

	pulls, err := c.OpenPullRequests(ctx, repo)
	if err != nil {
		t.Fatalf("OpenPullRequests: %v", err)
	}
	if len(pulls) != 52 || len(f.requests()) != 2 {
		t.Errorf("OpenPullRequests: %d pulls; want 52 from two pages", len(pulls))
	}
	want := []Pull{
		{Number: 60, SHA: shaHead, Ref: "refs/pull/60/head", Base: "main", Author: "bob"},
		{Number: 9, SHA: shaHead, Ref: "refs/pull/9/head", Base: "main", Fork: true, Author: "bob"},
		{Number: 8, SHA: shaHead, Ref: "refs/pull/8/head", Base: "main", Fork: true, Author: "bob"},
	}
	if got := []Pull{pulls[0], pulls[50], pulls[51]}; !reflect.DeepEqual(got, want) {
		t.Errorf("OpenPullRequests = %+v ...; want %+v", got, want)
	}

	for user, want := range map[string]bool{"bob": true, "alice": true, "mallory": false} {
		if got, err := c.IsCollaborator(ctx, repo, user); err != nil || got != want {
			t.Errorf("IsCollaborator(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	if _, err := c.IsCollaborator(ctx, repo, "eve"); !statusIs(err, 500) {
		t.Errorf("IsCollaborator on a failing forge: %v; want the 500", err)
	}
	f.requests()

	hook := Hook{URL: "https://ci.example.com/hook", Secret: "hook-secret", Events: []EventKind{Push, Tag, PullRequest}}
	id, err := c.CreateHook(ctx, repo, hook)
	if err != nil || id != "42" {
		t.Errorf("CreateHook = %q, %v; want 42", id, err)
	}
	checkRequest(t, f.last(t), "POST", repoPath+"/hooks", auth, `{"type": "gitea", "active": true, "events": ["push", "pull_request"],
	  "branch_filter": "*", "config": {"url": "https://ci.example.com/hook", "content_type": "json", "secret": "hook-secret"}}`)
	if _, err := c.CreateHook(ctx, repo, Hook{URL: hook.URL}); err == nil {
		t.Error("CreateHook without a secret was sent")
	}
	if _, err := c.CreateHook(ctx, repo, Hook{URL: hook.URL, Secret: "s", Events: []EventKind{Cron, Manual}}); err == nil {
		t.Error("CreateHook for cron and manual runs only was sent")
	}
	if _, err := c.CreateHook(ctx, repo, Hook{URL: hook.URL, Secret: "s", Events: []EventKind{"issues"}}); err == nil {
		t.Error("CreateHook for issue events was sent")
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("refused hooks made requests: %+v", got)
	}
	if _, err := c.CreateHook(ctx, repo, Hook{URL: hook.URL, Secret: "s", Events: []EventKind{Cron, Push}}); err != nil {
		t.Errorf("CreateHook for push and cron: %v", err)
	}
	if got := f.last(t).Body; !strings.Contains(got, `"events":["push"]`) {
		t.Errorf("CreateHook for push and cron sent %s; want push only", got)
	}

	if err := c.DeleteHook(ctx, repo, "42"); err != nil {
		t.Errorf("DeleteHook: %v", err)
	}
	checkRequest(t, f.last(t), "DELETE", repoPath+"/hooks/42", auth, "")
	if err := c.DeleteHook(ctx, repo, "43"); err != nil {
		t.Errorf("DeleteHook of a hook already gone: %v", err)
	}
	if err := c.DeleteHook(ctx, repo, "44"); !statusIs(err, http.StatusForbidden) {
		t.Errorf("DeleteHook refused: %v; want the 403", err)
	}
}

func TestForgejoHookType(t *testing.T) {
	t.Parallel()
	f := newFake(t, map[string]reply{"POST /api/v1/repos/alice/app/hooks": {201, `{"id": 7}`}})
	c, err := New(Forgejo, f.url, "fj", nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.CreateHook(context.Background(), Repo{Owner: "alice", Name: "app"}, Hook{URL: "https://ci/h", Secret: "s", Events: []EventKind{PullRequest}})
	if err != nil || id != "7" {
		t.Fatalf("CreateHook = %q, %v", id, err)
	}
	checkRequest(t, f.last(t), "POST", "/api/v1/repos/alice/app/hooks", map[string]string{"Authorization": "token fj"},
		`{"type": "forgejo", "active": true, "events": ["pull_request"], "branch_filter": "*", "config": {"url": "https://ci/h", "content_type": "json", "secret": "s"}}`)
}
