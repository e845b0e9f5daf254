package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
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
			_, _ = t.client(i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
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

// failovers kills the leader with SIGKILL kills times while four clients
// submit one-task jobs to the live coordinators, restarting each killed
// node (and waiting until it is ready) before the next kill. Per kill it
// returns the time from the kill to the next acknowledged submit, and the
// longest gap between two acknowledged submits around the kill: what a
// client of the cluster sees.
func failovers(ctx context.Context, t *target, kills int, progress io.Writer) (recovered, gaps []time.Duration, err error) {
	var (
		mu   sync.Mutex
		acks []time.Time
		dead = make([]atomic.Bool, len(t.clients))
	)
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	spec := &gv1.JobSpec{Name: "failover", Tasks: []*gv1.TaskSpec{noopTask("t", map[string]string{"bench": "fleet"})}}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := w; lctx.Err() == nil; n++ {
				i := n % len(t.clients)
				if dead[i].Load() {
					continue
				}
				cctx, cancel := context.WithTimeout(lctx, time.Second)
				_, err := t.clients[i].SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
				cancel()
				if err == nil {
					mu.Lock()
					acks = append(acks, time.Now())
					mu.Unlock()
					// About 100 submits/s per client: load, not a flood.
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	lastAck := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		if len(acks) == 0 {
			return time.Time{}
		}
		return acks[len(acks)-1]
	}
	type kill struct{ at, back time.Time }
	var done []kill
	// Load first: the first kill must interrupt a steady stream.
	for deadline := time.Now().Add(30 * time.Second); ; {
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		if n >= 100 {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("only %d submits acknowledged in 30s before the first kill", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for k := range kills {
		// The leader is the node that says it leads (a node just
		// restarted may still name an old leader).
		leader := -1
		for deadline := time.Now().Add(30 * time.Second); leader < 0; {
			for i, c := range t.clients {
				if dead[i].Load() {
					continue
				}
				st, err := c.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
				if err == nil && st.LeaderId == t.local.nodes[i].id {
					leader = i
				}
			}
			if leader < 0 {
				if time.Now().After(deadline) {
					return nil, nil, fmt.Errorf("kill %d: no node says it leads", k+1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		dead[leader].Store(true)
		at := time.Now()
		t.local.kill(leader)
		// Recovered: another node leads, and a submit was acknowledged
		// after it said so (acks just after the kill may answer writes
		// committed before it).
		var elected time.Time
		for elected.IsZero() || !lastAck().After(elected) {
			if time.Since(at) > 60*time.Second {
				return nil, nil, fmt.Errorf("kill %d: no new leader with an acknowledged submit 60s after killing %s", k+1, t.local.nodes[leader].id)
			}
			if elected.IsZero() {
				for i, c := range t.clients {
					if i == leader {
						continue
					}
					cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					st, err := c.ClusterStatus(cctx, &gv1.ClusterStatusRequest{})
					cancel()
					if err == nil && st.LeaderId == t.local.nodes[i].id {
						elected = time.Now()
					}
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		back := lastAck()
		done = append(done, kill{at, back})
		fmt.Fprintf(progress, "bench: kill %d of %d: %s, next write after %s\n", k+1, kills, t.local.nodes[leader].id, back.Sub(at).Round(time.Millisecond))
		if err := t.local.restart(ctx, leader, t.local.binary); err != nil {
			return nil, nil, fmt.Errorf("kill %d: restart %s: %w", k+1, t.local.nodes[leader].id, err)
		}
		dead[leader].Store(false)
		// Steady load before the next kill: the restarted node catches
		// up, and the next gap starts from a cluster at rest.
		time.Sleep(2 * time.Second)
	}
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	for _, k := range done {
		// The longest pause around the kill, and when it ended: acks
		// just after the kill may answer writes committed before it.
		var gap time.Duration
		end := k.back
		for i := 1; i < len(acks); i++ {
			if acks[i].Before(k.at.Add(-time.Second)) || acks[i-1].After(k.back.Add(2*time.Second)) {
				continue
			}
			if d := acks[i].Sub(acks[i-1]); d > gap {
				gap, end = d, acks[i]
			}
		}
		recovered = append(recovered, max(end.Sub(k.at), 0))
		gaps = append(gaps, gap)
	}
	return recovered, gaps, nil
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
				_, err := c.SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
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
	// The open jobs, counted by the coordinator (listing one).
	open := func() (int, error) {
		resp, err := c.ListJobs(ctx, &gv1.ListJobsRequest{Limit: 1, States: []gv1.JobState{gv1.JobState_JOB_STATE_PENDING, gv1.JobState_JOB_STATE_RUNNING}})
		if err != nil {
			return 0, err
		}
		return int(resp.GetTotal()), nil
	}
	backlog, err := open()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		left, err := open()
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jobs still open after 10 minutes (%d acknowledged)", n)
		}
		// Counting scans every job on the coordinator: rarely while
		// many are left, so the count does not load what it measures.
		if left > 1000 {
			time.Sleep(time.Second)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	finished := time.Since(began)
	rate, acc := float64(n)/finished.Seconds(), float64(n)/accepted.Seconds()
	res.ExecTasksPerS, res.ExecAcceptedPerS, res.ExecBacklog = &rate, &acc, &backlog
	return nil
}

// execStarts submits n one-task jobs one after another, each once the
// previous one ended, whose process prints its own start time (`date
// +%s%N`, on this machine's clock), and measures submit -> that time from
// the task's log: what a user waits before a step runs on an idle agent.
func execStarts(ctx context.Context, c gv1.GantryServiceClient, n int, res *Result) error {
	spec := &gv1.JobSpec{Name: "bench-exec-start", Tasks: []*gv1.TaskSpec{{
		Name: "t", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"date", "+%s%N"}}},
	}}}
	var lat []time.Duration
	for range n {
		began := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
		cancel()
		if err != nil {
			return err
		}
		id := resp.GetJob().GetId()
		for deadline := time.Now().Add(30 * time.Second); ; {
			j, err := c.GetJob(ctx, &gv1.GetJobRequest{JobId: id})
			if err != nil {
				return err
			}
			if st := j.GetJob().GetState(); st == gv1.JobState_JOB_STATE_SUCCEEDED {
				break
			} else if st == gv1.JobState_JOB_STATE_FAILED || st == gv1.JobState_JOB_STATE_CANCELED {
				return fmt.Errorf("job %s ended %s", id, st)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("job %s not done after 30s", id)
			}
			time.Sleep(2 * time.Millisecond)
		}
		logs, err := c.TaskLogs(ctx, &gv1.TaskLogsRequest{JobId: id, Task: "t"})
		if err != nil {
			return err
		}
		var out []byte
		for {
			m, err := logs.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			out = append(out, m.GetChunk().GetData()...)
		}
		first, _, _ := strings.Cut(string(out), "\n") // the agent adds an exit line
		ns, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
		if err != nil {
			return fmt.Errorf("job %s log %q: not a time", id, out)
		}
		lat = append(lat, time.Unix(0, ns).Sub(began))
	}
	res.ExecStartP50Ms = ms(quantile(lat, 0.5))
	res.ExecStartP99Ms = ms(quantile(lat, 0.99))
	return nil
}
