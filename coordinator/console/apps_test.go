package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The fake knows one application, "web", pinned to commit bbb; "pipeline"
// is deployed by pipelines and refuses syncs like the real API does.
var fakeWeb = &gv1.AppSpec{Name: "web", Repo: "https://git.example/web.git", Path: "deploy", Cluster: "local", Namespace: "shop", AutoSync: true}

func fakeWebSummary() *gv1.AppSummary {
	return &gv1.AppSummary{
		Spec: fakeWeb, Sync: gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC, Reason: "1 live field(s) differ from Git",
		Health: gv1.HealthStatus_HEALTH_STATUS_HEALTHY, DeployedRevision: "bbb", LatestRevision: "ccc", PinnedRevision: "bbb",
	}
}

func (f *fakeAPI) ListApps(context.Context, *gv1.ListAppsRequest) (*gv1.ListAppsResponse, error) {
	return &gv1.ListAppsResponse{Apps: []*gv1.AppSummary{fakeWebSummary()}}, nil
}

func (f *fakeAPI) GetApp(ctx context.Context, in *gv1.GetAppRequest) (*gv1.GetAppResponse, error) {
	if in.Name != "web" {
		return nil, status.Errorf(codes.NotFound, "name: no application %q", in.Name)
	}
	return &gv1.GetAppResponse{
		App: &gv1.App{Spec: fakeWeb, PinnedRevision: "bbb", History: []*gv1.DeployRecord{
			{Id: 1, Revision: "aaa", Result: gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED, Trigger: "commit"},
			{Id: 2, Revision: "bbb", Result: gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED, Trigger: "rollback"},
		}},
		Summary: fakeWebSummary(),
		Drift:   &gv1.DriftReport{App: "web", Items: []*gv1.DriftItem{{Object: "apps/v1/Deployment shop/web", Field: "spec.replicas", Want: "2", Live: "1"}}},
	}, nil
}

func (f *fakeAPI) SyncApp(ctx context.Context, in *gv1.SyncAppRequest) (*gv1.SyncAppResponse, error) {
	if in.Name == "pipeline" {
		return nil, status.Error(codes.FailedPrecondition, "name: \"pipeline\" is deployed by pipelines, not followed in Git")
	}
	f.writes <- "sync " + in.Name
	return &gv1.SyncAppResponse{JobId: "j9", Revision: "ccc"}, nil
}

func (f *fakeAPI) RollbackApp(ctx context.Context, in *gv1.RollbackAppRequest) (*gv1.RollbackAppResponse, error) {
	if in.Revision != "aaa" {
		return nil, status.Errorf(codes.NotFound, "revision: %q was never deployed to %s", in.Revision, in.Name)
	}
	f.writes <- "rollback " + in.Name + " " + in.Revision
	return &gv1.RollbackAppResponse{JobId: "j10", Revision: in.Revision}, nil
}

func (f *fakeAPI) UnpinApp(ctx context.Context, in *gv1.UnpinAppRequest) (*gv1.UnpinAppResponse, error) {
	f.writes <- "unpin " + in.Name
	return &gv1.UnpinAppResponse{}, nil
}

func TestAppsAPI(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	for path, want := range map[string]struct {
		code int
		body string
	}{
		"/api/apps":         {http.StatusOK, `"pinnedRevision":"bbb"`},
		"/api/apps/web":     {http.StatusOK, `"field":"spec.replicas"`},
		"/api/apps/missing": {http.StatusNotFound, `no application \"missing\"`},
	} {
		resp, body := tc.get(c, path)
		if resp.StatusCode != want.code || !strings.Contains(body, want.body) {
			t.Errorf("GET %s: %d %s, want %d with %s", path, resp.StatusCode, body, want.code, want.body)
		}
	}
}

func TestAppWrites(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	for _, w := range []struct {
		path   string
		header map[string]string
		code   int
		body   string // in the response
		write  string // seen by the API, "" for none
	}{
		{"/api/apps/web/sync", map[string]string{writeHeader: ""}, http.StatusForbidden, writeHeader, ""},
		{"/api/apps/web/sync", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden, "cross-origin", ""},
		{"/api/apps/web/rollback?revision=aaa", map[string]string{writeHeader: ""}, http.StatusForbidden, writeHeader, ""},
		{"/api/apps/web/unpin", map[string]string{"Origin": "http://127.0.0.1:1"}, http.StatusForbidden, "cross-origin", ""},
		{"/api/apps/web/sync", nil, http.StatusOK, `"jobId":"j9"`, "sync web"},
		{"/api/apps/pipeline/sync", nil, http.StatusConflict, "deployed by pipelines", ""},
		{"/api/apps/web/rollback", nil, http.StatusBadRequest, "revision: required", ""},
		{"/api/apps/web/rollback?revision=zzz", nil, http.StatusNotFound, "never deployed", ""},
		{"/api/apps/web/rollback?revision=aaa", nil, http.StatusOK, `"revision":"aaa"`, "rollback web aaa"},
		{"/api/apps/web/unpin", nil, http.StatusOK, `{}`, "unpin web"},
	} {
		resp, body := tc.do(c, http.MethodPost, w.path, "", w.header)
		if resp.StatusCode != w.code || !strings.Contains(body, w.body) {
			t.Errorf("POST %s %v: %d %s, want %d with %s", w.path, w.header, resp.StatusCode, body, w.code, w.body)
		}
		var got string
		select {
		case got = <-tc.api.writes:
		default:
		}
		if got != w.write {
			t.Errorf("POST %s %v: API saw %q, want %q", w.path, w.header, got, w.write)
		}
	}
	if resp, _ := tc.get(c, "/api/apps/web/sync"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET sync: %d, want 405", resp.StatusCode)
	}
}

// firstEvent reads an event stream until its first event.
func firstEvent(t *testing.T, c *http.Client, url string) (event string, data map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q, want text/event-stream", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &data); err != nil {
				t.Fatalf("event %s: %v", event, err)
			}
			return event, data
		}
	}
	t.Fatalf("%s: stream ended without an event: %v", url, sc.Err())
	return "", nil
}

func TestAppEvents(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(viewerToken)
	ev, data := firstEvent(t, c, tc.srv.URL+"/api/apps/web/events")
	if ev != "app" || data["app"] == nil || data["drift"] == nil {
		t.Errorf("first event of web: %s %v, want app with the app and its drift", ev, data)
	}
	ev, data = firstEvent(t, c, tc.srv.URL+"/api/apps/missing/events")
	if ev != "app" || data["code"] != "5" || !strings.Contains(fmt.Sprint(data["error"]), "no application") {
		t.Errorf("first event of a missing app: %s %v, want app with error code 5 (NotFound)", ev, data)
	}
}
