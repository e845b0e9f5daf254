// Package bench measures a Gantry cluster: throughput, dispatch latency,
// leader failover and lost-agent re-dispatch, next to the physical floor
// of a bare Raft commit and a NATS round trip. It drives a running cluster
// or starts one of coordinator processes, and loads it with simulated
// agents (package sim). gantry bench is its command line.
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/bench/sim"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Scenarios are the scenarios Run knows, in the order it runs them.
var Scenarios = []string{"floor", "fleet", "throughput", "latency", "lost-agent", "failover"}

// OptIn are scenarios run only when named: exec needs the cluster's real
// agents (gantry dev's, say) and runs before the simulated fleet joins;
// backlog queues 100,000 tasks (a minute or two) and runs last.
var OptIn = []string{"exec", "backlog", "retained"}

// Config says what to measure and against which cluster.
type Config struct {
	// Local starts this many coordinators as processes of Binary (the
	// gantry binary); 0 measures the cluster at Addr and NATS.
	Local  int
	Binary string
	// Keep leaves a local cluster's data directory behind.
	Keep bool
	// Insecure runs a local cluster without TLS and without token checks
	// (--insecure), to measure what security costs.
	Insecure bool
	// Client reaches the cluster under test, NATS are its NATS URLs and
	// Cluster its name (without Local).
	Client  *client.Client
	NATS    string
	Cluster string

	Scenarios []string
	// Duration is the length of the throughput and latency runs; Rate the
	// submissions per second of the latency run.
	Duration time.Duration
	Rate     int
	// SimAgents simulated agents of Slots slots each are connected during
	// the run.
	SimAgents int
	Slots     int
	// Kills is how many times the failover scenario kills the leader
	// (default 1).
	Kills int
	// LocalAgents real gantry agent processes of AgentSlots slots join a
	// local cluster (for exec).
	LocalAgents, AgentSlots int
	// CPUProfile, with a local cluster, is where a CPU profile of the
	// leader during the throughput run is written.
	CPUProfile string
	// Retained is how many tasks the retained scenario runs before it
	// measures (default 1,000,000).
	Retained int
	// Progress receives a line as each step starts; nil discards them.
	Progress io.Writer
}

