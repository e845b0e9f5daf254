// Package capability names what an agent offers and what a task needs. An
// agent advertises one capability per executor it has enabled (and one per
// Kubernetes cluster it reaches) in its heartbeats; the scheduler places a
// task only on an agent advertising the capability For returns, and the
// GitOps controller reads the clusters an agent reaches from the same list.
//
// A capability is a name ("exec") or a kind and a name ("cluster:prod");
// coordinators refuse heartbeats whose capabilities are not (package limit,
// package name).
package capability

import (
	"strings"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const (
	// Exec runs processes on the agent's host (exec tasks). Every agent
	// offers it.
	Exec = "exec"
	// BuildKit builds images and runs commands in them on a BuildKit daemon
	// (build and run tasks).
	BuildKit = "buildkit"
)

// Revisions of the agent protocol (AgentInfo.protocol), which agents
// announce in their heartbeats beside their capabilities.
const (
	// QuietAssignments: the leader publishes an assignment without a
	// reply subject; the agent takes it silently or refuses it with a
	// Report whose refused is set. Agents before it answer every
	// assignment, and the leader sends them requests.
	QuietAssignments = 2
	// Protocol is the revision this build's agents speak.
	Protocol = QuietAssignments
)

// clusterKind prefixes the capability of an agent that reaches a cluster.
const clusterKind = "cluster:"

// Cluster is the capability of an agent that reaches the Kubernetes
// cluster name and runs its deploy tasks.
func Cluster(name string) string { return clusterKind + name }

// ClusterName returns the cluster a capability names, and false when c is
// not a cluster capability.
func ClusterName(c string) (string, bool) { return strings.CutPrefix(c, clusterKind) }

// For returns the capability an agent needs to run spec.
func For(spec *gv1.TaskSpec) string {
	switch spec.GetExecutor().(type) {
	case *gv1.TaskSpec_Build, *gv1.TaskSpec_Run:
		return BuildKit
	case *gv1.TaskSpec_Deploy:
		return Cluster(spec.GetDeploy().GetCluster())
	}
	return Exec
}
