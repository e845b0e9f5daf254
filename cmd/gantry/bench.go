package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gantryci/gantry/agent/sim"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

type benchOpts struct {
	local     int
	scenarios []string
	duration  time.Duration
	rate      int
	simAgents int
	slots     int
	natsURL   string
	cluster   string
	keep      bool
}

// benchResult is the -o json document.
type benchResult struct {
	Scenarios             []string `json:"scenarios"`
	Nodes                 int      `json:"nodes"`
	ThroughputTasksPerS   *float64 `json:"throughput_tasks_per_s"`
	DispatchP50Ms         *float64 `json:"dispatch_p50_ms"`
	DispatchP99Ms         *float64 `json:"dispatch_p99_ms"`
	DispatchMaxMs         *float64 `json:"dispatch_max_ms"`
	FinishP50Ms           *float64 `json:"finish_p50_ms"`
	FinishP99Ms           *float64 `json:"finish_p99_ms"`
	LatencyRatePerS       int      `json:"latency_rate_per_s"`
	FailoverMs            *float64 `json:"failover_ms"`
	LostAgentRedispatchMs *float64 `json:"lost_agent_redispatch_ms"`
	SimAgents             int      `json:"sim_agents"`
	FloorRaftCommitP50Ms  *float64 `json:"floor_raft_commit_p50_ms"`
	FloorRaftCommitP99Ms  *float64 `json:"floor_raft_commit_p99_ms"`
	FloorNATSRTTP50Ms     *float64 `json:"floor_nats_rtt_p50_ms"`
	Notes                 []string `json:"notes,omitempty"`
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

var allScenarios = []string{"floor", "fleet", "throughput", "latency", "lost-agent", "failover"}

func newBenchCmd(g *globals) *cobra.Command {
	o := &benchOpts{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a cluster: throughput, dispatch latency, failover, lost-agent re-dispatch, against the physical floor",
		Long: `Measure Gantry. Point it at a running cluster (--addr, --nats) or let it start
one (--local 3: three coordinator processes with fsync on). Simulated agents
(--sim-agents) speak the real protocol over NATS and finish tasks at once, so
the figures are Gantry's own overhead. failover needs --local (it kills the
leader with SIGKILL).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, s := range o.scenarios {
				if !slices.Contains(allScenarios, s) {
					return fmt.Errorf("--scenarios: %q is not one of %s", s, strings.Join(allScenarios, ", "))
				}
			}
			res, err := runBench(cmd.Context(), g, o)
			if err != nil {
				return err
			}
			if g.output == "json" {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printBench(os.Stdout, res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.local, "local", 0, "start this many coordinators as local processes (0: use --addr and --nats)")
	fl.StringSliceVar(&o.scenarios, "scenarios", allScenarios, "scenarios to run: "+strings.Join(allScenarios, ","))
	fl.DurationVar(&o.duration, "duration", 5*time.Second, "length of the throughput and latency runs")
	fl.IntVar(&o.rate, "rate", 200, "submissions per second in the latency run")
	fl.IntVar(&o.simAgents, "sim-agents", 100, "simulated agents connected during the run")
	fl.IntVar(&o.slots, "slots", 16, "slots of each simulated agent")
	fl.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "NATS URLs of the cluster (without --local)")
	fl.StringVar(&o.cluster, "cluster", "default", "cluster name (without --local)")
	fl.BoolVar(&o.keep, "keep", false, "with --local, leave the data directory behind")
	return cmd
}

// benchTarget is the cluster under test.
type benchTarget struct {
	clients []gv1.GantryServiceClient
	nats    string
	cluster string
	local   *localCluster
}

func (t *benchTarget) client(i int) gv1.GantryServiceClient { return t.clients[i%len(t.clients)] }

func runBench(ctx context.Context, g *globals, o *benchOpts) (*benchResult, error) {
	res := &benchResult{Scenarios: o.scenarios, LatencyRatePerS: o.rate}
	want := func(s string) bool { return slices.Contains(o.scenarios, s) }
	if want("floor") {
		fmt.Fprintln(os.Stderr, "bench: floor (raw 3-node Raft commit, raw NATS request/reply)")
		if err := benchFloor(res); err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
	}
	rest := slices.DeleteFunc(slices.Clone(o.scenarios), func(s string) bool { return s == "floor" })
	if len(rest) == 0 {
		return res, nil
	}
	t := &benchTarget{nats: o.natsURL, cluster: o.cluster}
	if o.local > 0 {
		fmt.Fprintf(os.Stderr, "bench: starting %d coordinators\n", o.local)
		lc, err := startLocalCluster(ctx, o.local, o.keep)
		if err != nil {
			return nil, err
		}
		defer lc.stop()
		t.local, t.nats, t.cluster = lc, lc.natsURLs(), "bench"
		for _, n := range lc.nodes {
			conn, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			t.clients = append(t.clients, gv1.NewGantryServiceClient(conn))
		}
	} else {
		c, done, err := g.client()
		if err != nil {
			return nil, err
		}
		defer done()
		t.clients = []gv1.GantryServiceClient{c}
	}
	st, err := t.client(0).ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("cluster status: %w", err)
	}
	res.Nodes = len(st.Nodes)

	lat := newLatencyProbe()
	fleet, err := sim.Start(sim.Config{
		Cluster: t.cluster, NATS: t.nats, Prefix: "bench", Count: max(o.simAgents, 1), Slots: o.slots,
		Labels: map[string]string{"bench": "fleet"}, Heartbeat: time.Second,
		OnStart: lat.started, OnFinish: lat.finished,
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	fmt.Fprintf(os.Stderr, "bench: fleet of %d simulated agents connecting\n", o.simAgents)
	res.SimAgents = waitAgents(ctx, t.client(0), "bench-", o.simAgents, 60*time.Second)
	if res.SimAgents < o.simAgents {
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d simulated agents were seen active", res.SimAgents, o.simAgents))
	}
	if want("throughput") {
		fmt.Fprintf(os.Stderr, "bench: throughput for %s\n", o.duration)
		v := benchThroughput(ctx, t, fleet, o.duration)
		res.ThroughputTasksPerS = &v
	}
	if want("latency") {
		fmt.Fprintf(os.Stderr, "bench: latency at %d/s for %s\n", o.rate, o.duration)
		benchLatency(ctx, t, lat, o.rate, o.duration, res)
	}
	if want("lost-agent") {
		fmt.Fprintln(os.Stderr, "bench: lost agent")
		d, err := benchLostAgent(ctx, t)
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
			fmt.Fprintln(os.Stderr, "bench: failover (SIGKILL the leader)")
			d, err := benchFailover(ctx, t)
			if err != nil {
				res.Notes = append(res.Notes, "failover: "+err.Error())
			} else {
				res.FailoverMs = ms(d)
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

// benchThroughput keeps the fleet saturated with 20-task jobs and counts
// finished tasks per second over the duration.
func benchThroughput(ctx context.Context, t *benchTarget, fleet *sim.Fleet, d time.Duration) float64 {
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
				_, err := t.client(w+i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec})
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
