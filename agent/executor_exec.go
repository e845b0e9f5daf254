package agent

import (
	"context"

	"github.com/gantryci/gantry/agent/exec"
	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// execExecutor runs exec tasks as processes on the agent's host. Every
// agent has it.
type execExecutor struct {
	runner *exec.Runner
}

func (execExecutor) capabilities() []string { return []string{capability.Exec} }

func (execExecutor) accepts(spec *gv1.TaskSpec) bool { return spec.GetExec() != nil }

// run hands the timeout to the runner, which measures it from the start
// of the process.
func (e execExecutor) run(ctx context.Context, at *attempt) outcome {
	spec := at.as.GetSpec()
	res := e.runner.Run(ctx, exec.Request{
		Spec:    spec.GetExec(),
		Timeout: spec.GetTimeout().AsDuration(),
		Env:     at.env,
		Secrets: at.as.GetSecrets(),
		Name:    at.name,
		Log:     at.log,
	}, at.out)
	return outcome{exitCode: res.ExitCode, class: res.Class, err: res.Err, outputs: res.Outputs}
}
