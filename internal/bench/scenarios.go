package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryci/gantry/internal/bench/sim"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// latencyProbe matches simulated agents' starts and finishes with the
// submissions of the latency run (jobs named lat-<n>).
type latencyProbe struct {
	mu        sync.Mutex
	submitted map[string]time.Time // job name -> submit time
	jobName   map[string]string    // job id -> job name
	dispatch  []time.Duration
	finish    []time.Duration
}

func newLatencyProbe() *latencyProbe {
	return &latencyProbe{submitted: map[string]time.Time{}, jobName: map[string]string{}}
}

func (p *latencyProbe) submit(name string, at time.Time) {
	p.mu.Lock()
	p.submitted[name] = at
	p.mu.Unlock()
}

func (p *latencyProbe) started(_ string, as *gv1.Assignment, at time.Time) {
	if !strings.HasPrefix(as.GetJobName(), "lat-") {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sub, ok := p.submitted[as.GetJobName()]; ok {
		p.dispatch = append(p.dispatch, at.Sub(sub))
		p.jobName[as.GetRef().GetJobId()] = as.GetJobName()
	}
}

func (p *latencyProbe) finished(_ string, ref *gv1.TaskRef, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name, ok := p.jobName[ref.GetJobId()]; ok {
		p.finish = append(p.finish, at.Sub(p.submitted[name]))
	}
}

// latency submits single-task jobs at a fixed rate and measures
// submit → agent start and submit → result committed.
func latency(ctx context.Context, t *target, p *latencyProbe, rate int, d time.Duration, res *Result) {
	labels := map[string]string{"bench": "fleet"}
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	n := 0
	for time.Now().Before(end) {
		<-tick.C
		name := fmt.Sprintf("lat-%d", n)
		n++
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			spec := &gv1.JobSpec{Name: name, Tasks: []*gv1.TaskSpec{noopTask("t", labels)}}
			p.submit(name, time.Now())
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, _ = t.client(i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec})
		}(n)
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		got := len(p.finish)
		p.mu.Unlock()
		if got >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.dispatch) < n {
		res.Notes = append(res.Notes, fmt.Sprintf("latency: %d of %d submissions started", len(p.dispatch), n))
	}
	res.DispatchP50Ms = ms(quantile(p.dispatch, 0.5))
	res.DispatchP99Ms = ms(quantile(p.dispatch, 0.99))
	res.DispatchMaxMs = ms(quantile(p.dispatch, 1))
	res.FinishP50Ms = ms(quantile(p.finish, 0.5))
	res.FinishP99Ms = ms(quantile(p.finish, 0.99))
}

// lostAgent gives tasks to one agent, makes it vanish, and measures
// until every task has started on another agent.
func lostAgent(ctx context.Context, t *target) (time.Duration, error) {
	const tasks = 5
	labels := map[string]string{"bench": "lost"}
	doomed, err := sim.Start(sim.Config{Cluster: t.cluster, NATS: t.nats, TLS: t.natsTLS, Prefix: "doomed", Count: 1, Slots: tasks,
		Labels: labels, Heartbeat: 200 * time.Millisecond, Hold: true})
	if err != nil {
		return 0, err
	}
	defer doomed.Close()
	if waitAgents(ctx, t.client(0), "doomed-", 1, 30*time.Second) < 1 {
		return 0, errors.New("the doomed agent never became active")
	}
	specs := make([]*gv1.TaskSpec, tasks)
	for i := range specs {
		specs[i] = noopTask(fmt.Sprintf("t%d", i), labels)
	}
	if _, err := t.client(0).SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: &gv1.JobSpec{Name: "lost-agent", Tasks: specs}}); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(doomed.Holding(0)) < tasks {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the doomed agent took %d of %d tasks", len(doomed.Holding(0)), tasks)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var mu sync.Mutex
	var last time.Time
	started := 0
	rescuer, err := sim.Start(sim.Config{Cluster: t.cluster, NATS: t.nats, TLS: t.natsTLS, Prefix: "rescuer", Count: 1, Slots: tasks,
		Labels: labels, Heartbeat: 200 * time.Millisecond,
		OnStart: func(_ string, _ *gv1.Assignment, at time.Time) {
			mu.Lock()
			started++
			last = at
			mu.Unlock()
		}})
	if err != nil {
		return 0, err
	}
	defer rescuer.Close()
	if waitAgents(ctx, t.client(0), "rescuer-", 1, 30*time.Second) < 1 {
		return 0, errors.New("the rescuer never became active")
	}
	killed := time.Now()
	doomed.Kill(0)
	deadline = time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n, at := started, last
		mu.Unlock()
		if n >= tasks {
			return at.Sub(killed), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d tasks re-dispatched after 60s", n, tasks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failover kills the leader process and measures until a submit
// through a survivor succeeds again.
func failover(ctx context.Context, t *target) (time.Duration, error) {
	st, err := t.client(0).ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	if err != nil {
		return 0, err
	}
	leader := -1
	for i, n := range t.local.nodes {
		if n.id == st.LeaderId {
			leader = i
		}
	}
	if leader < 0 {
		return 0, fmt.Errorf("leader %q is not one of the local nodes", st.LeaderId)
	}
	spec := &gv1.JobSpec{Name: "failover", Tasks: []*gv1.TaskSpec{noopTask("t", map[string]string{"bench": "fleet"})}}
	killed := time.Now()
	t.local.kill(leader)
	for i := 0; ; i++ {
		c := t.client(leader + 1 + i%(len(t.clients)-1))
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := c.SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, IdempotencyKey: "failover-probe"})
		cancel()
		if err == nil {
			return time.Since(killed), nil
		}
		if time.Since(killed) > 60*time.Second {
			return 0, fmt.Errorf("no successful write 60s after the kill: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// execRun submits one-task jobs running `true` from 32 submitters for d,
// as fast as the cluster acknowledges them, then waits for the agents to
// finish them all (at most 10 minutes). Only the cluster's real agents may
// be connected: the tasks name no labels.
func execRun(ctx context.Context, c gv1.GantryServiceClient, d time.Duration, res *Result) error {
	spec := &gv1.JobSpec{Name: "bench-exec", Tasks: []*gv1.TaskSpec{noopTask("t", nil)}}
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var submitted atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sctx.Err() == nil {
				cctx, c2 := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec})
				c2()
				if err != nil {
					if sctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				submitted.Add(1)
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(began)
	n := submitted.Load()
	if n == 0 {
		if err, ok := firstErr.Load().(error); ok {
			return err
		}
		return errors.New("no job acknowledged")
	}
	// Counting the open jobs lists them all: once, for the backlog; then
	// only whether one is left, so the measurement does not load the
	// coordinator it measures.
	open := func(limit int64) (int, error) {
		resp, err := c.ListJobs(ctx, &gv1.ListJobsRequest{Limit: int32(min(limit, 1<<30)), States: []gv1.JobState{gv1.JobState_JOB_STATE_PENDING, gv1.JobState_JOB_STATE_RUNNING}})
		if err != nil {
			return 0, err
		}
		return len(resp.GetJobs()), nil
	}
	backlog, err := open(n + 1000)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		left, err := open(1)
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jobs still open after 10 minutes (%d acknowledged)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	finished := time.Since(began)
	rate, acc := float64(n)/finished.Seconds(), float64(n)/accepted.Seconds()
	res.ExecTasksPerS, res.ExecAcceptedPerS, res.ExecBacklog = &rate, &acc, &backlog
	return nil
}
