package console

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The fake knows one project, "site", whose build 2 awaits approval and
// build 1 ran as job j1.
func fakeSite() *gv1.ProjectSummary {
	return &gv1.ProjectSummary{
		Spec: &gv1.ProjectSpec{Name: "site", Repo: "https://git.example/site.git", Forge: "gitea"}, BuildsTotal: 2,
		Builds: []*gv1.BuildSummary{
			{Build: &gv1.Build{Number: 2, AwaitingApproval: true, Trigger: &gv1.Trigger{Event: "pull_request", PullRequest: 7, Untrusted: true}}},
			{Build: &gv1.Build{Number: 1, JobId: "j1", Trigger: &gv1.Trigger{Event: "push", Branch: "main"}}, State: gv1.JobState_JOB_STATE_SUCCEEDED},
		},
	}
}

func (f *fakeAPI) ListProjects(context.Context, *gv1.ListProjectsRequest) (*gv1.ListProjectsResponse, error) {
	return &gv1.ListProjectsResponse{Projects: []*gv1.ProjectSummary{fakeSite()}}, nil
}

func (f *fakeAPI) ApproveBuild(ctx context.Context, in *gv1.ApproveBuildRequest) (*gv1.ApproveBuildResponse, error) {
	if in.Project != "site" || in.Number != 2 {
		return nil, status.Errorf(codes.FailedPrecondition, "build %d of project %q is not awaiting approval", in.Number, in.Project)
	}
	f.writes <- "approve site 2"
	return &gv1.ApproveBuildResponse{Build: &gv1.BuildSummary{Build: &gv1.Build{Number: 2}}}, nil
}

func (f *fakeAPI) RunProject(ctx context.Context, in *gv1.RunProjectRequest) (*gv1.RunProjectResponse, error) {
	f.writes <- "run " + in.Name + " " + in.Ref
	return &gv1.RunProjectResponse{Build: &gv1.BuildSummary{Build: &gv1.Build{Number: 3}}}, nil
}

func TestProjectsAPI(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	if resp, body := tc.get(noRedirects(nil), "/api/projects"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/projects without a session: %d %s, want 401", resp.StatusCode, body)
	}
	if resp, body := tc.get(tc.login(viewerToken), "/api/projects"); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, `"name":"site"`) || !strings.Contains(body, `"awaitingApproval":true`) {
		t.Errorf("GET /api/projects: %d %s, want 200 with project site", resp.StatusCode, body)
	}

	c := tc.login(adminToken)
	for _, w := range []struct {
		path string
		code int
		body string
	}{
		{"/api/projects/site/builds/1/approve", http.StatusConflict, `build 1 of project \"site\" is not awaiting approval`},
		{"/api/projects/site/builds/x/approve", http.StatusBadRequest, "number:"},
		{"/api/projects/site/builds/2/approve", http.StatusOK, `"number":"2"`},
	} {
		resp, body := tc.do(c, http.MethodPost, w.path, "", nil)
		if resp.StatusCode != w.code || !strings.Contains(body, w.body) {
			t.Errorf("POST %s: %d %s, want %d with %s", w.path, resp.StatusCode, body, w.code, w.body)
		}
	}
	if got := lastWrite(tc.api); got != "approve site 2" {
		t.Errorf("API saw %q, want approve site 2", got)
	}
	asJSON := map[string]string{"Content-Type": "application/json"}
	if resp, body := tc.do(c, http.MethodPost, "/api/projects/site/run", `{"ref":"v1.2"}`, asJSON); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"number":"3"`) {
		t.Errorf("run: %d %s, want 200 with build 3", resp.StatusCode, body)
	}
	if got := lastWrite(tc.api); got != "run site v1.2" {
		t.Errorf("API saw %q, want run site v1.2", got)
	}
	if resp, body := tc.do(tc.login(viewerToken), http.MethodPost, "/api/projects/site/builds/2/approve", "", nil); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "ApproveBuild needs role operator") {
		t.Errorf("approve as a viewer: %d %s, want 403 with the API's refusal", resp.StatusCode, body)
	}
}

// lastWrite is the write the fake API saw, if any: a handler has made its
// call before it answers.
func lastWrite(f *fakeAPI) string {
	select {
	case w := <-f.writes:
		return w
	default:
		return ""
	}
}

func (f *fakeAPI) DecideTask(ctx context.Context, in *gv1.DecideTaskRequest) (*gv1.DecideTaskResponse, error) {
	if in.JobId != "j1" || in.Task != "gate" {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s of job %s is not waiting for a decision", in.Task, in.JobId)
	}
	verb := "approve"
	if in.Reject {
		verb = "reject"
	}
	f.writes <- verb + " " + in.JobId + " " + in.Task
	return &gv1.DecideTaskResponse{Job: &gv1.Job{Id: "j1"}}, nil
}

func TestApprovalTaskAPI(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	for _, w := range []struct {
		path, write string
		code        int
	}{
		{"/api/jobs/j1/tasks/gate/approve", "approve j1 gate", http.StatusOK},
		{"/api/jobs/j1/tasks/gate/reject", "reject j1 gate", http.StatusOK},
		{"/api/jobs/j1/tasks/build/approve", "", http.StatusConflict},
	} {
		resp, body := tc.do(c, http.MethodPost, w.path, "", nil)
		if resp.StatusCode != w.code {
			t.Errorf("POST %s: %d %s, want %d", w.path, resp.StatusCode, body, w.code)
		}
		if got := lastWrite(tc.api); got != w.write {
			t.Errorf("POST %s: API saw %q, want %q", w.path, got, w.write)
		}
	}
}
