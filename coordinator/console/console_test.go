package console

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fakeAPI answers the few calls these tests make; the browser test in
// test/console runs the console against a real coordinator.
type fakeAPI struct {
	gv1.GantryServiceClient
	canceled chan string
	writes   chan string // app writes: "sync web", "rollback web abc", ...
}

func (f *fakeAPI) GetJob(ctx context.Context, in *gv1.GetJobRequest, _ ...grpc.CallOption) (*gv1.GetJobResponse, error) {
	if in.JobId != "j1" {
		return nil, status.Errorf(codes.NotFound, "job_id: no job %q", in.JobId)
	}
	return &gv1.GetJobResponse{Job: &gv1.Job{Id: "j1", State: gv1.JobState_JOB_STATE_RUNNING}}, nil
}

func (f *fakeAPI) CancelJob(ctx context.Context, in *gv1.CancelJobRequest, _ ...grpc.CallOption) (*gv1.CancelJobResponse, error) {
	f.canceled <- in.JobId
	return &gv1.CancelJobResponse{Job: &gv1.Job{Id: in.JobId, State: gv1.JobState_JOB_STATE_CANCELED}}, nil
}

func (f *fakeAPI) ClusterStatus(context.Context, *gv1.ClusterStatusRequest, ...grpc.CallOption) (*gv1.ClusterStatusResponse, error) {
	return &gv1.ClusterStatusResponse{Cluster: "c", LeaderId: "n1"}, nil
}

func (f *fakeAPI) ListAgents(context.Context, *gv1.ListAgentsRequest, ...grpc.CallOption) (*gv1.ListAgentsResponse, error) {
	return &gv1.ListAgentsResponse{}, nil
}

func (f *fakeAPI) ListQueue(context.Context, *gv1.ListQueueRequest, ...grpc.CallOption) (*gv1.ListQueueResponse, error) {
	return nil, status.Error(codes.Unavailable, "no leader elected")
}

func (f *fakeAPI) ListJobs(ctx context.Context, in *gv1.ListJobsRequest, _ ...grpc.CallOption) (*gv1.ListJobsResponse, error) {
	return &gv1.ListJobsResponse{Jobs: []*gv1.Job{{Id: "j1"}}}, nil
}

func newTestServer(t *testing.T) (*httptest.Server, *fakeAPI) {
	t.Helper()
	api := &fakeAPI{canceled: make(chan string, 1), writes: make(chan string, 8)}
	cfg := DefaultConfig()
	cfg.Interval = 20 * time.Millisecond
	srv := httptest.NewServer(New(cfg, api, zap.NewNop()))
	t.Cleanup(srv.Close)
	return srv, api
}

func TestPagesAndAssets(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t)
	for path, want := range map[string]string{
		"/":                 "text/html",
		"/jobs/abc":         "text/html",
		"/agents":           "text/html",
		"/apps":             "text/html",
		"/apps/web":         "text/html",
		"/assets/apps.js":   "javascript",
		"/assets/app.js":    "javascript",
		"/assets/style.css": "text/css",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no content security policy", path)
		}
	}
	if resp, err := http.Get(srv.URL + "/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %v %v, want 404", resp.StatusCode, err)
	}
}

func TestAPIMapsErrors(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t)
	for path, code := range map[string]int{
		"/api/jobs/j1":          http.StatusOK,
		"/api/jobs/missing":     http.StatusNotFound,
		"/api/jobs?state=bogus": http.StatusBadRequest,
		"/api/queue":            http.StatusServiceUnavailable,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %d %v, want %d", path, resp.StatusCode, body, code)
		}
		if code != http.StatusOK && body["error"] == "" {
			t.Errorf("GET %s: no error message in %v", path, body)
		}
	}
}

func TestWritesRefuseCrossSiteRequests(t *testing.T) {
	t.Parallel()
	srv, api := newTestServer(t)
	post := func(header map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/jobs/j1/cancel", nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(nil); c != http.StatusForbidden {
		t.Errorf("cancel without %s: %d, want 403", writeHeader, c)
	}
	if c := post(map[string]string{writeHeader: "1", "Origin": "https://evil.example"}); c != http.StatusForbidden {
		t.Errorf("cancel from another origin: %d, want 403", c)
	}
	if c := post(map[string]string{writeHeader: "1", "Origin": srv.URL}); c != http.StatusOK {
		t.Errorf("cancel from the console: %d, want 200", c)
	}
	select {
	case id := <-api.canceled:
		if id != "j1" {
			t.Errorf("canceled %q, want j1", id)
		}
	default:
		t.Error("CancelJob was not called")
	}
}

func TestOverviewStreamsEverySource(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q, want text/event-stream", ct)
	}
	seen := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	var event string
	for len(seen) < 5 && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			seen[event] = strings.TrimPrefix(line, "data: ")
		}
	}
	for ev, want := range map[string]string{"cluster": `"leaderId":"n1"`, "agents": `{}`, "queue": `"error":"no leader elected"`, "jobs": `"id":"j1"`, "apps": `"name":"web"`} {
		if !strings.Contains(seen[ev], want) {
			t.Errorf("event %s = %q, want it to contain %s", ev, seen[ev], want)
		}
	}
}
