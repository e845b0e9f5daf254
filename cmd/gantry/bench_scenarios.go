package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent/sim"
	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
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

// benchLatency submits single-task jobs at a fixed rate and measures
// submit → agent start and submit → result committed.
func benchLatency(ctx context.Context, t *benchTarget, p *latencyProbe, rate int, d time.Duration, res *benchResult) {
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

// benchLostAgent gives tasks to one agent, makes it vanish, and measures
// until every task has started on another agent.
func benchLostAgent(ctx context.Context, t *benchTarget) (time.Duration, error) {
	const tasks = 5
	labels := map[string]string{"bench": "lost"}
	doomed, err := sim.Start(sim.Config{Cluster: t.cluster, NATS: t.nats, Prefix: "doomed", Count: 1, Slots: tasks,
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
	rescuer, err := sim.Start(sim.Config{Cluster: t.cluster, NATS: t.nats, Prefix: "rescuer", Count: 1, Slots: tasks,
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

// benchFailover kills the leader process and measures until a submit
// through a survivor succeeds again.
func benchFailover(ctx context.Context, t *benchTarget) (time.Duration, error) {
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

// benchFloor measures what no design can beat on this machine: a commit of
// a bare 3-node Raft cluster (same log store, fsync on) and a NATS
// request/reply through an embedded server.
func benchFloor(res *benchResult) error {
	dir, err := os.MkdirTemp("", "gantry-floor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var peers []consensus.Peer
	cfgs := make([]consensus.Config, 3)
	for i := range cfgs {
		c := consensus.DefaultConfig()
		c.ID = fmt.Sprintf("f%d", i)
		c.Dir = filepath.Join(dir, c.ID)
		c.BindAddr = freeLoopbackAddr()
		c.Bootstrap = true
		cfgs[i] = c
		peers = append(peers, consensus.Peer{ID: c.ID, Addr: c.BindAddr})
	}
	nodes := make([]*consensus.Node, len(cfgs))
	for i := range cfgs {
		cfgs[i].Peers = peers
		n, err := consensus.Open(cfgs[i], fsm.New(), zap.NewNop())
		if err != nil {
			return err
		}
		defer n.Close()
		nodes[i] = n
	}
	var leader *consensus.Node
	deadline := time.Now().Add(15 * time.Second)
	for leader == nil {
		for _, n := range nodes {
			if n.Raft.State() == raft.Leader {
				leader = n
			}
		}
		if time.Now().After(deadline) {
			return errors.New("raw raft cluster elected no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var lat []time.Duration
	for i := 0; i < 500; i++ {
		start := time.Now()
		// An empty entry decodes as an empty batch: a commit that applies nothing.
		if err := leader.Raft.Apply(nil, 5*time.Second).Error(); err != nil {
			return fmt.Errorf("raw raft commit: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	res.FloorRaftCommitP50Ms = ms(quantile(lat, 0.5))
	res.FloorRaftCommitP99Ms = ms(quantile(lat, 0.99))

	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.Subscribe("floor", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return err
	}
	lat = lat[:0]
	payload := make([]byte, 64)
	for i := 0; i < 2000; i++ {
		start := time.Now()
		if _, err := nc.Request("floor", payload, 5*time.Second); err != nil {
			return fmt.Errorf("nats request: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	res.FloorNATSRTTP50Ms = ms(quantile(lat, 0.5))
	return nil
}

func fmtMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + " ms"
}

func printBench(w io.Writer, r *benchResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "figure\tvalue\n")
	if r.ThroughputTasksPerS != nil {
		fmt.Fprintf(tw, "throughput (no-op tasks, %d coordinators)\t%.0f tasks/s\n", r.Nodes, *r.ThroughputTasksPerS)
	}
	fmt.Fprintf(tw, "dispatch submit→start p50 / p99 / max at %d/s\t%s / %s / %s\n", r.LatencyRatePerS, fmtMs(r.DispatchP50Ms), fmtMs(r.DispatchP99Ms), fmtMs(r.DispatchMaxMs))
	fmt.Fprintf(tw, "submit→finished p50 / p99\t%s / %s\n", fmtMs(r.FinishP50Ms), fmtMs(r.FinishP99Ms))
	fmt.Fprintf(tw, "leader failover (kill -9 → next write ok)\t%s\n", fmtMs(r.FailoverMs))
	fmt.Fprintf(tw, "lost agent (kill → all tasks started elsewhere)\t%s\n", fmtMs(r.LostAgentRedispatchMs))
	fmt.Fprintf(tw, "simulated agents held\t%d\n", r.SimAgents)
	fmt.Fprintf(tw, "floor: raw 3-node Raft commit p50 / p99\t%s / %s\n", fmtMs(r.FloorRaftCommitP50Ms), fmtMs(r.FloorRaftCommitP99Ms))
	fmt.Fprintf(tw, "floor: NATS request/reply p50\t%s\n", fmtMs(r.FloorNATSRTTP50Ms))
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}
