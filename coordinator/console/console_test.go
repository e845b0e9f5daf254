package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fakeAPI serves the few calls these tests make over real gRPC, behind a
// small imitation of the API's tokens and roles, so that the console's
// client sends what it would send to a coordinator. The browser tests in
// test/console run the console against a real one.
type fakeAPI struct {
	gv1.UnimplementedGantryServiceServer
	open     bool // like a coordinator run with --insecure: calls need no token
	canceled chan string
	writes   chan string // app writes: "sync web", "rollback web abc", ...
	revoked  sync.Map    // bearer tokens refused from now on
}

// The fake's tokens.
const (
	adminToken  = "gantry_admin_aaaaaaaaaaaaaaaaaaaaaaaa"
	viewerToken = "gantry_viewer_vvvvvvvvvvvvvvvvvvvvvvvv"
)

var fakeTokens = map[string]*gv1.TokenInfo{
	adminToken:  {Id: "admin", Name: "alice", Role: gv1.Role_ROLE_ADMIN},
	viewerToken: {Id: "viewer", Name: "victor", Role: gv1.Role_ROLE_VIEWER},
}

// fakeRoles are the least roles of the writes; reads need a viewer.
var fakeRoles = map[string]gv1.Role{
	"CancelJob": gv1.Role_ROLE_DEVELOPER, "DrainAgent": gv1.Role_ROLE_OPERATOR,
	"SyncApp": gv1.Role_ROLE_OPERATOR, "RollbackApp": gv1.Role_ROLE_OPERATOR, "UnpinApp": gv1.Role_ROLE_OPERATOR,
	"RunProject": gv1.Role_ROLE_DEVELOPER, "ApproveBuild": gv1.Role_ROLE_OPERATOR,
	"ListAudit": gv1.Role_ROLE_ADMIN,
}

type callerKey struct{}

// authorize finds the caller's token and checks its role, as the API does.
func (f *fakeAPI) authorize(ctx context.Context, full string) (context.Context, error) {
	method := full[strings.LastIndexByte(full, '/')+1:]
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("authorization")
	if len(v) == 0 {
		if f.open {
			return ctx, nil
		}
		return nil, status.Errorf(codes.Unauthenticated, "%s needs a token", method)
	}
	bearer := strings.TrimPrefix(v[0], "Bearer ")
	t, ok := fakeTokens[bearer]
	if _, gone := f.revoked.Load(bearer); !ok || gone {
		return nil, status.Error(codes.Unauthenticated, "token: unknown or revoked")
	}
	if need := max(fakeRoles[method], gv1.Role_ROLE_VIEWER); t.Role < need {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs role %s or above; token %s (%s) has role %s", method, roleName(need), t.Id, t.Name, roleName(t.Role))
	}
	return context.WithValue(ctx, callerKey{}, t), nil
}

