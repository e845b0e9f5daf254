// Package limit holds the bounds on what crosses a trust boundary: what an
// agent reports, what a client sends, what travels over NATS. Both sides
// use the same numbers, so an agent never sends what the coordinator would
// refuse. The README's "Limits" section explains each choice.
package limit

import "time"

const (
	// Message is the largest NATS message and gRPC request or response
	// (except the snapshot streams, which are chunked): 4 MiB.
	Message = 4 << 20

	// ReportOutputs is the most outputs one task may report.
	ReportOutputs = 64
	// OutputValue is the longest output value (a digest or image reference
	// is under 200 bytes).
	OutputValue = 4 << 10
	// ReportError is the longest error string of a report; longer ones are
	// cut, keeping the start and the end.
	ReportError = 4 << 10

	// LogChunk is the most bytes in one log chunk.
	LogChunk = 64 << 10
	// LogRate and LogBurst bound one task's log output (bytes per second,
	// sustained and burst); output past them is dropped with a marker line
	// saying how much.
	LogRate  = 2 << 20
	LogBurst = 8 << 20

	// Labels is the most labels an agent or task may carry; LabelValue the
	// longest value.
	Labels     = 64
	LabelValue = 256
	// Capabilities and WarmCache bound the lists in an agent's heartbeat.
	Capabilities = 64
	WarmCache    = 64
	// HeartbeatRunning is the most attempts one heartbeat may list.
	HeartbeatRunning = 4096

	// Agents is the most agents a coordinator keeps in its fleet view;
	// agents silent for AgentForget are forgotten.
	Agents      = 10000
	AgentForget = time.Hour

	// Secrets is the most secrets the state keeps; SecretValue the largest
	// value (an SSH key or a kubeconfig fits).
	Secrets     = 10000
	SecretValue = 64 << 10
)

// Bounds the coordinator adds for what agents send besides reports.
const (
	// Capability is the longest capability in a heartbeat ("cluster:" and
	// a name fit); WarmCacheKey the longest warm cache key (a repository
	// URL or directory and a Dockerfile path).
	Capability   = 128
	WarmCacheKey = 1 << 10

	// DriftItems is the most fields one drift report lists; DriftValue the
	// longest applied or live value of one. A report with more is kept cut
	// to these: drift is shown, not replicated, and a few fields say
	// enough.
	DriftItems = 64
	DriftValue = 1 << 10

	// LogMessage is the largest message the log stream stores: a LogChunk
	// of LogChunk bytes and its envelope (reference, sequence, time).
	LogMessage = LogChunk + 1<<10

	// Snapshot is the largest snapshot RestoreSnapshot takes (it is
	// spooled to disk, never held whole in memory).
	Snapshot = 1 << 30
)

// Tokens is the most API tokens the state keeps; AuditEvents the most
// audit events (the oldest are dropped first); AuditField the longest
// text kept in one audit field.
const (
	Tokens      = 10000
	AuditEvents = 20000
	AuditField  = 512
)
