package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryci/gantry/internal/bench"
	"github.com/gantryci/gantry/internal/gctune"
)

func newBenchCmd(g *globals) *cobra.Command {
	cfg := bench.Config{Progress: os.Stderr}
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
			// The load generator and its simulated agents share the
			// machine with what they measure: they waste as little of it
			// on collections as a coordinator does.
			go gctune.Run(cmd.Context(), time.Second)
			for _, s := range cfg.Scenarios {
				if !slices.Contains(bench.Scenarios, s) && !slices.Contains(bench.OptIn, s) {
					return fmt.Errorf("--scenarios: %q is not one of %s", s, strings.Join(append(slices.Clone(bench.Scenarios), bench.OptIn...), ","))
				}
			}
			if cfg.Local > 0 {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.Binary = self
			} else {
				c, err := g.dial()
				if err != nil {
					return err
				}
				defer c.Close()
				cfg.Client = c
			}
			res, err := bench.Run(cmd.Context(), cfg)
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
	fl.IntVar(&cfg.Local, "local", 0, "start this many coordinators as local processes (0: use --addr and --nats)")
	fl.BoolVar(&cfg.Insecure, "insecure", false, "with --local: run the coordinators without TLS and token checks, to compare with the default (TLS on the API and Raft, tokens)")
	fl.StringSliceVar(&cfg.Scenarios, "scenarios", bench.Scenarios, "scenarios to run: "+strings.Join(bench.Scenarios, ",")+"; only when named: exec (one-task `true` jobs on the real agents of the cluster at --addr, e.g. gantry dev's), backlog (with --local: 100 then 100,000 tasks pending) and retained (with --local: --retained tasks run, then the leader's memory, a snapshot and a restart)")
	fl.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of the throughput and latency runs")
	fl.IntVar(&cfg.Rate, "rate", 200, "submissions per second in the latency run")
	fl.IntVar(&cfg.SimAgents, "sim-agents", 100, "simulated agents connected during the run")
	fl.IntVar(&cfg.Slots, "slots", 16, "slots of each simulated agent")
	fl.StringVar(&cfg.NATS, "nats", "nats://127.0.0.1:4222", "NATS URLs of the cluster (without --local)")
	fl.StringVar(&cfg.Cluster, "cluster", "default", "cluster name (without --local)")
	fl.IntVar(&cfg.Kills, "kills", 1, "failover: kill the leader this many times under load (restarting each killed node before the next)")
	fl.StringVar(&cfg.CPUProfile, "cpu-profile", "", "with --local: write a CPU profile of the leader during the throughput run to this file (and during exec to FILE.exec; go tool pprof)")
	fl.IntVar(&cfg.LocalAgents, "local-agents", 0, "with --local: start this many real gantry agent processes (for exec)")
	fl.IntVar(&cfg.AgentSlots, "agent-slots", 16, "slots of each --local-agents agent")
	fl.IntVar(&cfg.Retained, "retained", 1000000, "retained: tasks run (in 20-task jobs) before the leader's memory, a snapshot and a restart are measured")
	fl.BoolVar(&cfg.Keep, "keep", false, "with --local, leave the data directory behind")
	return cmd
}

func fmtMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + " ms"
}

