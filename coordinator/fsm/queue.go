package fsm

import (
	"container/heap"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/gantryci/gantry/internal/capability"
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
	// Only live jobs have blocked tasks: walk them, not every job.
	for _, id := range f.state.order.liveInOrder() {
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

// PendingTask is a runnable task waiting for an agent.
type PendingTask struct {
	Key      TaskKey
	JobName  string
	Priority int32
	Spec     *gv1.TaskSpec
	Attempt  int32 // current attempt; the next assignment is Attempt+1
	QueuedAt int64 // unix nanoseconds
	// RunnableAt is when the task is runnable from (unix nanoseconds), as
	// Apply decided when it queued the task (Task.runnable_at): the
	// scheduler places it no earlier and takes tasks in this order.
	RunnableAt int64
	// NotBefore is the end of a retry's backoff (unix nanoseconds), zero
	// when none; when set, RunnableAt is the same time.
	NotBefore   int64
	AvoidAgents []string
	// Class groups the tasks that fit the same agents (EachPending).
	Class string
}

// Pending returns the pending tasks in the order the scheduler takes them,
// which is the order the queue view lists them in: highest priority first,
// then the longest runnable (RunnableAt; a task in its retry backoff is
// runnable later), then by job and task.
func (f *FSM) Pending() []PendingTask {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]PendingTask, 0, len(f.state.pending))
	f.state.queue.Ascend(func(q queueEntry) bool {
		out = append(out, f.state.pendingTask(q))
		return true
	})
	return out
}

// EachPending visits the pending tasks in the order of Pending until visit
// returns false. visit gets the task's class (its labels, the capability it
// needs and its concurrency key: tasks of one class fit the same agents)
// and a function that builds the task, so that a scheduling pass pays
// only for the tasks it looks at.
func (f *FSM) EachPending(visit func(class string, task func() PendingTask) bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.state.queue.Ascend(func(q queueEntry) bool {
		return visit(q.class, func() PendingTask { return f.state.pendingTask(q) })
	})
}

// EachPendingByClass visits the pending tasks in the order of Pending, like
// EachPending, until visit returns more == false; when it returns
// classDone, no other task of that class is visited. A scheduling pass
// that gives up on a class (no agent fits it) so pays for the tasks it
// looks at, not for the depth of the classes it skips.
func (f *FSM) EachPendingByClass(visit func(class string, task func() PendingTask) (more, classDone bool)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h := make(classHeads, 0, len(f.state.classes))
	for _, c := range f.state.classes {
		if q, ok := c.Min(); ok {
			h = append(h, q)
		}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		q := h[0]
		more, done := visit(q.class, func() PendingTask { return f.state.pendingTask(q) })
		if !more {
			return
		}
		next, ok := queueEntry{}, false
		if !done {
			f.state.classes[q.class].AscendGreaterOrEqual(q, func(e queueEntry) bool {
				if e.key == q.key {
					return true
				}
				next, ok = e, true
				return false
			})
		}
		if ok {
			h[0] = next
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
}

// classHeads is a min-heap of each class's first unvisited entry.
type classHeads []queueEntry

func (h classHeads) Len() int           { return len(h) }
func (h classHeads) Less(i, j int) bool { return queueLess(h[i], h[j]) }
func (h classHeads) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *classHeads) Push(x any)        { *h = append(*h, x.(queueEntry)) }
func (h *classHeads) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// PendingCount is how many tasks are pending.
func (f *FSM) PendingCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.pending)
}

// PendingDepth counts the pending tasks by label set (LabelKey).
func (f *FSM) PendingDepth() map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.state.depth)
}

// ClassOf is the class of a task with spec (PendingTask.Class): tasks of
// one class fit the same agents.
func ClassOf(spec *gv1.TaskSpec) string {
	return classOf(LabelKey(spec.GetLabels()), spec)
}

func classOf(labels string, spec *gv1.TaskSpec) string {
	return labels + "|" + capability.For(spec) + "|" + spec.GetConcurrency()
}

// ClassPending reports whether tasks of class are pending.
func (f *FSM) ClassPending(class string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.classes[class] != nil
}

// queueEntry is a pending task's place in the queue: by priority (higher
// first), then runnable time, then job and task.
type queueEntry struct {
	priority int32
	runnable int64
	key      TaskKey
	labels   string // LabelKey of the task's labels
	class    string // labels, capability and concurrency key
}

func queueLess(a, b queueEntry) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	if a.runnable != b.runnable {
		return a.runnable < b.runnable
	}
	if a.key.JobID != b.key.JobID {
		return a.key.JobID < b.key.JobID
	}
	return a.key.Task < b.key.Task
}

func (s *state) pendingTask(q queueEntry) PendingTask {
	j := s.jobs[q.key.JobID]
	t := s.task(j, q.key.Task)
	p := PendingTask{
		Key:        q.key,
		JobName:    j.Spec.GetName(),
		Priority:   j.Spec.GetPriority(),
		Spec:       t.Spec,
		Attempt:    t.Attempt,
		QueuedAt:   t.QueuedAt.AsTime().UnixNano(),
		RunnableAt: t.RunnableAt.AsTime().UnixNano(),
		Class:      q.class,
	}
	if t.NotBefore != nil {
		p.NotBefore = t.NotBefore.AsTime().UnixNano()
	}
	for _, a := range t.Attempts {
		if a.Failure == gv1.FailureClass_FAILURE_CLASS_INFRA {
			p.AvoidAgents = append(p.AvoidAgents, a.Agent)
		}
	}
	return p
}

// LabelKey renders labels as sorted k=v pairs, comma-separated.
func LabelKey(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
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
// maxJobs is zero). An attempt's wait starts at the runnable time Apply
// recorded for it (Attempt.runnable_at); attempts assigned before that was
// recorded have none and give no sample.
func (f *FSM) RecentStarts(since time.Time, maxJobs int) []StartSample {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []StartSample
	seen := 0
	f.state.order.eachNewest(func(id string, _ []byte) bool {
		if maxJobs > 0 && seen >= maxJobs {
			return false
		}
		seen++
		j, _ := f.state.job(id)
		for _, t := range j.Tasks {
			for _, a := range t.Attempts {
				if a.StartedAt == nil || a.RunnableAt == nil {
					continue
				}
				started := a.StartedAt.AsTime()
				if started.Before(since) {
					continue
				}
				out = append(out, StartSample{Labels: t.Spec.GetLabels(), StartedAt: started, Wait: max(started.Sub(a.RunnableAt.AsTime()), 0)})
			}
		}
		return true
	})
	return out
}

// fillRunnable gives the pending tasks of a job restored from a snapshot
// written before Apply recorded runnable_at the time the scheduler then
// used: the later of queued_at and not_before.
func fillRunnable(j *gv1.Job) {
	for _, t := range j.Tasks {
		if t.State != gv1.TaskState_TASK_STATE_PENDING || t.RunnableAt != nil {
			continue
		}
		t.RunnableAt = t.QueuedAt
		if t.NotBefore != nil && t.NotBefore.AsTime().After(t.QueuedAt.AsTime()) {
			t.RunnableAt = t.NotBefore
		}
	}
}
