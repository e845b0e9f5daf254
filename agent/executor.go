package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent/buildkit"
	"github.com/gantryci/gantry/agent/exec"
	"github.com/gantryci/gantry/agent/kube"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// executor runs the tasks whose spec it accepts (exec, build and run,
// deploy). The executor packages (agent/exec, agent/buildkit, agent/kube)
// know nothing of the agent; an adapter in an executor_*.go file fits each
// of them to this interface, and newExecutors registers it.
type executor interface {
	// capabilities are what the agent advertises for this executor
	// (package capability); the scheduler sends it only tasks needing one.
	capabilities() []string
	// accepts reports whether the executor runs spec on this agent. An
	// assignment no executor accepts is refused.
	accepts(spec *gv1.TaskSpec) bool
	// run runs an attempt to its end; canceling ctx stops it. It enforces
	// the spec's timeout.
	run(ctx context.Context, at *attempt) outcome
}

// attempt is what an executor gets of the attempt it runs.
type attempt struct {
	// as is the assignment: reference, spec, fencing token, secrets.
	as *gv1.Assignment
	// name is "job-task-attempt", made of checked tokens (checkAssignment):
	// it names working directories.
	name string
	// env are the GANTRY_* variables of the task's environment.
	env []string
	// log is the attempt's logger; it masks the attempt's secrets.
	log *zap.Logger
	// out is the attempt's log stream (masked, rate limited).
	out *logSink
}

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

// infraFailure is the outcome of an attempt the agent could not start.
func infraFailure(err error) outcome {
	return outcome{exitCode: -1, class: gv1.FailureClass_FAILURE_CLASS_INFRA, err: err}
}

// executors are the executors an agent has enabled, in the order their
// capabilities are advertised.
type executors []executor

// newExecutors is the registry: it opens the executors cfg enables.
// Adding an executor is an adapter next to this file and a line here.
// clusters are the Kubernetes clusters the agent reaches (the agent watches
// them too).
func newExecutors(cfg Config, clusters map[string]*kube.Cluster, log *zap.Logger) (executors, error) {
	runner, err := exec.New(exec.Config{WorkRoot: filepath.Join(cfg.WorkDir, "work"), Grace: cfg.Grace, PassEnv: cfg.PassEnv}, log)
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	out := executors{execExecutor{runner: runner}, promoteExecutor{root: filepath.Join(cfg.WorkDir, "promote")}}
	if cfg.BuildkitAddr != "" {
		bk, err := buildkit.New(buildkit.Config{Addr: cfg.BuildkitAddr, WorkRoot: filepath.Join(cfg.WorkDir, "build")}, log)
		if err != nil {
			return nil, fmt.Errorf("buildkit executor: %w", err)
		}
		out = append(out, buildkitExecutor{bk: bk})
	}
	if len(clusters) > 0 {
		out = append(out, deployExecutor{clusters: clusters, root: filepath.Join(cfg.WorkDir, "deploy")})
	}
	return out, nil
}

// capabilities lists the capabilities of every executor.
func (es executors) capabilities() []string {
	var caps []string
	for _, e := range es {
		caps = append(caps, e.capabilities()...)
	}
	return caps
}

// find returns the executor that runs spec, or nil.
func (es executors) find(spec *gv1.TaskSpec) executor {
	i := slices.IndexFunc(es, func(e executor) bool { return e.accepts(spec) })
	if i < 0 {
		return nil
	}
	return es[i]
}

// cacheWarmer is an executor with a build cache whose keys the agent
// announces in heartbeats (internal/buildkey).
type cacheWarmer interface {
	warm() []string
}

// warm lists the cache keys of the executors that have a build cache.
func (es executors) warm() []string {
	var keys []string
	for _, e := range es {
		if w, ok := e.(cacheWarmer); ok {
			keys = append(keys, w.warm()...)
		}
	}
	return keys
}

// execute runs an attempt with the executor that accepts its spec;
// log is the attempt's (masking) logger.
func (a *Agent) execute(ctx context.Context, as *gv1.Assignment, sink *logSink, log *zap.Logger) outcome {
	e := a.executors.find(as.GetSpec())
	if e == nil {
		// handleAssignment refused the assignment already.
		return infraFailure(errors.New("no executor for this task on this agent"))
	}
	ref := as.GetRef()
	return e.run(ctx, &attempt{
		as:   as,
		name: fmt.Sprintf("%s-%s-%d", ref.JobId, ref.Task, ref.Attempt),
		env: []string{
			"GANTRY_JOB_ID=" + ref.JobId,
			"GANTRY_JOB_NAME=" + as.GetJobName(),
			"GANTRY_TASK=" + ref.Task,
			fmt.Sprintf("GANTRY_ATTEMPT=%d", ref.Attempt),
			"GANTRY_AGENT=" + a.cfg.Name,
		},
		log: log,
		out: sink,
	})
}

// withTimeout bounds ctx by a spec's timeout; zero means none.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
