package fsm

import (
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// JobIn returns a copy of one job in a view: JOB_VIEW_BASIC leaves out the
// specs of its tasks, which are most of a job's size; any other view is
// the whole job (Job).
func (f *FSM) JobIn(id string, view gv1.JobView) (*gv1.Job, bool) {
	if view != gv1.JobView_JOB_VIEW_BASIC {
		return f.Job(id)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if sj, ok := f.state.sealed[id]; ok {
		return dropSpecs(sj.decode(id)), true
	}
	j, ok := f.state.jobs[id]
	if !ok {
		return nil, false
	}
	return basicJob(j), true
}

// dropSpecs turns a job the caller owns into its basic view.
func dropSpecs(j *gv1.Job) *gv1.Job {
	if j.Spec != nil {
		j.Spec.Tasks = nil
	}
	for _, t := range j.Tasks {
		t.Spec = nil
	}
	return j
}

// basicJob copies a job of the state into its basic view without copying
// the specs it leaves out; j is not changed. Every field but the specs is
// copied (TestBasicJobCopiesEveryOtherField holds it to that).
func basicJob(j *gv1.Job) *gv1.Job {
	c := &gv1.Job{
		Id:             j.Id,
		State:          j.State,
		IdempotencyKey: j.IdempotencyKey,
		CreatedAt:      stamp(j.CreatedAt),
		FinishedAt:     stamp(j.FinishedAt),
		Version:        j.Version,
		Owner:          j.Owner,
	}
	if s := j.Spec; s != nil {
		c.Spec = &gv1.JobSpec{Name: s.Name, Priority: s.Priority, Trigger: s.Trigger.CloneVT(), Source: s.Source.CloneVT()}
	}
	if j.Tasks != nil {
		c.Tasks = make([]*gv1.Task, len(j.Tasks))
		for i, t := range j.Tasks {
			c.Tasks[i] = basicTask(t)
		}
	}
	return c
}

func basicTask(t *gv1.Task) *gv1.Task {
	c := &gv1.Task{
		Name:          t.Name,
		State:         t.State,
		Attempt:       t.Attempt,
		Agent:         t.Agent,
		JobFailures:   t.JobFailures,
		InfraFailures: t.InfraFailures,
		QueuedAt:      stamp(t.QueuedAt),
		StartedAt:     stamp(t.StartedAt),
		FinishedAt:    stamp(t.FinishedAt),
		NotBefore:     stamp(t.NotBefore),
		ExitCode:      t.ExitCode,
		Error:         t.Error,
		Failure:       t.Failure,
		Fence:         t.Fence,
		RunnableAt:    stamp(t.RunnableAt),
		SkipReason:    t.SkipReason,
	}
	if t.Outputs != nil {
		c.Outputs = make(map[string]string, len(t.Outputs))
		for k, v := range t.Outputs {
			c.Outputs[k] = v
		}
	}
	if t.Attempts != nil {
		c.Attempts = make([]*gv1.Attempt, len(t.Attempts))
		for i, a := range t.Attempts {
			c.Attempts[i] = a.CloneVT()
		}
	}
	return c
}

func stamp(t *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: t.Seconds, Nanos: t.Nanos}
}
