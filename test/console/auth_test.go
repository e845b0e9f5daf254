package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// get sends a GET to the console from outside the browser, with a Host
// header and a session cookie if given, without following redirects.
func get(t *testing.T, url, host, session string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if session != "" {
		req.AddCookie(&http.Cookie{Name: "gantry_session", Value: session})
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// sessionCookie is the browser's session cookie of the console.
func sessionCookie(t *testing.T, ctx context.Context, base string) *network.Cookie {
	t.Helper()
	cookies, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
		return res.Cookies, err
	})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	for _, c := range cookies {
		if c.Name == "gantry_session" {
			return c
		}
	}
	return nil
}

// TestConsoleLogin goes through the login page: without a session the
// console sends the browser there and its API answers 401; a bad token is
// refused with the API's message; the admin token logs in, the header
// names it, and the session cookie is out of scripts' and other sites'
// reach; a name the console does not know is refused (DNS rebinding);
// logging out ends the session on the server.
func TestConsoleLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	f := newFixture(t, nil)
	_, port, _ := net.SplitHostPort(f.srv.HTTPAddr())
	// rebind.example resolves to the console, as an attacker's name would
	// after rebinding.
	ctx := browser(t, 1280, 900, chromedp.Flag("host-resolver-rules", "MAP rebind.example 127.0.0.1"))

	if code, body := get(t, f.base+"/api/jobs", "", ""); code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
		t.Errorf("GET /api/jobs without a session: %d %s, want 401 with a JSON error", code, body)
	}
	run(t, ctx, 20*time.Second, "open the jobs page without a session",
		chromedp.Navigate(f.base+"/jobs?state=failed"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)))
	until(t, ctx, 5*time.Second, "the login page, to return to the jobs page",
		`location.pathname === '/login' && new URLSearchParams(location.search).get('next') === '/jobs?state=failed' && document.title.startsWith('Log in')`)

	run(t, ctx, 10*time.Second, "log in with a token nobody made",
		chromedp.SendKeys(chromedp.CSS(`#token`), "gantry_nobody_abcdefghijklmnopqrstuvwx"),
		chromedp.Click(chromedp.CSS(`#login-submit`)))
	until(t, ctx, 10*time.Second, "the API's refusal on the page",
		`(e => !e.hidden && e.textContent.includes('unknown or revoked'))(document.querySelector('#login-error'))`)
	if c := sessionCookie(t, ctx, f.base); c != nil {
		t.Errorf("a refused login left a session cookie %s", c.Name)
	}

	run(t, ctx, 10*time.Second, "log in with the admin token",
		chromedp.Evaluate[chromedp.Void](`void (document.querySelector('#token').value = '')`),
		chromedp.SendKeys(chromedp.CSS(`#token`), testcluster.AdminToken()),
		chromedp.Click(chromedp.CSS(`#login-submit`)))
	until(t, ctx, 15*time.Second, "back on the jobs page it asked for",
		`location.pathname === '/jobs' && location.search === '?state=failed' && document.querySelector('#job-search') !== null`)
	until(t, ctx, 10*time.Second, "the header names the token and its role",
		`!document.querySelector('#user').hidden && document.querySelector('#user-name').textContent === 'bootstrap' && document.querySelector('#user-role').textContent === 'admin'`)
	until(t, ctx, 10*time.Second, "live stream connected", `document.querySelector('#live.on') !== null`)

	c := sessionCookie(t, ctx, f.base)
	switch {
	case c == nil:
		t.Fatal("no session cookie after logging in")
	case !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" || c.Secure:
		t.Errorf("session cookie: HttpOnly %v, SameSite %q, Path %q, Secure %v; want HttpOnly, Strict, /, not Secure over plain HTTP", c.HTTPOnly, c.SameSite, c.Path, c.Secure)
	case strings.Contains(c.Value, testcluster.AdminToken()):
		t.Error("the session cookie holds the token")
	}
	until(t, ctx, time.Second, "the cookie out of scripts' reach", `!document.cookie.includes('gantry_session')`)
	if code, body := get(t, f.base+"/api/jobs", "", c.Value); code != http.StatusOK {
		t.Errorf("GET /api/jobs with the session: %d %s, want 200", code, body)
	}

	// DNS rebinding: the console refuses a name it does not know, even
	// with a session.
	if code, body := get(t, f.base+"/api/jobs", "rebind.example:"+port, c.Value); code != http.StatusMisdirectedRequest || !strings.Contains(body, "--http-hosts") {
		t.Errorf("GET /api/jobs with a forged Host: %d %s, want 421", code, body)
	}
	if code, _ := get(t, f.base+"/healthz", "rebind.example:"+port, ""); code != http.StatusOK {
		t.Errorf("GET /healthz with another Host: %d, want 200 (health stays open)", code)
	}
	run(t, ctx, 20*time.Second, "open the console under a rebound name",
		chromedp.Navigate(fmt.Sprintf("http://rebind.example:%s/jobs", port)))
	until(t, ctx, 5*time.Second, "the refusal", `document.body.innerText.includes('is not a name this console answers to')`)

	run(t, ctx, 20*time.Second, "back to the console, and log out",
		chromedp.Navigate(f.base+"/agents"),
		chromedp.WaitVisible(chromedp.CSS(`#logout`)),
		chromedp.Click(chromedp.CSS(`#logout`)))
	until(t, ctx, 10*time.Second, "the login page", `location.pathname === '/login' && document.querySelector('#token') !== null`)
	if c := sessionCookie(t, ctx, f.base); c != nil {
		t.Errorf("the session cookie outlived the logout")
	}
	if code, _ := get(t, f.base+"/api/jobs", "", c.Value); code != http.StatusUnauthorized {
		t.Errorf("GET /api/jobs with the logged-out session's id: %d, want 401 (ended on the server)", code)
	}
	run(t, ctx, 20*time.Second, "open a page after logging out", chromedp.Navigate(f.base+"/cluster"))
	until(t, ctx, 10*time.Second, "the login page again", `location.pathname === '/login' && document.querySelector('#token') !== null`)
}

