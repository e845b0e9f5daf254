package subject

// What one agent may use on a cluster with TLS, where the coordinators'
// NATS servers hold it to these subjects (coordinator/natsauth.go).

// AgentInbox is the inbox prefix of agent name's NATS connection
// (nats.CustomInboxPrefix); the agent may subscribe below it only, so the
// replies it reads are its own.
func AgentInbox(agent string) string { return "_INBOX.agent." + agent }

// AgentOwn covers every subject agent name publishes on except logs:
// Heartbeat, Report and Drift.
func (n Namespace) AgentOwn(agent string) string { return n.prefix() + ".agent." + agent + ".>" }

// AgentControls covers every subject coordinators send agent name:
// Assign, Control and Watch.
func (n Namespace) AgentControls(agent string) string { return n.prefix() + ".ctl." + agent + ".>" }
