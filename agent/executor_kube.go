package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/gantryci/gantry/agent/kube"
	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// deployExecutor runs deploy tasks on the Kubernetes clusters the agent
// reaches (Config.Kube), advertising one capability per cluster.
type deployExecutor struct {
	clusters map[string]*kube.Cluster
	// root is the parent of per-attempt working directories.
	root string
}

func (e deployExecutor) capabilities() []string {
	caps := make([]string, 0, len(e.clusters))
	for _, n := range slices.Sorted(maps.Keys(e.clusters)) {
		caps = append(caps, capability.Cluster(n))
	}
	return caps
}

func (e deployExecutor) accepts(spec *gv1.TaskSpec) bool {
	d := spec.GetDeploy()
	return d != nil && e.clusters[d.GetCluster()] != nil
}

// run deploys to the cluster the spec names, in a fresh working directory.
func (e deployExecutor) run(ctx context.Context, at *attempt) outcome {
	spec := at.as.GetSpec()
	c := e.clusters[spec.GetDeploy().GetCluster()]
	if c == nil {
		return infraFailure(fmt.Errorf("this agent does not reach cluster %q", spec.GetDeploy().GetCluster()))
	}
	ctx, cancel := withTimeout(ctx, spec.GetTimeout().AsDuration())
	defer cancel()
	// at.name is made of checked tokens; the directory is a fresh one below
	// the deploy root all the same.
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		return infraFailure(fmt.Errorf("deploy work directory: %w", err))
	}
	dir, err := os.MkdirTemp(e.root, at.name+"-")
	if err != nil {
		return infraFailure(fmt.Errorf("deploy work directory: %w", err))
	}
	defer os.RemoveAll(dir)
	ref := at.as.GetRef()
	r := c.Deploy(ctx, kube.DeployRequest{
		Spec:    spec.GetDeploy(),
		Fence:   at.as.GetFence(),
		JobID:   ref.GetJobId(),
		Task:    ref.GetTask(),
		Attempt: ref.GetAttempt(),
		WorkDir: dir,
		Secrets: at.as.GetSecrets(),
	}, at.out)
	exit := 0
	if r.Err != nil {
		exit = -1
	}
	return outcome{exitCode: exit, class: r.Class, err: r.Err, outputs: r.Outputs}
}