func (f *fakeAPI) WhoAmI(ctx context.Context, _ *gv1.WhoAmIRequest) (*gv1.WhoAmIResponse, error) {
	t, ok := ctx.Value(callerKey{}).(*gv1.TokenInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	return &gv1.WhoAmIResponse{Token: t}, nil
}

func (f *fakeAPI) GetJob(ctx context.Context, in *gv1.GetJobRequest) (*gv1.GetJobResponse, error) {
	if in.JobId != "j1" {
		return nil, status.Errorf(codes.NotFound, "job_id: no job %q", in.JobId)
	}
	return &gv1.GetJobResponse{Job: &gv1.Job{Id: "j1", State: gv1.JobState_JOB_STATE_RUNNING}}, nil
}

func (f *fakeAPI) CancelJob(ctx context.Context, in *gv1.CancelJobRequest) (*gv1.CancelJobResponse, error) {
	f.canceled <- in.JobId
	return &gv1.CancelJobResponse{Job: &gv1.Job{Id: in.JobId, State: gv1.JobState_JOB_STATE_CANCELED}}, nil
}

func (f *fakeAPI) ClusterStatus(context.Context, *gv1.ClusterStatusRequest) (*gv1.ClusterStatusResponse, error) {
	return &gv1.ClusterStatusResponse{Cluster: "c", LeaderId: "n1"}, nil
}

func (f *fakeAPI) ListAgents(context.Context, *gv1.ListAgentsRequest) (*gv1.ListAgentsResponse, error) {
	return &gv1.ListAgentsResponse{}, nil
}

func (f *fakeAPI) ListQueue(context.Context, *gv1.ListQueueRequest) (*gv1.ListQueueResponse, error) {
	return nil, status.Error(codes.Unavailable, "no leader elected")
}

func (f *fakeAPI) ListJobs(ctx context.Context, in *gv1.ListJobsRequest) (*gv1.ListJobsResponse, error) {
	return &gv1.ListJobsResponse{Jobs: []*gv1.Job{{Id: "j1"}}}, nil
}

// testConsole is a console in front of a fakeAPI.
type testConsole struct {
	t   *testing.T
	srv *httptest.Server
	api *fakeAPI
}

// newTestServer starts a console in front of a fake API that has tokens;
// configure may change both first.
func newTestServer(t *testing.T, configure ...func(*fakeAPI, *Config)) *testConsole {
	t.Helper()
	api := &fakeAPI{canceled: make(chan string, 1), writes: make(chan string, 8)}
	cfg := DefaultConfig()
	cfg.Interval = 20 * time.Millisecond
	for _, c := range configure {
		c(api, &cfg)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			ctx, err := api.authorize(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if _, err := api.authorize(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	)
	gv1.RegisterGantryServiceServer(gs, api)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	c, err := client.New([]string{lis.Addr().String()}, client.WithRetryTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(New(cfg, c.Raw(), zap.NewNop()))
	t.Cleanup(srv.Close)
	return &testConsole{t: t, srv: srv, api: api}
}

// noRedirects is an HTTP client that shows redirects instead of following
// them.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// login logs in with token and returns a client that sends the session's
// cookie.
func (tc *testConsole) login(token string) *http.Client {
	tc.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tc.t.Fatal(err)
	}
	c := noRedirects(jar)
	resp, body := tc.do(c, http.MethodPost, "/api/login", `{"token":"`+token+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK {
		tc.t.Fatalf("log in: %d %s", resp.StatusCode, body)
	}
	return c
}

// do sends a request; a POST carries the headers the console's pages send,
// which header may change ("" removes one).
func (tc *testConsole) do(c *http.Client, method, path, body string, header map[string]string) (*http.Response, string) {
	tc.t.Helper()
	req, err := http.NewRequest(method, tc.srv.URL+path, strings.NewReader(body))
	if err != nil {
		tc.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set(writeHeader, "1")
		req.Header.Set("Origin", tc.srv.URL)
	}
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	resp, err := c.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (tc *testConsole) get(c *http.Client, path string) (*http.Response, string) {
	tc.t.Helper()
	return tc.do(c, http.MethodGet, path, "", nil)
}

func TestPagesAndAssets(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	for path, want := range map[string]string{
		"/":                   "text/html",
		"/jobs/abc":           "text/html",
		"/agents":             "text/html",
		"/apps":               "text/html",
		"/apps/web":           "text/html",
		"/projects":           "text/html",
		"/projects/site":      "text/html",
		"/assets/projects.js": "javascript",
		"/audit":              "text/html",
		"/assets/audit.js":    "javascript",
		"/login":              "text/html",
		"/assets/apps.js":     "javascript",
		"/assets/app.js":      "javascript",
		"/assets/login.js":    "javascript",
		"/assets/style.css":   "text/css",
	} {
		resp, _ := tc.get(c, path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no content security policy", path)
		}
	}
	if resp, _ := tc.get(c, "/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", resp.StatusCode)
	}
}

func TestAPIMapsErrors(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	for path, code := range map[string]int{
		"/api/jobs/j1":          http.StatusOK,
		"/api/jobs/missing":     http.StatusNotFound,
		"/api/jobs?state=bogus": http.StatusBadRequest,
		"/api/queue":            http.StatusServiceUnavailable,
	} {
		resp, raw := tc.get(c, path)
		var body map[string]any
		json.Unmarshal([]byte(raw), &body)
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
	tc := newTestServer(t)
	c := tc.login(adminToken)
	for _, tt := range []struct {
		name   string
		header map[string]string
		code   int
	}{
		{"without " + writeHeader, map[string]string{writeHeader: ""}, http.StatusForbidden},
		{"from another origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"from another port", map[string]string{"Origin": "http://127.0.0.1:1"}, http.StatusForbidden},
		{"from a null origin", map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"from a null origin, cross-site", map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"from a null origin, same-origin", map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"cross-site by Sec-Fetch-Site", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site but another origin", map[string]string{"Origin": "", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"without Origin or Sec-Fetch-Site", map[string]string{"Origin": ""}, http.StatusForbidden},
		{"same-origin by Sec-Fetch-Site", map[string]string{"Origin": "", "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"from the console", nil, http.StatusOK},
	} {
		resp, body := tc.do(c, http.MethodPost, "/api/jobs/j1/cancel", "", tt.header)
		if resp.StatusCode != tt.code {
			t.Errorf("cancel %s: %d %s, want %d", tt.name, resp.StatusCode, body, tt.code)
		}
		var id string
		select {
		case id = <-tc.api.canceled:
		default:
		}
		if want := map[bool]string{true: "j1"}[tt.code == http.StatusOK]; id != want {
			t.Errorf("cancel %s: the API canceled %q, want %q", tt.name, id, want)
		}
	}
}

func TestOverviewStreamsEverySource(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.srv.URL+"/api/events", nil)
	resp, err := c.Do(req)
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
