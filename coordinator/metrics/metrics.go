// Package metrics defines the coordinator's Prometheus metrics.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gantryci/gantry/internal/version"
)

// Metrics holds the coordinator's collectors, registered on Registry.
type Metrics struct {
	Registry *prometheus.Registry
	// DispatchLatency: from a task becoming runnable to its agent accepting it.
	DispatchLatency *prometheus.HistogramVec
	// RaftApply: from proposing a batch to its commit and application.
	RaftApply prometheus.Histogram
	// BatchSize: commands per Raft entry.
	BatchSize prometheus.Histogram
	// QueueDepth: pending tasks by label selector.
	QueueDepth *prometheus.GaugeVec
	// SchedulePass: how long one scheduling pass on the leader took
	// (choosing placements, before their commit).
	SchedulePass prometheus.Histogram
	// PoolDemand and PoolReplicas: each autoscaled agent pool's demand
	// (tasks queued for it and running on it) and the replicas set.
	PoolDemand, PoolReplicas *prometheus.GaugeVec
	// Agents: agents by state.
	Agents *prometheus.GaugeVec
	// Leader is 1 on the leader.
	Leader prometheus.Gauge
	// Requeues: attempts ended by the coordinator, by reason.
	Requeues *prometheus.CounterVec
	// Reports: agent reports by outcome (accepted, duplicate, refused).
	Reports *prometheus.CounterVec
}

// New creates and registers the collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		DispatchLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_dispatch_latency_seconds",
			Help:    "Time from a task becoming runnable to an agent accepting it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"labels"}),
		RaftApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gantry_raft_apply_seconds",
			Help:    "Time from proposing a Raft entry to its application.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gantry_raft_batch_commands",
			Help:    "Commands per Raft entry.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_queue_depth",
			Help: "Pending tasks by label selector.",
		}, []string{"labels"}),
		SchedulePass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gantry_schedule_pass_seconds",
			Help:    "Time one scheduling pass on the leader took to choose placements (before their commit).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		PoolDemand: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_pool_demand_tasks",
			Help: "Tasks queued for an autoscaled agent pool plus the tasks its agents run (leader only).",
		}, []string{"pool"}),
		PoolReplicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_pool_replicas",
			Help: "The replica count the autoscaler set for an agent pool (leader only).",
		}, []string{"pool"}),
		Agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_agents",
			Help: "Agents by state.",
		}, []string{"state"}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_raft_leader",
			Help: "1 when this coordinator is the Raft leader.",
		}),
		Requeues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_requeues_total",
			Help: "Attempts the coordinator ended and requeued, by reason.",
		}, []string{"reason"}),
		Reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_reports_total",
			Help: "Agent reports by outcome.",
		}, []string{"outcome"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gantry_build_info",
		Help: "1, labeled with this coordinator's version and the highest Raft command type it knows.",
	}, []string{"version", "max_command"})
	build.WithLabelValues(version.String(), strconv.Itoa(int(version.MaxCommand()))).Set(1)
	r.MustRegister(m.DispatchLatency, m.RaftApply, m.BatchSize, m.QueueDepth, m.SchedulePass, m.PoolDemand, m.PoolReplicas, m.Agents, m.Leader, m.Requeues, m.Reports, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
