package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestWithoutSessionNothingIsServed(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := noRedirects(nil)
	for _, path := range []string{"/api/jobs", "/api/jobs/j1", "/api/cluster", "/api/events", "/api/apps/web/events"} {
		resp, body := tc.get(c, path)
		var e map[string]string
		if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e["error"], "log in") {
			t.Errorf("GET %s without a session: %d %s, want 401 with a JSON error", path, resp.StatusCode, body)
		}
	}
	resp, body := tc.do(c, http.MethodPost, "/api/jobs/j1/cancel", "", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cancel without a session: %d %s, want 401", resp.StatusCode, body)
	}
	select {
	case id := <-tc.api.canceled:
		t.Errorf("the API canceled %s for a browser without a session", id)
	default:
	}
	resp, _ = tc.get(c, "/jobs?state=failed")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/login?next=%2Fjobs%3Fstate%3Dfailed" {
		t.Errorf("GET /jobs without a session: %d to %q, want 303 to the login page", resp.StatusCode, loc)
	}
	for _, path := range []string{"/login", "/assets/login.js", "/assets/style.css"} {
		if resp, _ := tc.get(c, path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a session: %d, want 200", path, resp.StatusCode)
		}
	}
	if _, body := tc.get(c, "/api/session"); body != `{"required":true}`+"\n" {
		t.Errorf("session without one: %s, want required and nobody", body)
	}
}

func TestLoginSetsAStrictHttpOnlyCookie(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	resp, body := tc.do(noRedirects(nil), http.MethodPost, "/api/login", `{"token":"`+adminToken+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name":"alice"`) || !strings.Contains(body, `"role":"admin"`) {
		t.Fatalf("log in: %d %s, want 200 naming alice, admin", resp.StatusCode, body)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("log in set %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if ck.Name != sessionCookie || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
		t.Errorf("cookie %s: want %s, HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", resp.Header.Get("Set-Cookie"), sessionCookie)
	}
	if strings.Contains(resp.Header.Get("Set-Cookie"), adminToken) || len(ck.Value) != 43 {
		t.Errorf("cookie value %q: want a 32-byte random id, not the token", ck.Value)
	}
	if ck.MaxAge <= 0 || ck.MaxAge > int((12*time.Hour)/time.Second) {
		t.Errorf("cookie Max-Age %d: want at most 12 hours", ck.MaxAge)
	}
}

func TestSessionCookieIsSecureOverTLS(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	srv := httptest.NewTLSServer(tc.srv.Config.Handler)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/login", strings.NewReader(`{"token":"`+adminToken+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(writeHeader, "1")
	req.Header.Set("Origin", srv.URL)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Cookies(); resp.StatusCode != http.StatusOK || len(c) != 1 || !c[0].Secure || !c[0].HttpOnly {
		t.Errorf("log in over TLS: %d %s, want a Secure HttpOnly cookie", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
}

func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	asJSON := map[string]string{"Content-Type": "application/json"}
	for _, tt := range []struct {
		name, body string
		header     map[string]string
		code       int
		says       string
	}{
		{"an unknown token", `{"token":"gantry_nobody_xxxxxxxxxxxxxxxxxxxxxxxx"}`, asJSON, http.StatusUnauthorized, "unknown or revoked"},
		{"no token", `{"token":""}`, asJSON, http.StatusBadRequest, "not an API token"},
		{"a token with a line break", `{"token":"gantry_a\nb"}`, asJSON, http.StatusBadRequest, "not an API token"},
		{"not JSON", `token=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType, "application/json"},
		{"from another origin", `{"token":"` + adminToken + `"}`, map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, http.StatusForbidden, "cross-origin"},
		{"without " + writeHeader, `{"token":"` + adminToken + `"}`, map[string]string{"Content-Type": "application/json", writeHeader: ""}, http.StatusForbidden, writeHeader},
	} {
		resp, body := tc.do(noRedirects(nil), http.MethodPost, "/api/login", tt.body, tt.header)
		if resp.StatusCode != tt.code || !strings.Contains(body, tt.says) || len(resp.Cookies()) != 0 {
			t.Errorf("log in with %s: %d %s %v, want %d saying %q and no cookie", tt.name, resp.StatusCode, body, resp.Cookies(), tt.code, tt.says)
		}
	}
}