func printBench(w io.Writer, r *bench.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "figure\tvalue\n")
	if r.ExecTasksPerS != nil {
		fmt.Fprintf(tw, "exec: `true` tasks finished by real agents\t%.0f tasks/s (acknowledged %.0f/s, %d open when submitting stopped)\n", *r.ExecTasksPerS, *r.ExecAcceptedPerS, *r.ExecBacklog)
	}
	if r.ExecStartP50Ms != nil {
		fmt.Fprintf(tw, "exec: one job at a time, submit → process started p50 / p99\t%s / %s\n", fmtMs(r.ExecStartP50Ms), fmtMs(r.ExecStartP99Ms))
	}
	if r.ThroughputTasksPerS != nil {
		fmt.Fprintf(tw, "throughput (no-op tasks, %d coordinators)\t%.0f tasks/s\n", r.Nodes, *r.ThroughputTasksPerS)
	}
	fmt.Fprintf(tw, "dispatch submit→start p50 / p99 / max at %d/s\t%s / %s / %s\n", r.LatencyRatePerS, fmtMs(r.DispatchP50Ms), fmtMs(r.DispatchP99Ms), fmtMs(r.DispatchMaxMs))
	fmt.Fprintf(tw, "submit→finished p50 / p99\t%s / %s\n", fmtMs(r.FinishP50Ms), fmtMs(r.FinishP99Ms))
	fmt.Fprintf(tw, "leader failover (kill -9 → next write ok, median)\t%s\n", fmtMs(r.FailoverMs))
	if r.FailoverKills > 0 {
		fmt.Fprintf(tw, "longest pause between acknowledged submits, p50 / p99 of %d kills\t%s / %s (all: %v ms)\n", r.FailoverKills, fmtMs(r.FailoverGapP50Ms), fmtMs(r.FailoverGapP99Ms), r.FailoverGapsMs)
	}
	fmt.Fprintf(tw, "lost agent (kill → all tasks started elsewhere)\t%s\n", fmtMs(r.LostAgentRedispatchMs))
	fmt.Fprintf(tw, "simulated agents held\t%d\n", r.SimAgents)
	if r.SimAgentsRSSMB != nil {
		fmt.Fprintf(tw, "leader with them: RSS / CPU during throughput\t%.0f MB / %.0f %% of a core\n", *r.SimAgentsRSSMB, *r.SimAgentsCPUPct)
	}
	if r.BacklogPassMs100 != nil {
		fmt.Fprintf(tw, "backlog 100 → 100,000 pending: scheduling pass (mean)\t%s → %s\n", fmtMs(r.BacklogPassMs100), fmtMs(r.BacklogPassMs100k))
		fmt.Fprintf(tw, "  submit call / submit→start / submit→finished p50\t%s / %s / %s → %s / %s / %s\n",
			fmtMs(r.BacklogSubmitMs100), fmtMs(r.BacklogStartMs100), fmtMs(r.BacklogFinishMs100), fmtMs(r.BacklogSubmitMs100k), fmtMs(r.BacklogStartMs100k), fmtMs(r.BacklogFinishMs100k))
	}
	if r.RetainedRSSMB != nil {
		fmt.Fprintf(tw, "%d ended tasks retained: leader RSS\t%.0f MB\n", r.RetainedTasks, *r.RetainedRSSMB)
	}
	if r.RetainedSnapshotS != nil && r.RetainedSnapshotMB != nil {
		fmt.Fprintf(tw, "  snapshot of the whole state over the API\t%.2f s (%.0f MiB)\n", *r.RetainedSnapshotS, *r.RetainedSnapshotMB)
	}
	if r.RetainedRestartS != nil {
		fmt.Fprintf(tw, "  leader kill -9 → restarted and ready\t%.2f s\n", *r.RetainedRestartS)
	}
	if r.RetainedMaxGapMs != nil {
		fmt.Fprintf(tw, "  longest pause of a steady probe's acknowledged submits\t%s\n", fmtMs(r.RetainedMaxGapMs))
	}
	fmt.Fprintf(tw, "floor: raw 3-node Raft commit p50 / p99\t%s / %s\n", fmtMs(r.FloorRaftCommitP50Ms), fmtMs(r.FloorRaftCommitP99Ms))
	fmt.Fprintf(tw, "floor: NATS request/reply p50\t%s\n", fmtMs(r.FloorNATSRTTP50Ms))
	if r.FloorMsgTasksPerS != nil && r.FloorMsgCPUUs != nil {
		fmt.Fprintf(tw, "floor: a no-op task's NATS messages alone\t%.0f tasks/s, %.0f µs of CPU each\n", *r.FloorMsgTasksPerS, *r.FloorMsgCPUUs)
	}
	if r.FloorProcStartsPerS != nil && r.FloorProcStartCPUUs != nil {
		fmt.Fprintf(tw, "floor: `true` started and reaped, 32 at once\t%.0f/s, %.0f µs of CPU each\n", *r.FloorProcStartsPerS, *r.FloorProcStartCPUUs)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}
