// Package console tests the operator console in a real browser: a real
// single-node coordinator with its embedded NATS server, real agents
// running real processes, and headless Chromium driven with chromedp.
package console

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gantryci/gantry/agent"
	"github.com/gantryci/gantry/coordinator"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const chromium = "/usr/bin/chromium"

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *zap.Logger {
	lvl := zap.WarnLevel
	if v := os.Getenv("GANTRY_TEST_LOG"); v != "" {
		_ = lvl.Set(v)
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

// fixture is a single-node Gantry (like gantry dev) with named agents.
type fixture struct {
	t      *testing.T
	srv    *coordinator.Server
	client gv1.GantryServiceClient
	base   string // the console's URL
}

func newFixture(t *testing.T, agents map[string]map[string]string) *fixture {
	t.Helper()
	log := testLogger(t)
	cfg := coordinator.DefaultConfig()
	cfg.NodeID = "dev"
	cfg.Cluster = "console"
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr = freePort(t)
	cfg.HTTPAddr = freePort(t)
	cfg.NATS.Listen = freePort(t)
	cfg.Raft.BindAddr = freePort(t)
	cfg.Raft.Bootstrap = true
	cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
	cfg.Raft.ElectionTimeout = 200 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.Dispatch.LeaseTTL = time.Second
	srv, err := coordinator.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	waitFor(t, 15*time.Second, "leadership", srv.IsLeader)

	for name, labels := range agents {
		acfg := agent.DefaultConfig()
		acfg.Name = name
		acfg.Cluster = cfg.Cluster
		acfg.NATS = srv.NATSURL()
		acfg.Slots = 2
		acfg.Labels = labels
		acfg.WorkDir = filepath.Join(t.TempDir(), name)
		acfg.HeartbeatInterval = 100 * time.Millisecond
		acfg.Grace = time.Second
		acfg.ReportTimeout = time.Second
		a, err := agent.New(acfg, log.With(zap.String("test_agent", name)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		// Registered after the coordinator's cleanup, so it runs before it.
		t.Cleanup(func() {
			a.Kill()
			stop()
			<-done
		})
	}

	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fixture{t: t, srv: srv, client: gv1.NewGantryServiceClient(conn), base: "http://" + srv.HTTPAddr()}
	waitFor(t, 15*time.Second, "agents active", func() bool {
		resp, err := f.client.ListAgents(context.Background(), &gv1.ListAgentsRequest{})
		if err != nil {
			return false
		}
		active := 0
		for _, a := range resp.Agents {
			if a.State == gv1.AgentState_AGENT_STATE_ACTIVE {
				active++
			}
		}
		return active == len(agents)
	})
	return f
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

func shellTask(name, script string, needs ...string) *gv1.TaskSpec {
	return &gv1.TaskSpec{Name: name, Needs: needs, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: script}}}
}

// browser starts headless Chromium; it skips the test when there is none.
func browser(t *testing.T, width, height int) context.Context {
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
func until(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(pctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, text)
	}
}