func TestViewerSessionReadsButCannotWrite(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(viewerToken)
	if resp, body := tc.get(c, "/api/jobs"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"id":"j1"`) {
		t.Errorf("viewer lists jobs: %d %s, want 200", resp.StatusCode, body)
	}
	if _, body := tc.get(c, "/api/session"); !strings.Contains(body, `"name":"victor"`) || !strings.Contains(body, `"role":"viewer"`) {
		t.Errorf("viewer's session: %s, want victor, viewer", body)
	}
	for path, says := range map[string]string{
		"/api/jobs/j1/cancel":  "CancelJob needs role developer",
		"/api/apps/web/sync":   "SyncApp needs role operator",
		"/api/agents/a1/drain": "DrainAgent needs role operator",
		"/api/apps/web/unpin":  "UnpinApp needs role operator",
	} {
		if resp, body := tc.do(c, http.MethodPost, path, "", nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, says) {
			t.Errorf("viewer POST %s: %d %s, want 403 saying %q", path, resp.StatusCode, body, says)
		}
	}
	select {
	case id := <-tc.api.canceled:
		t.Errorf("a viewer canceled %s", id)
	case w := <-tc.api.writes:
		t.Errorf("a viewer made the write %q", w)
	default:
	}
}

func TestLogoutEndsTheSessionAndItsStreams(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(adminToken)
	id := sessionID(t, c, tc.srv.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.srv.URL+"/api/events", nil)
	stream, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %d", stream.StatusCode)
	}
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data: ") {
	}

	resp, body := tc.do(c, http.MethodPost, "/api/logout", "", nil)
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("log out: %d %s %s, want 200 clearing the cookie", resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
	}
	// The open stream ends (before the test's deadline) ...
	if _, err := io.Copy(io.Discard, stream.Body); err != nil || ctx.Err() != nil {
		t.Errorf("event stream after logout: %v, %v; want it ended by the server", err, ctx.Err())
	}
	// ... and the session is gone on the server, not only in the browser.
	old := noRedirects(nil)
	req, _ = http.NewRequest(http.MethodGet, tc.srv.URL+"/api/jobs", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
	resp, err = old.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/jobs with the logged-out session's cookie: %d, want 401", resp.StatusCode)
	}
}

// sessionID is the session cookie's value in c's jar.
func sessionID(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base, nil)
	for _, ck := range c.Jar.Cookies(req.URL) {
		if ck.Name == sessionCookie {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

func TestRevokedTokenEndsTheSession(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	c := tc.login(viewerToken)
	tc.api.revoked.Store(viewerToken, true)
	if resp, body := tc.get(c, "/api/jobs"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("GET /api/jobs with a revoked token: %d %s, want 401 with the API's message", resp.StatusCode, body)
	}
	if _, body := tc.get(c, "/api/session"); body != `{"required":true}`+"\n" {
		t.Errorf("session of a revoked token: %s, want it ended", body)
	}
	if n := tc.srv.Config.Handler.(*Handler).sessions.len(); n != 0 {
		t.Errorf("%d sessions kept after their token was revoked, want 0", n)
	}
}

func TestClusterWithoutTokensNeedsNoLogin(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t, func(f *fakeAPI, _ *Config) { f.open = true })
	c := noRedirects(nil)
	if _, body := tc.get(c, "/api/session"); body != `{"required":false}`+"\n" {
		t.Errorf("session: %s, want no login required", body)
	}
	for _, path := range []string{"/jobs", "/api/jobs"} {
		if resp, body := tc.get(c, path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a session: %d %s, want 200", path, resp.StatusCode, body)
		}
	}
	if resp, body := tc.do(c, http.MethodPost, "/api/jobs/j1/cancel", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("cancel without a session: %d %s, want 200", resp.StatusCode, body)
	}
	<-tc.api.canceled
	// Writes still come only from the console's pages.
	if resp, _ := tc.do(c, http.MethodPost, "/api/jobs/j1/cancel", "", map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin cancel: %d, want 403", resp.StatusCode)
	}
}

func TestHostHeaderMustBeKnown(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t, func(_ *fakeAPI, cfg *Config) { cfg.Hosts = append(cfg.Hosts, "console.example:8443") })
	c := tc.login(adminToken)
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"evil.example", false},
		{"evil.example:80", false},
		{"127.0.0.1.evil.example", false},
		{"localhost.evil.example", false},
		{"localhost", true},
		{"LOCALHOST:7421", true},
		{"console.example", true},
		{"console.example.:443", true},
		{"10.1.2.3:7421", true},
		{"[::1]:7421", true},
	} {
		for _, path := range []string{"/", "/login", "/api/jobs", "/api/session", "/assets/app.js"} {
			resp, body := tc.do(c, http.MethodGet, path, "", map[string]string{"Host": tt.host})
			refused := resp.StatusCode == http.StatusMisdirectedRequest
			if refused == tt.ok || (refused && !strings.Contains(body, "--http-hosts")) {
				t.Errorf("GET %s with Host %q: %d %s; want it %s", path, tt.host, resp.StatusCode, body, map[bool]string{true: "served", false: "refused with 421"}[tt.ok])
			}
		}
	}
	// A forged Host cannot log in either.
	resp, _ := tc.do(noRedirects(nil), http.MethodPost, "/api/login", `{"token":"`+adminToken+`"}`,
		map[string]string{"Host": "evil.example", "Origin": "http://evil.example", "Content-Type": "application/json"})
	if resp.StatusCode != http.StatusMisdirectedRequest || len(resp.Cookies()) != 0 {
		t.Errorf("log in with a forged Host: %d %v, want 421 and no cookie", resp.StatusCode, resp.Cookies())
	}
}

func TestAdminGuard(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "profile") })
	for _, open := range []bool{false, true} {
		tc := newTestServer(t, func(f *fakeAPI, _ *Config) { f.open = open })
		admin := httptest.NewServer(tc.srv.Config.Handler.(*Handler).Admin(ok))
		t.Cleanup(admin.Close)
		get := func(header map[string]string, cookie string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, admin.URL+"/debug/pprof/", nil)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			if h := req.Header.Get("Host"); h != "" {
				req.Host = h
			}
			if cookie != "" {
				req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		noToken := http.StatusUnauthorized
		if open {
			noToken = http.StatusOK
		}
		adminSession := sessionID(t, tc.login(adminToken), tc.srv.URL)
		viewerSession := sessionID(t, tc.login(viewerToken), tc.srv.URL)
		for _, tt := range []struct {
			name   string
			header map[string]string
			cookie string
			code   int
		}{
			{"no token", nil, "", noToken},
			{"an admin's bearer token", map[string]string{"Authorization": "Bearer " + adminToken}, "", http.StatusOK},
			{"a viewer's bearer token", map[string]string{"Authorization": "Bearer " + viewerToken}, "", http.StatusForbidden},
			{"an unknown bearer token", map[string]string{"Authorization": "Bearer gantry_x_yyyyyyyyyyyyyyyyyyyy"}, "", http.StatusUnauthorized},
			{"not a bearer", map[string]string{"Authorization": "Basic YTpi"}, "", http.StatusUnauthorized},
			{"an admin's session", nil, adminSession, http.StatusOK},
			{"a viewer's session", nil, viewerSession, http.StatusForbidden},
			{"an admin's token and a forged Host", map[string]string{"Authorization": "Bearer " + adminToken, "Host": "evil.example"}, "", http.StatusMisdirectedRequest},
		} {
			if code, body := get(tt.header, tt.cookie); code != tt.code || (code == http.StatusOK) != (body == "profile") {
				t.Errorf("open=%v, %s: %d %q, want %d", open, tt.name, code, body, tt.code)
			}
		}
	}
}

func TestSessionTableIsBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tab := newSessions(time.Hour, 2)
	info := &gv1.TokenInfo{Name: "alice", Role: gv1.Role_ROLE_ADMIN}
	first, s1 := tab.create("t1", info, now)
	second, _ := tab.create("t2", info, now.Add(time.Minute))
	third, _ := tab.create("t3", info, now.Add(2*time.Minute))
	if tab.len() != 2 || tab.get(first, now.Add(3*time.Minute)) != nil {
		t.Errorf("a full table kept the session that ends first (%d sessions)", tab.len())
	}
	select {
	case <-s1.done:
	default:
		t.Error("the evicted session's streams were not told it ended")
	}
	if s := tab.get(second, now.Add(3*time.Minute)); s == nil || s.token != "t2" {
		t.Errorf("second session: %+v, want token t2", s)
	}
	if tab.get(third, now.Add(2*time.Minute+time.Hour)) != nil {
		t.Error("an expired session was served")
	}
	if tab.get("", now) != nil || tab.get("nonsense", now) != nil {
		t.Error("a made-up id was served")
	}

	// A token that expires sooner ends its session sooner.
	soon := now.Add(10 * time.Minute)
	_, s := tab.create("t4", &gv1.TokenInfo{ExpiresAt: timestamppb.New(soon)}, now)
	if !s.expires.Equal(soon) {
		t.Errorf("session of a token expiring at %v ends at %v", soon, s.expires)
	}
}

// A login page reached with a session already bounces on (login.js); a
// second login replaces the first session rather than adding one.
func TestSecondLoginReplacesTheSession(t *testing.T) {
	t.Parallel()
	tc := newTestServer(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	for range 3 {
		resp, body := tc.do(c, http.MethodPost, "/api/login", `{"token":"`+adminToken+`"}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("log in: %d %s", resp.StatusCode, body)
		}
	}
	if n := tc.srv.Config.Handler.(*Handler).sessions.len(); n != 1 {
		t.Errorf("%d sessions after three logins of one browser, want 1", n)
	}
}
