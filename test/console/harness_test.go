// Package console tests the operator console in a real browser: a real
// single-node coordinator with its embedded NATS server, real agents
// running real processes (package testcluster starts them), and headless
// Chromium driven with chromedp.
package console

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/dispatch"
	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const chromium = "/usr/bin/chromium"

var (
	waitFor   = testcluster.WaitFor
	shellTask = testcluster.ShellTask
)

// fixture is a single-node Gantry (like gantry dev, with its admin token)
// with named agents.
type fixture struct {
	t      *testing.T
	srv    *coordinator.Server
	api    *client.Client // with the admin token
	client gv1.GantryServiceClient
	base   string // the console's URL
}

func newFixture(t *testing.T, agents map[string]map[string]string) *fixture {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Name: "console", Configure: func(cfg *coordinator.Config) {
		cfg.NodeID = "dev"
		cfg.Dispatch.AssignTimeout = dispatch.DefaultConfig().AssignTimeout
	}})
	var names []string
	for name, labels := range agents {
		c.StartAgent(name, 2, labels)
		names = append(names, name)
	}
	c.WaitAgents(0, names...)
	srv := c.Node(0)
	api := c.API(0)
	return &fixture{t: t, srv: srv, api: api, client: api.Raw(), base: "http://" + srv.HTTPAddr()}
}

// login logs the browser in through the login page, as a user would, and
// waits until the console's header names the token.
func (f *fixture) login(ctx context.Context, token, name string) {
	f.t.Helper()
	run(f.t, ctx, 20*time.Second, "open the login page",
		chromedp.Navigate(f.base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`#login-submit`)))
	until(f.t, ctx, 15*time.Second, "logged in as "+name, fmt.Sprintf(`document.querySelector('#user-name')?.textContent === %q`, name))
}

// token makes an API token with a role; it returns the bearer string.
func (f *fixture) token(name string, role gv1.Role) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.api.CreateToken(ctx, name, role, 0)
	if err != nil {
		f.t.Fatalf("create token %s: %v", name, err)
	}
	return resp.GetSecret()
}

func (f *fixture) submit(spec *gv1.JobSpec) string {
	f.t.Helper()
	resp, err := f.client.SubmitJob(context.Background(), &gv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		f.t.Fatalf("submit %s: %v", spec.Name, err)
	}
	return resp.Job.Id
}

func (f *fixture) job(id string) *gv1.Job {
	f.t.Helper()
	resp, err := f.client.GetJob(context.Background(), &gv1.GetJobRequest{JobId: id})
	if err != nil {
		f.t.Fatalf("get job %s: %v", id, err)
	}
	return resp.Job
}

// cancel cancels a job and waits until no agent runs any of its tasks, so
// that the agents stop quickly afterwards.
func (f *fixture) cancel(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.client.CancelJob(ctx, &gv1.CancelJobRequest{JobId: id}); err != nil {
		f.t.Errorf("cancel job %s: %v", id, err)
		return
	}
	for ctx.Err() == nil {
		resp, err := f.client.ListAgents(ctx, &gv1.ListAgentsRequest{})
		busy := err != nil
		for _, a := range resp.GetAgents() {
			for _, r := range a.Running {
				busy = busy || r.JobId == id
			}
		}
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTask waits until a task of job id is in state st.
func (f *fixture) waitTask(id, task string, st gv1.TaskState) {
	f.t.Helper()
	waitFor(f.t, 30*time.Second, "task "+task+" "+st.String(), func() bool {
		for _, t := range f.job(id).Tasks {
			if t.Name == task {
				return t.State == st
			}
		}
		return false
	})
}

// browser starts headless Chromium, with more options if given; it skips
// the test when there is none.
func browser(t *testing.T, width, height int, more ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (apt-get install chromium)", chromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()),
	)
	opts = append(opts, more...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions, bounded by timeout.
func run(t *testing.T, ctx context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// until waits, in the page, for a JavaScript expression to be true.
// A page that navigates meanwhile (a login, a redirect) is polled again
// in the page it went to.
func until(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Until(deadline)+5*time.Second)
		_, err = chromedp.Run(pctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(50*time.Millisecond)))
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		// The page went away under the poll ("navigated or closed",
		// "cannot find context"): poll the next one, at the same pace.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, text)
	}
}
