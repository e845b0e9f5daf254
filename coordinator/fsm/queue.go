package fsm

import (
	"sort"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// BlockedTask is a task waiting for the tasks it needs.
type BlockedTask struct {
	Key       TaskKey
	JobName   string
	Priority  int32
	Spec      *gv1.TaskSpec
	CreatedAt time.Time // when its job was submitted
	// Unmet lists the needs that have not succeeded yet, in spec order.
	Unmet []string
}

// Blocked returns the blocked tasks, highest priority first, oldest job
// first within a priority.
func (f *FSM) Blocked() []BlockedTask {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []BlockedTask
	for _, id := range f.state.order {
		j := f.state.jobs[id]
		if JobFinal(j.State) {
			continue
		}
		var done map[string]bool
		for _, t := range j.Tasks {
			if t.State != gv1.TaskState_TASK_STATE_BLOCKED {
				continue
			}
			if done == nil {
				done = map[string]bool{}
				for _, d := range j.Tasks {
					done[d.Name] = d.State == gv1.TaskState_TASK_STATE_SUCCEEDED
				}
			}
			b := BlockedTask{
				Key:       TaskKey{j.Id, t.Name},
				JobName:   j.Spec.GetName(),
				Priority:  j.Spec.GetPriority(),
				Spec:      t.Spec,
				CreatedAt: j.CreatedAt.AsTime(),
			}
			for _, n := range t.Spec.GetNeeds() {
				if !done[n] {
					b.Unmet = append(b.Unmet, n)
				}
			}
			out = append(out, b)
		}
	}
	// order is oldest first already; a stable sort keeps it within a priority.
	sort.SliceStable(out, func(a, b int) bool { return out[a].Priority > out[b].Priority })
	return out
}

// StartSample is one attempt's schedule-to-start latency: from the moment
// its task was runnable (queued, and past any retry backoff) to its start.
type StartSample struct {
	Labels    map[string]string
	StartedAt time.Time
	Wait      time.Duration
}

// RecentStarts returns the schedule-to-start latency of the attempts that
// started at or after since, looking at the newest maxJobs jobs (all when
// maxJobs is zero).
//
// The time a task became runnable is not stored per attempt; it is derived
// the way Apply set it: the first attempt was queued when its job was
// submitted (no needs) or when its last need succeeded, a retry when the
// previous attempt ended, plus that retry's backoff.
func (f *FSM) RecentStarts(since time.Time, maxJobs int) []StartSample {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []StartSample
	for i, seen := len(f.state.order)-1, 0; i >= 0 && (maxJobs <= 0 || seen < maxJobs); i, seen = i-1, seen+1 {
		j := f.state.jobs[f.state.order[i]]
		for _, t := range j.Tasks {
			var jobFailures, infraFailures int32
			for n, a := range t.Attempts {
				if n > 0 {
					switch t.Attempts[n-1].Failure {
					case gv1.FailureClass_FAILURE_CLASS_INFRA:
						infraFailures++
					case gv1.FailureClass_FAILURE_CLASS_JOB:
						jobFailures++
					}
				}
				if a.StartedAt == nil {
					continue
				}
				started := a.StartedAt.AsTime()
				if started.Before(since) {
					continue
				}
				ready, ok := runnableAt(j, t, n, jobFailures, infraFailures)
				if !ok {
					continue
				}
				out = append(out, StartSample{Labels: t.Spec.GetLabels(), StartedAt: started, Wait: max(started.Sub(ready), 0)})
			}
		}
	}
	return out
}

// runnableAt derives when attempt n (0-based) of t became runnable; the
// failure counts are those of the attempts before it.
func runnableAt(j *gv1.Job, t *gv1.Task, n int, jobFailures, infraFailures int32) (time.Time, bool) {
	if n > 0 {
		prev := t.Attempts[n-1]
		if prev.FinishedAt == nil {
			return time.Time{}, false
		}
		at := prev.FinishedAt.AsTime()
		if prev.Failure == gv1.FailureClass_FAILURE_CLASS_INFRA {
			return at.Add(InfraBackoff(infraFailures)), true
		}
		return at.Add(JobBackoff(jobFailures)), true
	}
	if len(t.Spec.GetNeeds()) == 0 {
		return j.CreatedAt.AsTime(), j.CreatedAt != nil
	}
	var last time.Time
	for _, name := range t.Spec.GetNeeds() {
		for _, d := range j.Tasks {
			if d.Name == name {
				if d.FinishedAt == nil {
					return time.Time{}, false
				}
				last = maxTime(last, d.FinishedAt.AsTime())
			}
		}
	}
	return last, !last.IsZero()
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
