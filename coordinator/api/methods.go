package api

import (
	"strings"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// where says how the API serves a method. Every method of GantryService
// has one row in methods (TestEveryMethodHasARow): a new method is placed
// here, in one table, and the interceptors do the rest.
type where struct {
	// role is the least role a caller's token needs (auth.go).
	role gv1.Role
	// open: answered without a token (BootstrapACL, while no token exists).
	open bool
	// audit: a mutating call; who made it, from where, on what, and its
	// result are recorded in the replicated audit log.
	audit bool
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

const (
	viewer    = gv1.Role_ROLE_VIEWER
	developer = gv1.Role_ROLE_DEVELOPER
	operator  = gv1.Role_ROLE_OPERATOR
	admin     = gv1.Role_ROLE_ADMIN
)

// methods is the table of the API's methods, by short name. ListAgents and
// ClusterStatus describe live processes, not the replicated state, and are
// served by any node.
var methods = map[string]where{
	"SubmitJob":       {role: developer, audit: true, leader: true},
	"GetJob":          {role: viewer, read: true},
	"ListJobs":        {role: viewer, read: true},
	"WatchJob":        {role: viewer, read: true},
	"CancelJob":       {role: developer, audit: true, leader: true}, // a developer: only its own jobs
	"TaskLogs":        {role: viewer, read: true},
	"ListAgents":      {role: viewer},
	"DrainAgent":      {role: operator, audit: true, leader: true},
	"ClusterStatus":   {role: viewer},
	"AddNode":         {role: admin, audit: true, leader: true},
	"RemoveNode":      {role: admin, audit: true, leader: true},
	"ListQueue":       {role: viewer, read: true, leader: true},
	"CreateApp":       {role: operator, audit: true, leader: true},
	"ListApps":        {role: viewer, read: true},
	"GetApp":          {role: viewer, read: true},
	"SyncApp":         {role: operator, audit: true, leader: true},
	"RollbackApp":     {role: operator, audit: true, leader: true},
	"UnpinApp":        {role: operator, audit: true, leader: true},
	"DeleteApp":       {role: operator, audit: true, leader: true},
	"SaveSnapshot":    {role: admin, read: true},
	"RestoreSnapshot": {role: admin, audit: true, leader: true},
	"SetSecret":       {role: operator, audit: true, leader: true, sealed: true},
	"ListSecrets":     {role: operator, read: true},
	"DeleteSecret":    {role: operator, audit: true, leader: true},
	"CreateToken":     {role: admin, audit: true, leader: true},
	"ListTokens":      {role: admin, read: true},
	"RevokeToken":     {role: admin, audit: true, leader: true},
	"BootstrapACL":    {open: true, audit: true, leader: true},
	"WhoAmI":          {role: viewer},
	"ListAudit":       {role: admin, read: true},
	// Projects: creating one registers a webhook with a credential and
	// makes the coordinators use it, hence admin.
	"CreateProject": {role: admin, audit: true, leader: true},
	"ListProjects":  {role: viewer, read: true},
	"GetProject":    {role: viewer, read: true},
	"DeleteProject": {role: admin, audit: true, leader: true},
	"RunProject":    {role: developer, audit: true, leader: true},
	"ApproveBuild":  {role: operator, audit: true, leader: true},
	// The approval task names who decides (DecideTask checks it).
	"DecideTask": {role: viewer, audit: true, leader: true},
	// Agent enrollment: EnrollAgent's credential is the join token in
	// the request; the leader signs with the CA key (enroll.go).
	"CreateJoinToken": {role: admin, audit: true, leader: true},
	"ListJoinTokens":  {role: admin, read: true},
	"RevokeJoinToken": {role: admin, audit: true, leader: true},
	"EnrollAgent":     {open: true, audit: true, leader: true},
	// Authenticated by the project's webhook secret (HMAC), not a token.
	"DeliverWebhook": {open: true, leader: true},
}

// methodName is the short name of a full gRPC method name
// ("/gantry.v1.GantryService/SubmitJob" -> "SubmitJob").
func methodName(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

const servicePrefix = "/gantry.v1.GantryService/"

// rowOf is the row of any gRPC method this server serves: the health
// service answers without a token (load balancers probe it); anything else
// outside GantryService (reflection) needs a viewer.
func rowOf(full string) where {
	if strings.HasPrefix(full, servicePrefix) {
		w, ok := methods[methodName(full)]
		if !ok {
			return where{role: admin}
		}
		return w
	}
	if strings.HasPrefix(full, "/grpc.health.v1.Health/") {
		return where{open: true}
	}
	return where{role: viewer}
}
