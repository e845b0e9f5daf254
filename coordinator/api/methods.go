package api

import "strings"

// where says how the API serves a method. Every method of GantryService
// has one row in methods (TestEveryMethodHasARow): a new method is placed
// here, in one table, and the interceptors do the rest.
type where struct {
	// read: answered from the local replica of the replicated state; it
	// waits for the node to catch up after a restart and for the client's
	// minimum index (gate.go).
	read bool
	// leader: only the leader answers; a follower forwards the call over
	// NATS and answers once it applied the result (forward.go). A
	// leader-only stream cannot be relayed: a follower names the leader.
	leader bool
	// sealed: the follower seals the request's secret value and forwards
	// only the ciphertext (SetSecret).
	sealed bool
}

// methods is the table of the API's methods, by short name. ListAgents,
// DrainAgent and ClusterStatus describe or signal live processes, not the
// replicated state, and are served by any node.
var methods = map[string]where{
	"SubmitJob":       {leader: true},
	"GetJob":          {read: true},
	"ListJobs":        {read: true},
	"WatchJob":        {read: true},
	"CancelJob":       {leader: true},
	"TaskLogs":        {read: true},
	"ListAgents":      {},
	"DrainAgent":      {},
	"ClusterStatus":   {},
	"AddNode":         {leader: true},
	"RemoveNode":      {leader: true},
	"ListQueue":       {read: true, leader: true},
	"CreateApp":       {leader: true},
	"ListApps":        {read: true},
	"GetApp":          {read: true},
	"SyncApp":         {leader: true},
	"RollbackApp":     {leader: true},
	"UnpinApp":        {leader: true},
	"DeleteApp":       {leader: true},
	"SaveSnapshot":    {read: true},
	"RestoreSnapshot": {leader: true},
	"SetSecret":       {leader: true, sealed: true},
	"ListSecrets":     {read: true},
	"DeleteSecret":    {leader: true},
}

// methodName is the short name of a full gRPC method name
// ("/gantry.v1.GantryService/SubmitJob" -> "SubmitJob").
func methodName(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

const servicePrefix = "/gantry.v1.GantryService/"
