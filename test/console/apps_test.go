package console

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestConsoleApps checks the Applications pages against a real coordinator:
// an application created through the API appears on the open list without
// a reload, and its page shows its source, policy, drift and history. The
// repository does not exist and no cluster is watched, so the application
// stays unknown or out of sync, and a sync fails with a readable message.
func TestConsoleApps(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := browser(t, 1280, 900)
	f := newFixture(t, nil)
	f.login(ctx, testcluster.AdminToken(), "bootstrap")

	run(t, ctx, 20*time.Second, "open the apps page",
		chromedp.Navigate(f.base+"/apps"),
		chromedp.WaitVisible(chromedp.CSS(`h1`)),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`window.noReload = true`))
			return err
		}))
	until(t, ctx, 10*time.Second, "the nav link marks the section", `document.querySelector('nav a[data-section="apps"]').getAttribute('aria-current') === 'page'`)
	until(t, ctx, 10*time.Second, "the empty state tells how to create one", `document.querySelector('.empty')?.textContent.includes('gantry app create NAME --repo URL')`)

	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client.CreateApp(cctx, &gv1.CreateAppRequest{Spec: &gv1.AppSpec{
		Name: "shop-web", Repo: "file:///nonexistent", Path: "deploy", Cluster: "local", Namespace: "shop", AutoSync: true, SelfHeal: true,
	}}); err != nil {
		t.Fatalf("create app: %v", err)
	}
	row := `document.querySelector('tr[data-app="shop-web"]')`
	until(t, ctx, 10*time.Second, "the application on the list", row+` !== null`)
	until(t, ctx, 5*time.Second, "its name, cluster and namespace", `(r => r.textContent.includes('shop-web') && r.textContent.includes('local/shop'))(`+row+`)`)
	until(t, ctx, 5*time.Second, "an unknown or out-of-sync badge", `['unknown', 'out-of-sync'].includes(`+row+`.dataset.sync) && `+row+`.querySelector('.badge') !== null`)
	until(t, ctx, time.Second, "no reload", `window.noReload === true`)

	run(t, ctx, 20*time.Second, "open the application",
		chromedp.Click(chromedp.CSS(`tr[data-app="shop-web"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#sync-app`)))
	until(t, ctx, 5*time.Second, "the heading, focused", `document.activeElement === document.querySelector('h1') && document.querySelector('h1').textContent === 'shop-web'`)
	until(t, ctx, 5*time.Second, "the title", `document.title.startsWith('shop-web')`)
	until(t, ctx, 5*time.Second, "source and policy",
		`(t => t.includes('file:///nonexistent') && t.includes('deploy') && /Auto-sync\s*on/.test(t) && /Prune\s*off/.test(t))(document.querySelector('dl[aria-label="Source"]').parentElement.innerText)`)
	until(t, ctx, 5*time.Second, "the destination", `document.querySelector('.meta').textContent.includes('local/shop')`)
	until(t, ctx, 5*time.Second, "a sync badge", `['unknown', 'out-of-sync'].includes(document.querySelector('.head-badges [data-sync]').dataset.sync)`)
	until(t, ctx, 5*time.Second, "the drift panel", `document.querySelector('#drift h2').textContent.startsWith('Drift') && !document.querySelector('#drift').hidden`)
	until(t, ctx, 5*time.Second, "an empty history", `document.querySelector('#history').textContent.includes('No deploys yet')`)
	until(t, ctx, time.Second, "not pinned", `document.querySelector('#unpin-app') === null`)

	// The repository cannot be read: sync answers with the API's message.
	run(t, ctx, 10*time.Second, "click sync", chromedp.Click(chromedp.CSS(`#sync-app`)))
	until(t, ctx, 15*time.Second, "the sync error", `(t => !t.hidden && t.textContent.includes('nonexistent'))(document.querySelector('#toast'))`)

	run(t, ctx, 10*time.Second, "back to the list", chromedp.Click(chromedp.CSS(`.crumbs a`)))
	until(t, ctx, 10*time.Second, "the list again", row+` !== null && document.querySelector('h1').textContent === 'Applications'`)
	until(t, ctx, time.Second, "still no reload", `window.noReload === true`)

	run(t, ctx, 20*time.Second, "open an application that does not exist",
		chromedp.Navigate(f.base+"/apps/nope"),
		chromedp.WaitVisible(chromedp.CSS(`h1`)))
	until(t, ctx, 10*time.Second, "not found", `document.querySelector('.error-note')?.textContent.includes('No application named nope')`)
}
