package coordinator_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestHTTPAddressGuards checks what each path of a coordinator's HTTP
// address answers to: health and metrics to anyone, the hook to signed
// pushes only, the console and its API to known host names and logged-in
// users, profiles to admins.
func TestHTTPAddressGuards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a coordinator")
	}
	t.Parallel()
	c := testcluster.Start(t, testcluster.Options{Name: "http", Configure: func(cfg *coordinator.Config) {
		cfg.HTTPHosts = []string{"console.example"}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	viewer, err := c.API(0).CreateToken(ctx, "watcher", gv1.Role_ROLE_VIEWER, 0)
	if err != nil {
		t.Fatalf("create a viewer token: %v", err)
	}
	base := "http://" + c.Node(0).HTTPAddr()
	admin := "Bearer " + testcluster.AdminToken()

	// A console session of the admin.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/login", strings.NewReader(`{"token":"`+testcluster.AdminToken()+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gantry-Console", "1")
	req.Header.Set("Origin", base)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("log in to the console: %d", resp.StatusCode)
	}
	session := resp.Cookies()[0]

	for _, tt := range []struct {
		method, path, host, auth string
		session                  bool
		code                     int
		says                     string
	}{
		{"GET", "/healthz", "evil.example", "", false, http.StatusOK, "ok"},
		{"GET", "/metrics", "evil.example", "", false, http.StatusOK, "gantry_"},
		{"POST", "/hooks/git", "evil.example", "", false, http.StatusForbidden, "--webhook-secret"},
		{"GET", "/", "evil.example", "", true, http.StatusMisdirectedRequest, "--http-hosts"},
		{"GET", "/api/jobs", "evil.example", "", true, http.StatusMisdirectedRequest, "--http-hosts"},
		{"GET", "/api/jobs", "console.example", "", false, http.StatusUnauthorized, "log in"},
		{"GET", "/api/jobs", "", "", false, http.StatusUnauthorized, "log in"},
		{"GET", "/api/jobs", "", "", true, http.StatusOK, "{"},
		{"GET", "/debug/pprof/", "", "", false, http.StatusUnauthorized, "admin token"},
		{"GET", "/debug/pprof/", "", "Bearer " + viewer.GetSecret(), false, http.StatusForbidden, "role admin"},
		{"GET", "/debug/pprof/", "", admin, false, http.StatusOK, "goroutine"},
		{"GET", "/debug/pprof/cmdline", "localhost", admin, false, http.StatusOK, ""},
		{"GET", "/debug/pprof/", "", "", true, http.StatusOK, "goroutine"},
		{"GET", "/debug/pprof/", "evil.example", admin, false, http.StatusMisdirectedRequest, "--http-hosts"},
	} {
		req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader("{}"))
		if tt.host != "" {
			req.Host = tt.host
		}
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		if tt.session {
			req.AddCookie(session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.says) {
			t.Errorf("%s %s (Host %q, authorization %v, session %v): %d %.200s; want %d with %q",
				tt.method, tt.path, tt.host, tt.auth != "", tt.session, resp.StatusCode, body, tt.code, tt.says)
		}
	}
}
