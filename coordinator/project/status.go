package project

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/forge"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Back-off of a status the forge did not take.
const (
	statusRetryMin = time.Second
	statusRetryMax = 5 * time.Minute
)

// statusKey names one status of one build: the build's (task "") or a
// task's.
type statusKey struct {
	build buildID
	task  string
}

// retry is the back-off of one status.
type retry struct {
	next  time.Time
	delay time.Duration
}

// sendStatuses delivers the statuses the forge has not acknowledged yet:
// for each build (and task, when the project asks), the state its job is
// in now, if it is further along than what the forge last took. The
// outbox is the replicated state itself (Build.status_sent), so a new
// leader carries on where the old one stopped; a status is sent again at
// most (the same state, which forges take twice), never out of order.
func (c *Controller) sendStatuses(ctx context.Context) {
	now := c.d.Now()
	for _, v := range c.d.FSM.BuildsToReport() {
		if ctx.Err() != nil {
			return
		}
		id := buildID{v.Project.GetName(), v.Build.GetNumber()}
		st, ok := buildStatus(v)
		if ok {
			c.send(ctx, v, statusKey{id, ""}, st, now)
		}
		tasks := make([]string, 0, len(v.Tasks))
		for t := range v.Tasks {
			tasks = append(tasks, t)
		}
		sort.Strings(tasks)
		for _, t := range tasks {
			if st, ok := taskStatus(v, t); ok {
				c.send(ctx, v, statusKey{id, t}, st, now)
			}
		}
	}
}

// send delivers one status unless it is backing off, and records it.
func (c *Controller) send(ctx context.Context, v fsm.BuildView, key statusKey, st forge.Status, now time.Time) {
	sent := v.Build.GetStatusSent()
	if key.task != "" {
		sent = v.Build.GetTaskStatusSent()[key.task]
	}
	if fsm.StatusRank(string(st.State)) <= fsm.StatusRank(sent) {
		return
	}
	r := c.outbox[key]
	if r != nil && now.Before(r.next) {
		return
	}
	p, ok := c.d.FSM.Project(key.build.project)
	if !ok {
		return
	}
	st.TargetURL = c.targetURL(v)
	cl, repo, err := c.forge(p)
	if err == nil && cl != nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = cl.SetStatus(sctx, repo, v.Build.GetTrigger().GetSha(), st)
		cancel()
	}
	if err == nil && cl != nil {
		_, err = c.propose(ctx, &gv1.Command{At: timestamppb.New(c.d.Now()), Cmd: &gv1.Command_BuildStatus{BuildStatus: &gv1.BuildStatusCommand{
			Project: key.build.project, Number: key.build.number, State: string(st.State), Task: key.task,
		}}})
	}
	if err != nil || cl == nil {
		if r == nil {
			r = &retry{delay: statusRetryMin}
			c.outbox[key] = r
		} else {
			r.delay = min(2*r.delay, statusRetryMax)
		}
		r.next = now.Add(r.delay)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("commit status", zap.String("project", key.build.project), zap.Uint64("build", key.build.number),
				zap.String("task", key.task), zap.String("state", string(st.State)), zap.Duration("retry_in", r.delay), zap.Error(err))
		}
		return
	}
	delete(c.outbox, key)
}

// statusContext is a build's status context: gantry/<project>. It is the
// same from the first status on, before the pipeline file (and its name)
// is read, and for a build held for approval whose pipeline is never
// read; a project has one pipeline.
func statusContext(v fsm.BuildView) string {
	return "gantry/" + v.Project.GetName()
}

// targetURL links a status to the build's job in the console.
func (c *Controller) targetURL(v fsm.BuildView) string {
	base := v.Project.GetExternalUrl()
	if base == "" {
		base = c.externalURL()
	}
	if base == "" || v.Build.GetJobId() == "" {
		return ""
	}
	return fmt.Sprintf("%s/jobs/%s", trimSlash(base), v.Build.GetJobId())
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// buildStatus is the status a build should show now; false when there is
// nothing to show (its job was pruned).
func buildStatus(v fsm.BuildView) (forge.Status, bool) {
	b := v.Build
	st := forge.Status{Context: statusContext(v)}
	switch {
	case b.GetError() != "":
		st.State, st.Description = forge.Error, b.GetError()
	case b.GetAwaitingApproval():
		st.State, st.Description = forge.Pending, "awaiting approval: gantry build approve "+v.Project.GetName()+" "+fmt.Sprint(b.GetNumber())
	case b.GetJobId() == "":
		st.State, st.Description = forge.Pending, "reading the pipeline"
	default:
		switch v.JobState {
		case gv1.JobState_JOB_STATE_PENDING:
			st.State, st.Description = forge.Pending, "queued"
		case gv1.JobState_JOB_STATE_RUNNING:
			st.State, st.Description = forge.Running, "running"
		case gv1.JobState_JOB_STATE_SUCCEEDED:
			st.State, st.Description = forge.Success, "succeeded"
		case gv1.JobState_JOB_STATE_FAILED:
			st.State, st.Description = forge.Failure, "failed"
		case gv1.JobState_JOB_STATE_CANCELED:
			st.State, st.Description = forge.Error, "canceled"
			if b.GetSupersededBy() != 0 {
				st.Description = fmt.Sprintf("superseded by build %d", b.GetSupersededBy())
			}
		default:
			return st, false
		}
	}
	return st, true
}

// taskStatus is the status a task of a build should show now.
func taskStatus(v fsm.BuildView, task string) (forge.Status, bool) {
	st := forge.Status{Context: statusContext(v) + "/" + task}
	switch v.Tasks[task] {
	case gv1.TaskState_TASK_STATE_BLOCKED, gv1.TaskState_TASK_STATE_PENDING:
		st.State, st.Description = forge.Pending, "waiting"
	case gv1.TaskState_TASK_STATE_ASSIGNED, gv1.TaskState_TASK_STATE_RUNNING:
		st.State, st.Description = forge.Running, "running"
	case gv1.TaskState_TASK_STATE_SUCCEEDED:
		st.State, st.Description = forge.Success, "succeeded"
	case gv1.TaskState_TASK_STATE_SKIPPED:
		st.State, st.Description = forge.Success, "skipped"
	case gv1.TaskState_TASK_STATE_FAILED:
		st.State, st.Description = forge.Failure, "failed"
	case gv1.TaskState_TASK_STATE_CANCELED:
		st.State, st.Description = forge.Error, "canceled"
	default:
		return st, false
	}
	return st, true
}
