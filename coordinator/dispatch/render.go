package dispatch

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/render"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// render resolves the templates of a task's spec against the outputs its
// job's tasks recorded so far (package render).
func (d *Dispatcher) render(spec *gv1.TaskSpec, ref *gv1.TaskRef) (*gv1.TaskSpec, error) {
	if _, ok := spec.GetExecutor().(*gv1.TaskSpec_Exec); ok {
		return spec, nil
	}
	j, ok := d.fsm.Job(ref.GetJobId())
	if !ok {
		return nil, fmt.Errorf("job %s: %w", ref.GetJobId(), fsm.ErrNotFound)
	}
	outputs := make(map[string]map[string]string, len(j.Tasks))
	for _, t := range j.Tasks {
		if t.State == gv1.TaskState_TASK_STATE_SUCCEEDED {
			outputs[t.Name] = t.Outputs
		}
	}
	return render.Task(spec, outputs, j.GetSpec().GetTrigger())
}

// failTemplate ends an assigned attempt whose spec cannot be rendered as a
// job failure: rendering again would fail the same way, so requeueing it
// would retry forever. The task's retries still apply.
func (d *Dispatcher) failTemplate(ctx context.Context, agent string, ref *gv1.TaskRef, cause error) {
	d.failAttempt(ctx, agent, ref, "render task spec: "+cause.Error())
}

// failAttempt ends an assigned attempt that cannot be handed to its agent
// (its spec does not render, a secret it needs is missing) as a job
// failure; the task's retries still apply.
func (d *Dispatcher) failAttempt(ctx context.Context, agent string, ref *gv1.TaskRef, msg string) {
	msg = limit.Clip(msg, limit.ReportError)
	d.log.Info("attempt cannot be assigned", zap.String("job", ref.JobId), zap.String("task", ref.Task),
		zap.Int32("attempt", ref.Attempt), zap.String("reason", msg))
	_, err := d.prop.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_FinishTask{FinishTask: &gv1.FinishTaskCommand{Report: &gv1.Report{
		Ref:        ref,
		ExitCode:   -1,
		Error:      msg,
		Failure:    gv1.FailureClass_FAILURE_CLASS_JOB,
		Agent:      agent,
		FinishedAt: timestamppb.Now(),
	}}}})
	if err != nil && !errors.Is(err, fsm.ErrStaleAttempt) && ctx.Err() == nil {
		d.log.Warn("commit template failure", zap.String("job", ref.JobId), zap.String("task", ref.Task), zap.Error(err))
	}
}
