package agent

import (
	"context"

	"github.com/gantryci/gantry/agent/buildkit"
	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// buildkitExecutor runs build and run tasks on a BuildKit daemon; an agent
// has it when Config.BuildkitAddr is set.
type buildkitExecutor struct {
	bk *buildkit.Executor
}

func (buildkitExecutor) capabilities() []string { return []string{capability.BuildKit} }

func (buildkitExecutor) accepts(spec *gv1.TaskSpec) bool {
	return spec.GetBuild() != nil || spec.GetRun() != nil
}

func (e buildkitExecutor) run(ctx context.Context, at *attempt) outcome {
	spec := at.as.GetSpec()
	ctx, cancel := withTimeout(ctx, spec.GetTimeout().AsDuration())
	defer cancel()
	var r buildkit.Result
	if b := spec.GetBuild(); b != nil {
		r = e.bk.Build(ctx, buildkit.BuildRequest{Spec: b, Name: at.name, Secrets: at.as.GetSecrets()}, at.out)
	} else {
		r = e.bk.Run(ctx, buildkit.RunRequest{Spec: spec.GetRun(), Env: at.env, Secrets: at.as.GetSecrets()}, at.out)
	}
	return outcome{exitCode: r.ExitCode, class: r.Class, err: r.Err, outputs: r.Outputs}
}

// warm returns the cache keys of the builds the daemon completed.
func (e buildkitExecutor) warm() []string { return e.bk.Warm() }
