package agent

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent/buildkit"
	"github.com/gantryci/gantry/agent/exec"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// outcome is how an attempt ended, whichever executor ran it.
type outcome struct {
	exitCode int
	class    gv1.FailureClass
	err      error
	outputs  map[string]string
}

func (o outcome) success() bool {
	return o.err == nil && o.class == gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED
}

// capabilities are the executors this agent offers; the scheduler sends a
// task only to an agent offering its executor's.
func (a *Agent) capabilities() []string {
	caps := []string{"exec"}
	if a.buildkit != nil {
		caps = append(caps, buildkit.Capability)
	}
	return append(caps, a.clusterCapabilities()...)
}

// canRun reports whether the agent has the executor spec needs.
func (a *Agent) canRun(spec *gv1.TaskSpec) bool {
	switch spec.GetExecutor().(type) {
	case *gv1.TaskSpec_Exec:
		return spec.GetExec() != nil
	case *gv1.TaskSpec_Build:
		return a.buildkit != nil && spec.GetBuild() != nil
	case *gv1.TaskSpec_Run:
		return a.buildkit != nil && spec.GetRun() != nil
	case *gv1.TaskSpec_Deploy:
		return spec.GetDeploy() != nil && a.clusters[spec.GetDeploy().GetCluster()] != nil
	}
	return false
}

// execute runs an attempt with the executor of its spec, handing it the
// assignment's secrets; log is the attempt's (masking) logger.
func (a *Agent) execute(ctx context.Context, as *gv1.Assignment, sink *logSink, log *zap.Logger) outcome {
	ref, spec := as.GetRef(), as.GetSpec()
	name := fmt.Sprintf("%s-%s-%d", ref.JobId, ref.Task, ref.Attempt)
	env := []string{
		"GANTRY_JOB_ID=" + ref.JobId,
		"GANTRY_JOB_NAME=" + as.GetJobName(),
		"GANTRY_TASK=" + ref.Task,
		fmt.Sprintf("GANTRY_ATTEMPT=%d", ref.Attempt),
		"GANTRY_AGENT=" + a.cfg.Name,
	}
	secrets := as.GetSecrets()
	timeout := spec.GetTimeout().AsDuration()
	switch x := spec.GetExecutor().(type) {
	case *gv1.TaskSpec_Build:
		ctx, cancel := withTimeout(ctx, timeout)
		defer cancel()
		return fromBuildkit(a.buildkit.Build(ctx, buildkit.BuildRequest{Spec: x.Build, Name: name, Secrets: secrets}, sink))
	case *gv1.TaskSpec_Run:
		ctx, cancel := withTimeout(ctx, timeout)
		defer cancel()
		return fromBuildkit(a.buildkit.Run(ctx, buildkit.RunRequest{Spec: x.Run, Env: env, Secrets: secrets}, sink))
	case *gv1.TaskSpec_Deploy:
		ctx, cancel := withTimeout(ctx, timeout)
		defer cancel()
		return a.deploy(ctx, as, name, sink)
	}
	res := a.runner.Run(ctx, exec.Request{Spec: spec.GetExec(), Timeout: timeout, Env: env, Secrets: secrets, Name: name, Log: log}, sink)
	return outcome{exitCode: res.ExitCode, class: res.Class, err: res.Err}
}

func fromBuildkit(r buildkit.Result) outcome {
	return outcome{exitCode: r.ExitCode, class: r.Class, err: r.Err, outputs: r.Outputs}
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
