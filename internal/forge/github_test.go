package forge

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestGitHubClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pull := func(n int, headRepo string) string {
		return fmt.Sprintf(`{"id": %d, "number": %d, "state": "open", "draft": false, "user": {"login": "octocat"},
		  "head": {"label": "octocat:f", "ref": "f", "sha": "%s", "repo": %s}, "base": {"label": "gantryci:main", "ref": "main", "sha": "%s", "repo": %s}}`,
			1000+n, n, shaHead, headRepo, shaBefore, githubRepo)
	}
	const repoPath = "/api/v3/repos/gantryci/gantry"
	f := newFake(t, map[string]reply{
		"POST " + repoPath + "/statuses/" + shaAfter:         {201, `{"id": 1, "state": "success"}`},
		"GET " + repoPath + "/pulls?per_page=100&state=open": {200, "[" + pull(12, githubFork) + "," + pull(11, githubRepo) + "]"},
		"GET " + repoPath + "/collaborators/octocat":         {204, ""},
		"GET " + repoPath + "/collaborators/stranger":        {404, `{"message": "Not Found"}`},
		"GET " + repoPath + "/collaborators/limited":         {403, `{"message": "Must have push access to view collaborator permission."}`},
		"POST " + repoPath + "/hooks":                        {201, `{"type": "Repository", "id": 12345678, "name": "web", "active": true}`},
		"DELETE " + repoPath + "/hooks/12345678":             {204, ""},
	})
	// A GitHub Enterprise Server at the fake's address: /api/v3.
	c, err := New(GitHub, f.url, "ghp_token", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Owner: "gantryci", Name: "gantry"}
	auth := map[string]string{"Authorization": "Bearer ghp_token", "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": githubAPIVersion}

	states := map[State]string{
		Pending: `{"state": "pending", "context": "gantry/build", "description": "d", "target_url": "https://ci/r/1"}`,
		Running: `{"state": "pending", "context": "gantry/build", "description": "d", "target_url": "https://ci/r/1"}`,
		Success: `{"state": "success", "context": "gantry/build", "description": "d", "target_url": "https://ci/r/1"}`,
		Failure: `{"state": "failure", "context": "gantry/build", "description": "d", "target_url": "https://ci/r/1"}`,
		Error:   `{"state": "error", "context": "gantry/build", "description": "d", "target_url": "https://ci/r/1"}`,
	}
	for st, body := range states {
		if err := c.SetStatus(ctx, repo, shaAfter, Status{State: st, Context: "gantry/build", Description: "d", TargetURL: "https://ci/r/1"}); err != nil {
			t.Errorf("SetStatus(%s): %v", st, err)
			continue
		}
		checkRequest(t, f.last(t), "POST", repoPath+"/statuses/"+shaAfter, auth, body)
	}
	if err := c.SetStatus(ctx, repo, shaAfter, Status{State: "canceled"}); err == nil {
		t.Error("SetStatus(canceled) was sent")
	}

	pulls, err := c.OpenPullRequests(ctx, repo)
	want := []Pull{
		{Number: 12, SHA: shaHead, Ref: "refs/pull/12/head", Base: "main", Fork: true, Author: "octocat"},
		{Number: 11, SHA: shaHead, Ref: "refs/pull/11/head", Base: "main", Author: "octocat"},
	}
	if err != nil || !reflect.DeepEqual(pulls, want) {
		t.Errorf("OpenPullRequests = %+v, %v; want %+v", pulls, err, want)
	}
	checkRequest(t, f.last(t), "GET", repoPath+"/pulls?per_page=100&state=open", auth, "")

	for user, want := range map[string]bool{"octocat": true, "stranger": false} {
		if got, err := c.IsCollaborator(ctx, repo, user); err != nil || got != want {
			t.Errorf("IsCollaborator(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	if _, err := c.IsCollaborator(ctx, repo, "limited"); !statusIs(err, 403) || Retryable(err) {
		t.Errorf("IsCollaborator without access: %v; want the 403, not retryable", err)
	}
	if _, err := c.IsCollaborator(ctx, repo, ""); err == nil {
		t.Error("IsCollaborator of nobody was asked")
	}
	f.requests()

	id, err := c.CreateHook(ctx, repo, Hook{URL: "https://ci.example.com/hook", Secret: "hook-secret", Events: []EventKind{Tag, Push}})
	if err != nil || id != "12345678" {
		t.Errorf("CreateHook = %q, %v", id, err)
	}
	checkRequest(t, f.last(t), "POST", repoPath+"/hooks", auth, `{"name": "web", "active": true, "events": ["push"],
	  "config": {"url": "https://ci.example.com/hook", "content_type": "json", "secret": "hook-secret", "insecure_ssl": "0"}}`)
	id, err = c.CreateHook(ctx, repo, Hook{URL: "https://ci.example.com/hook", Secret: "hook-secret"})
	if err != nil || !strings.Contains(f.last(t).Body, `"events":["push","pull_request"]`) {
		t.Errorf("CreateHook without events = %q, %v; want push and pull_request", id, err)
	}

	if err := c.DeleteHook(ctx, repo, "12345678"); err != nil {
		t.Errorf("DeleteHook: %v", err)
	}
	checkRequest(t, f.last(t), "DELETE", repoPath+"/hooks/12345678", auth, "")
}