// Result holds the figures; a figure not measured is nil. It is the
// document of gantry bench -o json.
type Result struct {
	Scenarios           []string `json:"scenarios"`
	Nodes               int      `json:"nodes"`
	ThroughputTasksPerS *float64 `json:"throughput_tasks_per_s"`
	DispatchP50Ms       *float64 `json:"dispatch_p50_ms"`
	DispatchP99Ms       *float64 `json:"dispatch_p99_ms"`
	DispatchMaxMs       *float64 `json:"dispatch_max_ms"`
	FinishP50Ms         *float64 `json:"finish_p50_ms"`
	FinishP99Ms         *float64 `json:"finish_p99_ms"`
	LatencyRatePerS     int      `json:"latency_rate_per_s"`
	FailoverMs          *float64 `json:"failover_ms"`
	// FailoverKills leader kills were made; the gaps are the longest
	// pause between two acknowledged submits around each kill.
	FailoverKills         int       `json:"failover_kills,omitempty"`
	FailoverGapP50Ms      *float64  `json:"failover_gap_p50_ms"`
	FailoverGapP99Ms      *float64  `json:"failover_gap_p99_ms"`
	FailoverGapsMs        []float64 `json:"failover_gaps_ms,omitempty"`
	LostAgentRedispatchMs *float64  `json:"lost_agent_redispatch_ms"`
	SimAgents             int       `json:"sim_agents"`
	FloorRaftCommitP50Ms  *float64  `json:"floor_raft_commit_p50_ms"`
	FloorRaftCommitP99Ms  *float64  `json:"floor_raft_commit_p99_ms"`
	FloorNATSRTTP50Ms     *float64  `json:"floor_nats_rtt_p50_ms"`
	// With exec: `true` started and reaped by 32 starters with nothing
	// else running (per second), and the CPU of one start, the starter's
	// and the process's (microseconds).
	FloorProcStartsPerS *float64 `json:"floor_proc_starts_per_s"`
	FloorProcStartCPUUs *float64 `json:"floor_proc_start_cpu_us"`
	// With throughput: the no-op task's NATS messages alone, as many
	// agents over three routed TLS servers (tasks per second), and the CPU
	// of one task's messages (microseconds); see msgFloor.
	FloorMsgTasksPerS *float64 `json:"floor_msg_tasks_per_s"`
	FloorMsgCPUUs     *float64 `json:"floor_msg_cpu_us"`
	// ExecTasksPerS is how many one-task `true` jobs real agents finished
	// per second, from the first submit to the last finish; ExecAccepted
	// how many the cluster acknowledged per second, and ExecBacklog how
	// many were acknowledged but not finished when submitting stopped.
	ExecTasksPerS    *float64 `json:"exec_tasks_per_s"`
	ExecAcceptedPerS *float64 `json:"exec_accepted_per_s"`
	ExecBacklog      *int     `json:"exec_backlog"`
	// ExecStart: submit -> the task's process started (its own clock
	// reading), p50 and p99 of jobs submitted one at a time to an idle
	// agent.
	ExecStartP50Ms *float64 `json:"exec_start_p50_ms"`
	ExecStartP99Ms *float64 `json:"exec_start_p99_ms"`
	// Backlog: with 100 and with 100,000 tasks pending, the mean
	// scheduling pass on the leader, and the p50 of a submit call, of
	// submit → start and of submit → finished for other tasks.
	BacklogPassMs100    *float64 `json:"backlog_pass_ms_100"`
	BacklogPassMs100k   *float64 `json:"backlog_pass_ms_100k"`
	BacklogSubmitMs100  *float64 `json:"backlog_submit_ms_100"`
	BacklogSubmitMs100k *float64 `json:"backlog_submit_ms_100k"`
	BacklogStartMs100   *float64 `json:"backlog_start_ms_100"`
	BacklogStartMs100k  *float64 `json:"backlog_start_ms_100k"`
	BacklogFinishMs100  *float64 `json:"backlog_finish_ms_100"`
	BacklogFinishMs100k *float64 `json:"backlog_finish_ms_100k"`
	// The leader's resident memory with the simulated agents connected,
	// after the throughput run, and its CPU use during that run (100 =
	// one core). Local clusters only.
	SimAgentsRSSMB  *float64 `json:"sim_agents_rss_mb"`
	SimAgentsCPUPct *float64 `json:"sim_agents_cpu_pct"`
	// Retained: with RetainedTasks ended tasks in the state (20-task
	// jobs), the leader's resident memory, a snapshot of the whole state
	// saved over the API (seconds, MiB) and a restart of the leader to
	// serving (seconds). Local clusters only.
	RetainedTasks      int      `json:"retained_tasks,omitempty"`
	RetainedRSSMB      *float64 `json:"retained_1m_rss_mb"`
	RetainedSnapshotS  *float64 `json:"snapshot_1m_s"`
	RetainedSnapshotMB *float64 `json:"snapshot_1m_mb"`
	RetainedRestartS   *float64 `json:"restart_1m_s"`
	RetainedMaxGapMs   *float64 `json:"retained_max_gap_ms"`
	Notes              []string `json:"notes,omitempty"`
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

// nearestRank is the q quantile by the nearest-rank method: of 20
// samples, p99 is the largest.
func nearestRank(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// target is the cluster under test.
type target struct {
	// clients talk to one node each (scenarios that choose the node);
	// users to every node, see client.
	clients []gv1.GantryServiceClient
	users   []gv1.GantryServiceClient
	nats    string
	natsTLS *tls.Config // of a local cluster with TLS
	cluster string
	local   *localCluster
}

// client returns the i-th client that submits load: with --local, a client
// of every node that starts at node i%n and sends writes to the leader
// (clusterClient); else the one client of the cluster.
func (t *target) client(i int) gv1.GantryServiceClient {
	if len(t.users) > 0 {
		return t.users[i%len(t.users)]
	}
	return t.clients[i%len(t.clients)]
}

// Run runs the scenarios of cfg.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	for _, s := range cfg.Scenarios {
		if !slices.Contains(Scenarios, s) && !slices.Contains(OptIn, s) {
			return nil, fmt.Errorf("scenario %q is not one of %s", s, strings.Join(append(slices.Clone(Scenarios), OptIn...), ", "))
		}
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	res := &Result{Scenarios: cfg.Scenarios, LatencyRatePerS: cfg.Rate}
	want := func(s string) bool { return slices.Contains(cfg.Scenarios, s) }
	if want("floor") {
		fmt.Fprintln(progress, "bench: floor (raw 3-node Raft commit, raw NATS request/reply)")
		if err := floor(res); err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		if want("exec") {
			fmt.Fprintln(progress, "bench: floor of exec (`true` started and reaped by 32 starters for 2s)")
			if err := procFloor(ctx, 2*time.Second, res); err != nil {
				return nil, fmt.Errorf("floor: processes: %w", err)
			}
		}
		if want("throughput") {
			fmt.Fprintf(progress, "bench: floor of throughput (a no-op task's messages alone, %d agents, 3 routed TLS servers, for 3s)\n", max(cfg.SimAgents, 1))
			if err := msgFloor(ctx, max(cfg.SimAgents, 1), 3*time.Second, res); err != nil {
				return nil, fmt.Errorf("floor: messages: %w", err)
			}
		}
	}
	rest := slices.DeleteFunc(slices.Clone(cfg.Scenarios), func(s string) bool { return s == "floor" })
	if len(rest) == 0 {
		return res, nil
	}
	t := &target{nats: cfg.NATS, cluster: cfg.Cluster}
	if cfg.Local > 0 {
		fmt.Fprintf(progress, "bench: starting %d coordinators\n", cfg.Local)
		lc, err := startLocalCluster(ctx, cfg.Binary, cfg.Local, cfg.Keep, cfg.Insecure)
		if err != nil {
			return nil, err
		}
		defer lc.stop()
		t.local, t.nats, t.natsTLS, t.cluster = lc, lc.natsURLs(), lc.natsTLS, localClusterName
		for _, n := range lc.nodes {
			// One client per node, without retries: the scenarios choose
			// the node and time each call.
			c, err := lc.client(n)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			t.clients = append(t.clients, c.Raw())
		}
		for i := range lc.nodes {
			c, err := lc.clusterClient(i)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			t.users = append(t.users, c.Raw())
		}
	} else {
		if cfg.Client == nil {
			return nil, errors.New("no cluster to measure: want Local or Client")
		}
		t.clients = []gv1.GantryServiceClient{cfg.Client.Raw()}
	}
	st, err := t.client(0).ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("cluster status: %w", err)
	}
	res.Nodes = len(st.Nodes)
	if want("exec") && t.local != nil && cfg.LocalAgents > 0 {
		fmt.Fprintf(progress, "bench: starting %d agents\n", cfg.LocalAgents)
		if err := t.local.startAgents(cfg.LocalAgents, max(cfg.AgentSlots, 1)); err != nil {
			return nil, err
		}
		if n := waitAgents(ctx, t.client(0), "bench-agent-", cfg.LocalAgents, 60*time.Second); n < cfg.LocalAgents {
			return nil, fmt.Errorf("only %d of %d agents joined", n, cfg.LocalAgents)
		}
	}
	if want("exec") {
		if t.local != nil && cfg.LocalAgents == 0 {
			res.Notes = append(res.Notes, "exec: needs a cluster with real agents (--addr of gantry dev, say, or --local with --local-agents)")
		} else {
			fmt.Fprintf(progress, "bench: exec, 200 jobs one at a time: submit -> process started\n")
			if err := execStarts(ctx, t.client(0), 200, res); err != nil {
				res.Notes = append(res.Notes, "exec starts: "+err.Error())
			}
			fmt.Fprintf(progress, "bench: exec, one-task `true` jobs on the cluster's real agents for %s\n", cfg.Duration)
			var prof sync.WaitGroup
			if cfg.CPUProfile != "" && t.local != nil && cfg.Duration >= 2*time.Second {
				prof.Add(1)
				go func() {
					defer prof.Done()
					if err := t.leaderProfile(ctx, cfg.Duration-time.Second, cfg.CPUProfile+".exec"); err != nil {
						res.Notes = append(res.Notes, "cpu profile: "+err.Error())
					}
				}()
			}
			err := execRun(ctx, t.client(0), cfg.Duration, res)
			prof.Wait()
			if err != nil {
				res.Notes = append(res.Notes, "exec: "+err.Error())
			}
		}
		rest = slices.DeleteFunc(rest, func(s string) bool { return s == "exec" })
		if len(rest) == 0 {
			return res, nil
		}
	}

	lat := newLatencyProbe()
	fleet, err := sim.Start(sim.Config{
		Cluster: t.cluster, NATS: t.nats, TLS: t.natsTLS, Prefix: "bench", Count: max(cfg.SimAgents, 1), Slots: cfg.Slots,
		Labels: map[string]string{"bench": "fleet"}, Heartbeat: time.Second,
		OnStart: lat.started, OnFinish: lat.finished,
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	fmt.Fprintf(progress, "bench: fleet of %d simulated agents connecting\n", cfg.SimAgents)
	res.SimAgents = waitAgents(ctx, t.client(0), "bench-", cfg.SimAgents, 60*time.Second)
	if res.SimAgents < cfg.SimAgents {
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d simulated agents were seen active", res.SimAgents, cfg.SimAgents))
	}
	if want("throughput") {
		fmt.Fprintf(progress, "bench: throughput for %s\n", cfg.Duration)
		m0, _ := t.leaderMetrics(ctx)
		began := time.Now()
		var prof sync.WaitGroup
		if cfg.CPUProfile != "" && t.local != nil && cfg.Duration >= 2*time.Second {
			prof.Add(1)
			go func() {
				defer prof.Done()
				if err := t.leaderProfile(ctx, cfg.Duration-time.Second, cfg.CPUProfile); err != nil {
					res.Notes = append(res.Notes, "cpu profile: "+err.Error())
				}
			}()
		}
		v := throughput(ctx, t, fleet, cfg.Duration)
		prof.Wait()
		res.ThroughputTasksPerS = &v
		if m1, err := t.leaderMetrics(ctx); err == nil && m0 != nil {
			rss := m1["process_resident_memory_bytes"] / (1 << 20)
			cpu := (m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]) / time.Since(began).Seconds() * 100
			res.SimAgentsRSSMB, res.SimAgentsCPUPct = &rss, &cpu
		}
	}
	if want("latency") {
		fmt.Fprintf(progress, "bench: latency at %d/s for %s\n", cfg.Rate, cfg.Duration)
		latency(ctx, t, lat, cfg.Rate, cfg.Duration, res)
	}
	if want("lost-agent") {
		fmt.Fprintln(progress, "bench: lost agent")
		d, err := lostAgent(ctx, t)
		if err != nil {
			res.Notes = append(res.Notes, "lost-agent: "+err.Error())
		} else {
			res.LostAgentRedispatchMs = ms(d)
		}
	}
	if want("failover") {
		if t.local == nil {
			res.Notes = append(res.Notes, "failover: needs --local (it kills the leader)")
		} else {
			kills := max(cfg.Kills, 1)
			fmt.Fprintf(progress, "bench: failover (SIGKILL the leader %d times under load)\n", kills)
			back, gaps, err := failovers(ctx, t, kills, progress)
			if err != nil {
				res.Notes = append(res.Notes, "failover: "+err.Error())
			} else {
				res.FailoverKills = len(gaps)
				res.FailoverMs = ms(quantile(back, 0.5))
				res.FailoverGapP50Ms = ms(quantile(gaps, 0.5))
				res.FailoverGapP99Ms = ms(nearestRank(gaps, 0.99))
				for _, g := range gaps {
					res.FailoverGapsMs = append(res.FailoverGapsMs, *ms(g))
				}
			}
		}
	}
	if want("backlog") {
		if t.local == nil {
			res.Notes = append(res.Notes, "backlog: needs --local (reads the leader's /metrics)")
		} else {
			fmt.Fprintln(progress, "bench: backlog (100 then 100,000 tasks pending)")
			small, big, err := backlog(ctx, t, lat, func(s string) { fmt.Fprintln(progress, "bench: backlog: "+s) })
			if err != nil {
				res.Notes = append(res.Notes, "backlog: "+err.Error())
			} else {
				res.BacklogPassMs100, res.BacklogPassMs100k = ms(small.pass), ms(big.pass)
				res.BacklogSubmitMs100, res.BacklogSubmitMs100k = ms(small.submit), ms(big.submit)
				res.BacklogStartMs100, res.BacklogStartMs100k = ms(small.start), ms(big.start)
				res.BacklogFinishMs100, res.BacklogFinishMs100k = ms(small.finish), ms(big.finish)
			}
		}
	}
	if want("retained") {
		if t.local == nil {
			res.Notes = append(res.Notes, "retained: needs --local (reads the leader's /metrics and restarts it)")
		} else {
			n := cfg.Retained
			if n <= 0 {
				n = 1000000
			}
			fmt.Fprintf(progress, "bench: retained (%d tasks run, then memory, snapshot and restart)\n", n)
			if err := retained(ctx, t, fleet, n, func(s string) { fmt.Fprintln(progress, "bench: retained: "+s) }, res); err != nil {
				res.Notes = append(res.Notes, "retained: "+err.Error())
			}
		}
	}
	return res, nil
}

func waitAgents(ctx context.Context, c gv1.GantryServiceClient, prefix string, want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	seen := 0
	for time.Now().Before(deadline) {
		resp, err := c.ListAgents(ctx, &gv1.ListAgentsRequest{})
		if err == nil {
			seen = 0
			for _, a := range resp.Agents {
				if strings.HasPrefix(a.Info.Name, prefix) && a.State == gv1.AgentState_AGENT_STATE_ACTIVE {
					seen++
				}
			}
			if seen >= want {
				return seen
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return seen
}

func noopTask(name string, labels map[string]string) *gv1.TaskSpec {
	return &gv1.TaskSpec{Name: name, Labels: labels, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"true"}}}}
}

// throughput keeps the fleet saturated with 20-task jobs and counts
// finished tasks per second over the duration.
func throughput(ctx context.Context, t *target, fleet *sim.Fleet, d time.Duration) float64 {
	labels := map[string]string{"bench": "fleet"}
	tasks := make([]*gv1.TaskSpec, 20)
	for i := range tasks {
		tasks[i] = noopTask(fmt.Sprintf("t%d", i), labels)
	}
	spec := &gv1.JobSpec{Name: "throughput", Tasks: tasks}
	start := fleet.Finished.Load()
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	var submitted atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				// Keep the backlog bounded so the run measures flow, not a queue.
				for ctx.Err() == nil && submitted.Load()*20-(fleet.Finished.Load()-start) > 4000 {
					time.Sleep(2 * time.Millisecond)
				}
				cctx, c := context.WithTimeout(ctx, 5*time.Second)
				_, err := t.client(w+i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
				c()
				if err == nil {
					submitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	done := fleet.Finished.Load() - start
	return float64(done) / time.Since(began).Seconds()
}
