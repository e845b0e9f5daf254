// Package subject names every NATS subject Gantry uses. Subjects come in
// pairs: a function that builds the subject to publish on and, where a
// component listens to many, a wildcard to subscribe to.
//
// All subjects live under gantry.<cluster>. so that several Gantry clusters
// can share one NATS deployment. Agents publish only below
// gantry.<cluster>.agent.<name>. and gantry.<cluster>.log.
package subject

import (
	"strings"

	"github.com/gantryci/gantry/internal/name"
)

// Namespace builds subjects for one Gantry cluster.
type Namespace struct {
	cluster string
}

// New returns the namespace of a cluster name. The name must be a valid
// subject token (see ValidToken).
func New(cluster string) Namespace { return Namespace{cluster: cluster} }

// Cluster is the cluster name.
func (n Namespace) Cluster() string { return n.cluster }

func (n Namespace) prefix() string { return "gantry." + n.cluster }

// Heartbeat is where agent name publishes its heartbeats.
func (n Namespace) Heartbeat(agent string) string {
	return n.prefix() + ".agent." + agent + ".heartbeat"
}

// AllHeartbeats subscribes to every agent's heartbeats.
func (n Namespace) AllHeartbeats() string { return n.prefix() + ".agent.*.heartbeat" }

// Report is where agent name sends task results (request/reply to the leader).
func (n Namespace) Report(agent string) string {
	return n.prefix() + ".agent." + agent + ".report"
}

// ReportAgent returns the agent named by a subject of AllReports.
func (n Namespace) ReportAgent(subj string) (string, bool) {
	rest, ok := strings.CutPrefix(subj, n.prefix()+".agent.")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, ".report")
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	return name, true
}

// AllReports subscribes to every agent's reports; only the leader does.
func (n Namespace) AllReports() string { return n.prefix() + ".agent.*.report" }

// Assign is where the leader sends assignments to agent name.
func (n Namespace) Assign(agent string) string {
	return n.prefix() + ".ctl." + agent + ".assign"
}

// Control is where coordinators send drain and cancel to agent name.
func (n Namespace) Control(agent string) string {
	return n.prefix() + ".ctl." + agent + ".control"
}

// Watch is where the leader tells agent name which applications' live
// objects to watch (a complete gv1.WatchSet each time).
func (n Namespace) Watch(agent string) string {
	return n.prefix() + ".ctl." + agent + ".watch"
}

// Drift is where agent name publishes the drift reports of the
// applications it watches.
func (n Namespace) Drift(agent string) string {
	return n.prefix() + ".agent." + agent + ".drift"
}

// DriftAgent returns the agent named by a subject of AllDrift.
func (n Namespace) DriftAgent(subj string) (string, bool) {
	rest, ok := strings.CutPrefix(subj, n.prefix()+".agent.")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, ".drift")
	if !ok || name == "" || strings.Contains(name, ".") {
		return "", false
	}
	return name, true
}

// AllDrift subscribes to every agent's drift reports.
func (n Namespace) AllDrift() string { return n.prefix() + ".agent.*.drift" }

// GitPush is where coordinators pass on pushes announced to their
// /hooks/git endpoint (the repository URLs, one per line).
func (n Namespace) GitPush() string { return n.prefix() + ".hooks.git" }

// Log is where agent publishes the output of one task of one job. The
// agent's name is the last token: NATS lets an agent publish only logs
// under its own name (AgentLogs), and readers take a chunk only from the
// agent its attempt was leased to.
func (n Namespace) Log(jobID, task, agent string) string {
	return n.prefix() + ".log." + jobID + "." + task + "." + agent
}

// TaskLogs filters the logs of one task of a job, from any agent.
func (n Namespace) TaskLogs(jobID, task string) string {
	return n.prefix() + ".log." + jobID + "." + task + ".*"
}

// JobLogs filters the logs of every task of a job, from any agent.
func (n Namespace) JobLogs(jobID string) string { return n.prefix() + ".log." + jobID + ".*.*" }

// AgentLogs is what agent may publish logs on.
func (n Namespace) AgentLogs(agent string) string { return n.prefix() + ".log.*.*." + agent }

// LogAgent is the agent a log subject names; "" for another subject (or
// one written before logs carried the agent's name).
func (n Namespace) LogAgent(subj string) string {
	rest, ok := strings.CutPrefix(subj, n.prefix()+".log.")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return ""
	}
	return parts[2]
}

// LegacyLogs filters a job's logs written before log subjects carried the
// agent's name (gantry.CLUSTER.log.JOB.TASK); agents can no longer
// publish there.
func (n Namespace) LegacyLogs(jobID, task string) string {
	if task == "" {
		task = "*"
	}
	return n.prefix() + ".log." + jobID + "." + task
}

// AllLogs is the subject filter of the log stream.
func (n Namespace) AllLogs() string { return n.prefix() + ".log.>" }

// LogStream is the JetStream stream that keeps task logs.
func (n Namespace) LogStream() string { return "GANTRY_LOGS_" + strings.ToUpper(n.cluster) }

// RPC is where followers forward write calls to the leader.
func (n Namespace) RPC(method string) string { return n.prefix() + ".rpc." + method }

// AllRPC subscribes to forwarded calls; only the leader does.
func (n Namespace) AllRPC() string { return n.prefix() + ".rpc.*" }

// NodeStatus is where coordinator id announces its addresses and indexes.
func (n Namespace) NodeStatus(id string) string { return n.prefix() + ".node." + id }

// AllNodeStatus subscribes to every coordinator's announcements.
func (n Namespace) AllNodeStatus() string { return n.prefix() + ".node.*" }

// ValidToken reports whether s can be one subject token: a name without
// '.' in the grammar of package name.
func ValidToken(s string) error { return name.Token(s) }