// TestConsoleViewer logs in with a viewer's token: the console shows the
// cluster, and the API refuses its cancel, sync and drain with
// PermissionDenied, which the page shows.
func TestConsoleViewer(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := browser(t, 1280, 900)
	f := newFixture(t, map[string]map[string]string{"builder": {"pool": "general"}})
	viewer := f.token("watcher", gv1.Role_ROLE_VIEWER)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client.CreateApp(cctx, &gv1.CreateAppRequest{Spec: &gv1.AppSpec{
		Name: "shop-web", Repo: "file:///nonexistent", Path: "deploy", Cluster: "local", Namespace: "shop",
	}}); err != nil {
		t.Fatalf("create app: %v", err)
	}
	long := f.submit(&gv1.JobSpec{Name: "viewer-long", Tasks: []*gv1.TaskSpec{shellTask("sleeper", "echo sleeping-now; sleep 120")}})
	t.Cleanup(func() { f.cancel(long) })
	f.waitTask(long, "sleeper", gv1.TaskState_TASK_STATE_RUNNING)

	f.login(ctx, viewer, "watcher")
	until(t, ctx, 5*time.Second, "the viewer role in the header", `document.querySelector('#user-role').textContent === 'viewer'`)
	toast := func(says string) string {
		return fmt.Sprintf(`(t => !t.hidden && t.textContent.includes(%q))(document.querySelector('#toast'))`, says)
	}

	run(t, ctx, 20*time.Second, "open the running job",
		chromedp.Navigate(f.base+"/jobs/"+long),
		chromedp.WaitVisible(chromedp.CSS(`svg.dag`)))
	until(t, ctx, 15*time.Second, "its live log", `document.querySelector('#log').textContent.includes('sleeping-now')`)
	run(t, ctx, 10*time.Second, "click cancel and confirm",
		chromedp.Click(chromedp.CSS(`#cancel-job`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	until(t, ctx, 10*time.Second, "the API's refusal", toast("CancelJob needs role developer"))
	if st := f.job(long).State; st != gv1.JobState_JOB_STATE_RUNNING {
		t.Errorf("job after a viewer's cancel: %s, want running", st)
	}

	run(t, ctx, 20*time.Second, "open the application",
		chromedp.Navigate(f.base+"/apps/shop-web"),
		chromedp.WaitVisible(chromedp.CSS(`#sync-app`)))
	until(t, ctx, 10*time.Second, "the application shown", `document.querySelector('.head-badges [data-sync]') !== null`)
	run(t, ctx, 10*time.Second, "click sync", chromedp.Click(chromedp.CSS(`#sync-app`)))
	until(t, ctx, 10*time.Second, "the API's refusal of the sync", toast("SyncApp needs role operator"))

	run(t, ctx, 20*time.Second, "drain an agent",
		chromedp.Navigate(f.base+"/agents"),
		chromedp.WaitVisible(chromedp.CSS(`button[data-drain="builder"]`)),
		chromedp.Click(chromedp.CSS(`button[data-drain="builder"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	until(t, ctx, 10*time.Second, "the API's refusal of the drain", toast("DrainAgent needs role operator"))
	until(t, ctx, 5*time.Second, "the agent still active", `document.querySelector('tr[data-agent="builder"]').dataset.state === 'active'`)
}
