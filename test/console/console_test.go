package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestConsole drives the console as an operator would: jobs appear and
// finish live, the job page shows the task graph and the logs, cancel and
// drain work from their buttons.
func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := browser(t, 1280, 900)
	f := newFixture(t, map[string]map[string]string{
		"builder-1": {"pool": "general"},
		"deployer":  {"pool": "deploy"},
	})
	f.login(ctx, testcluster.AdminToken(), "bootstrap")

	// The jobs page is open before the job exists; it must appear and
	// finish without a reload (the marker survives only without one).
	run(t, ctx, 20*time.Second, "open the jobs page",
		chromedp.Navigate(f.base+"/jobs"),
		chromedp.WaitVisible(chromedp.CSS(`#job-search`)),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`window.noReload = true`))
			return err
		}))
	until(t, ctx, 10*time.Second, "live stream connected", `document.querySelector('#live.on') !== null`)
	id := f.submit(&gv1.JobSpec{Name: "console-pipeline", Tasks: []*gv1.TaskSpec{
		shellTask("checkout", "echo checkout-line-1; sleep 0.3; echo checkout-line-2"),
		shellTask("build", "echo build-out-1; sleep 0.3; echo build-out-2; echo build-err >&2", "checkout"),
		shellTask("lint", "echo lint-ok", "checkout"),
		shellTask("unit-tests", "for i in 1 2 3; do echo test_$i PASS; done", "build"),
		shellTask("integration", "echo integration-ok", "build"),
		shellTask("package", "echo package-ok", "unit-tests", "integration", "lint"),
	}})
	row := fmt.Sprintf(`document.querySelector('tr[data-job-id=%q]')`, id)
	until(t, ctx, 30*time.Second, "the submitted job on the jobs page", row+` !== null`)
	until(t, ctx, 60*time.Second, "the job succeeded on the jobs page", row+`?.dataset.state === 'succeeded'`)
	until(t, ctx, time.Second, "no reload", `window.noReload === true`)

	// The job page: the task graph, each task's state, and the logs.
	run(t, ctx, 20*time.Second, "open the job page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-job-id=%q] a`, id))),
		chromedp.WaitVisible(chromedp.CSS(`svg.dag`)))
	until(t, ctx, 10*time.Second, "six succeeded nodes in the task graph",
		`[...document.querySelectorAll('svg.dag g.node')].filter(n => n.dataset.state === 'succeeded').length === 6`)
	until(t, ctx, 5*time.Second, "an edge per need", `document.querySelectorAll('svg.dag path.edge').length === 7`)
	until(t, ctx, 5*time.Second, "columns by depth",
		`(x => x('checkout') < x('build') && x('build') === x('lint') && x('build') < x('unit-tests') && x('unit-tests') < x('package'))`+
			`(n => document.querySelector('svg.dag g.node[data-task="' + n + '"]').getBoundingClientRect().x)`)
	run(t, ctx, 10*time.Second, "choose build in the graph", chromedp.Click(chromedp.CSS(`svg.dag g.node[data-task="build"]`)))
	until(t, ctx, 15*time.Second, "build's log", `(t => t.includes('build-out-1') && t.includes('build-out-2') && t.includes('build-err'))(document.querySelector('#log').textContent)`)
	until(t, ctx, time.Second, "the log shows only build", `!document.querySelector('#log').textContent.includes('checkout-line-1')`)
	if os.Getenv("GANTRY_SCREENSHOT") == "1" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		out := filepath.Join("..", "..", "docs", "console.png")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", out)
	}
	// Graph nodes work from the keyboard too.
	run(t, ctx, 10*time.Second, "choose lint with the keyboard",
		chromedp.Focus(chromedp.CSS(`svg.dag g.node[data-task="lint"]`)),
		chromedp.KeyEvent(kb.Enter))
	until(t, ctx, 15*time.Second, "lint's log", `document.querySelector('#log').textContent.includes('lint-ok')`)
	run(t, ctx, 10*time.Second, "back to build", chromedp.Click(chromedp.CSS(`tr[data-task="build"] button`)))
	until(t, ctx, 15*time.Second, "build's log again", `document.querySelector('#log').textContent.includes('build-out-2')`)

	// A long task: its log streams live, and the cancel button stops it.
	long := f.submit(&gv1.JobSpec{Name: "console-long", Tasks: []*gv1.TaskSpec{
		shellTask("sleeper", "echo sleeping-now; sleep 120"),
		shellTask("after", "echo never", "sleeper"),
	}})
	run(t, ctx, 20*time.Second, "open the long job",
		chromedp.Navigate(f.base+"/jobs/"+long),
		chromedp.WaitVisible(chromedp.CSS(`svg.dag`)))
	until(t, ctx, 30*time.Second, "the running task's live log", `document.querySelector('#log').textContent.includes('sleeping-now')`)
	until(t, ctx, 5*time.Second, "the task running in the graph", `document.querySelector('svg.dag g.node[data-task="sleeper"]').dataset.state === 'running'`)
	run(t, ctx, 10*time.Second, "click cancel and confirm",
		chromedp.Click(chromedp.CSS(`#cancel-job`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	until(t, ctx, 15*time.Second, "the job canceled on the page",
		`document.querySelector('.page-head .badge')?.textContent === 'canceled' && document.querySelector('svg.dag g.node[data-task="sleeper"]').dataset.state === 'canceled'`)
	if st := f.job(long).State; st != gv1.JobState_JOB_STATE_CANCELED {
		t.Fatalf("job %s after cancel from the console: state %s, want canceled", long, st)
	}
	until(t, ctx, 5*time.Second, "cancel disabled on a final job", `document.querySelector('#cancel-job').disabled`)

	// Drain an agent that runs a task: it stays draining until the task ends.
	pinned := f.submit(&gv1.JobSpec{Name: "console-pinned", Tasks: []*gv1.TaskSpec{
		{Name: "hold", Labels: map[string]string{"pool": "deploy"}, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "sleep 120"}}},
	}})
	t.Cleanup(func() { f.cancel(pinned) })
	f.waitTask(pinned, "hold", gv1.TaskState_TASK_STATE_RUNNING)
	run(t, ctx, 20*time.Second, "open the agents page",
		chromedp.Click(chromedp.CSS(`nav a[data-section="agents"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-agent="deployer"]`)))
	until(t, ctx, 10*time.Second, "deployer active with its task",
		`(r => r.dataset.state === 'active' && r.textContent.includes('hold'))(document.querySelector('tr[data-agent="deployer"]'))`)
	run(t, ctx, 10*time.Second, "click drain and confirm",
		chromedp.Click(chromedp.CSS(`button[data-drain="deployer"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	until(t, ctx, 15*time.Second, "deployer draining on the page", `document.querySelector('tr[data-agent="deployer"]').dataset.state === 'draining'`)
	until(t, ctx, time.Second, "builder-1 still active", `document.querySelector('tr[data-agent="builder-1"]').dataset.state === 'active'`)

	// The queue explains why a task waits, and the cluster page its leader.
	mac := f.submit(&gv1.JobSpec{Name: "console-mac", Tasks: []*gv1.TaskSpec{
		{Name: "xcode", Labels: map[string]string{"os": "macos"}, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}},
		shellTask("upload", "true", "xcode"),
	}})
	t.Cleanup(func() { f.cancel(mac) })
	run(t, ctx, 20*time.Second, "open the queue page",
		chromedp.Click(chromedp.CSS(`nav a[data-section="queue"]`)),
		chromedp.WaitVisible(chromedp.CSS(`h1`)))
	until(t, ctx, 10*time.Second, "the reason xcode waits",
		fmt.Sprintf(`document.querySelector('tr[data-task=%q]')?.textContent.includes('no agent with labels os=macos')`, mac+"/xcode"))
	until(t, ctx, 5*time.Second, "the reason upload waits",
		fmt.Sprintf(`document.querySelector('tr[data-task=%q]')?.textContent.includes('needs xcode')`, mac+"/upload"))
	until(t, ctx, 5*time.Second, "a start latency for the general queue",
		`[...document.querySelectorAll('tr[data-queue]')].some(r => r.dataset.queue === '' && /\d/.test(r.cells[3].textContent))`)
	run(t, ctx, 20*time.Second, "open the cluster page",
		chromedp.Click(chromedp.CSS(`nav a[data-section="cluster"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-node="dev"]`)))
	until(t, ctx, 5*time.Second, "the leader", `document.querySelector('tr[data-node="dev"]').textContent.includes('leader')`)
	until(t, ctx, 5*time.Second, "the node's version", `document.querySelector('tr[data-node="dev"] td[data-version]')?.dataset.version !== ''`)
}
