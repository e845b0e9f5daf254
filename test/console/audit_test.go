package console

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// waitAudit waits until the API's audit log has an event of method on
// target, and returns it.
func (f *fixture) waitAudit(method, target string) *gv1.AuditEvent {
	f.t.Helper()
	var found *gv1.AuditEvent
	waitFor(f.t, 15*time.Second, "audit event "+method+" "+target, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		events, err := f.api.Audit(ctx, time.Time{}, 0)
		if err != nil {
			return false
		}
		for _, e := range events {
			if e.Method == method && e.Target == target {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// TestConsoleAudit checks the audit page: an admin sees the calls made
// through the API, newest first, with who made them, from where and how
// they ended; the page refreshes from the keyboard and works in a narrow
// window; a viewer sees the API's refusal.
func TestConsoleAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := browser(t, 1280, 900)
	f := newFixture(t, nil)

	// A token created through the API is audited with its id as target.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	created, err := f.api.CreateToken(cctx, "auditee", gv1.Role_ROLE_VIEWER, 0)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	tokenTarget := "token " + created.GetToken().GetId()
	ev := f.waitAudit("CreateToken", tokenTarget)

	f.login(ctx, testcluster.AdminToken(), "bootstrap")
	run(t, ctx, 20*time.Second, "open the audit page from the navigation",
		chromedp.WaitVisible(chromedp.CSS(`nav a[data-section="audit"]`)),
		chromedp.Click(chromedp.CSS(`nav a[data-section="audit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit-since`)))
	until(t, ctx, 5*time.Second, "the nav link marks the section", `document.querySelector('nav a[data-section="audit"]').getAttribute('aria-current') === 'page'`)
	until(t, ctx, 5*time.Second, "the title", `document.title === 'Audit · Gantry'`)
	rowOf := func(method, target string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('#audit tbody tr')].find(r => r.dataset.method === %q && r.cells[5].textContent === %q)`, method, target)
	}
	created1 := rowOf("CreateToken", tokenTarget)
	until(t, ctx, 10*time.Second, "the token's creation", created1+` !== undefined`)
	until(t, ctx, 5*time.Second, "who, role, peer, call and an ok result",
		fmt.Sprintf(`(r => r.cells[1].textContent.includes('bootstrap') && r.cells[1].textContent.includes(%q) && r.cells[2].textContent === 'admin' && !r.cells[1].querySelector('.show-narrow').checkVisibility() && r.cells[3].textContent === %q && r.cells[4].textContent === 'CreateToken' && r.dataset.result === 'ok' && r.cells[6].textContent === 'ok')(`+created1+`)`,
			ev.GetActor().GetTokenId(), ev.GetActor().GetPeer()))

	// A call that fails shows after a refresh, first and marked.
	if _, err := f.client.CancelJob(cctx, &gv1.CancelJobRequest{JobId: "no-such-job"}); err == nil {
		t.Fatal("cancel a job that does not exist: no error")
	}
	failed := f.waitAudit("CancelJob", "job no-such-job")
	if failed.GetResult() == "ok" {
		t.Fatalf("audit of a failed cancel: result ok")
	}
	run(t, ctx, 10*time.Second, "refresh from the keyboard",
		chromedp.Focus(chromedp.CSS(`#audit-refresh`)),
		chromedp.KeyEvent(kb.Enter))
	first := `document.querySelector('#audit tbody tr')`
	until(t, ctx, 10*time.Second, "the failed cancel first, marked",
		fmt.Sprintf(`(r => r.dataset.method === 'CancelJob' && r.dataset.result === 'error' && r.classList.contains('audit-error') && r.querySelector('.badge.failed') !== null && r.cells[6].textContent.includes(%q))(`+first+`)`, failed.GetResult()))
	until(t, ctx, time.Second, "the focus kept on refresh", `document.activeElement === document.querySelector('#audit-refresh')`)
	until(t, ctx, 5*time.Second, "newest first",
		`(rows => rows.findIndex(r => r.dataset.method === 'CancelJob') < rows.findIndex(r => r.dataset.method === 'CreateToken'))([...document.querySelectorAll('#audit tbody tr')])`)

	// The window filter works from the keyboard and is kept in the URL.
	run(t, ctx, 10*time.Second, "choose all with the keyboard",
		chromedp.Focus(chromedp.CSS(`#audit-since`)),
		chromedp.KeyEvent(kb.ArrowDown),
		chromedp.KeyEvent(kb.ArrowDown))
	until(t, ctx, 5*time.Second, "since all in the URL", `document.querySelector('#audit-since').value === 'all' && location.search === '?since=all'`)
	until(t, ctx, 10*time.Second, "the events again", created1+` !== undefined && `+first+`.dataset.method === 'CancelJob'`)

	// A narrow window: the table fits, the peer column is hidden.
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 400, Height: 800, DeviceScaleFactor: 1})
	}); err != nil {
		t.Fatalf("narrow the window: %v", err)
	}
	run(t, ctx, 20*time.Second, "reload the audit page narrow",
		chromedp.Navigate(f.base+"/audit?since=all"),
		chromedp.WaitVisible(chromedp.CSS(`#audit-since`)))
	until(t, ctx, 10*time.Second, "the events in a narrow window", created1+` !== undefined`)
	until(t, ctx, 5*time.Second, "no page-wide horizontal scroll, the peer hidden, the role under the name",
		`document.documentElement.scrollWidth <= window.innerWidth && document.querySelector('#audit-since').value === 'all' && `+
			`(r => getComputedStyle(r.cells[3]).display === 'none' && r.cells[1].querySelector('.show-narrow').checkVisibility() && r.cells[1].querySelector('.show-narrow').textContent === 'admin')(`+created1+`)`)

	// A viewer sees the API's refusal.
	viewer := created.GetSecret()
	run(t, ctx, 10*time.Second, "log out", chromedp.Click(chromedp.CSS(`#logout`)))
	until(t, ctx, 10*time.Second, "the login page", `location.pathname === '/login'`)
	f.login(ctx, viewer, "auditee")
	run(t, ctx, 20*time.Second, "open the audit page as a viewer",
		chromedp.Navigate(f.base+"/audit"),
		chromedp.WaitVisible(chromedp.CSS(`#audit-since`)))
	until(t, ctx, 10*time.Second, "the API's refusal", `document.querySelector('#audit .error-note')?.textContent.includes('ListAudit needs role admin')`)
	until(t, ctx, time.Second, "no events shown", `document.querySelector('#audit tbody') === null`)
}
