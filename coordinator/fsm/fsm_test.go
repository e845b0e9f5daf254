package fsm_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const (
	blocked   = gv1.TaskState_TASK_STATE_BLOCKED
	pending   = gv1.TaskState_TASK_STATE_PENDING
	assigned  = gv1.TaskState_TASK_STATE_ASSIGNED
	running   = gv1.TaskState_TASK_STATE_RUNNING
	succeeded = gv1.TaskState_TASK_STATE_SUCCEEDED
	failed    = gv1.TaskState_TASK_STATE_FAILED
	canceled  = gv1.TaskState_TASK_STATE_CANCELED
	skipped   = gv1.TaskState_TASK_STATE_SKIPPED

	jobPending   = gv1.JobState_JOB_STATE_PENDING
	jobRunning   = gv1.JobState_JOB_STATE_RUNNING
	jobSucceeded = gv1.JobState_JOB_STATE_SUCCEEDED
	jobFailed    = gv1.JobState_JOB_STATE_FAILED
	jobCanceled  = gv1.JobState_JOB_STATE_CANCELED
)

func TestSubmit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	j := newJob("j1", "", 7,
		spec("a"),
		spec("b", "a"),
		withConcurrency(spec("c", "a", "b"), "deploy"),
		spec("d"),
	)
	r := h.ok(submitCmd(10, proto.Clone(j).(*gv1.Job)))
	if r.JobID != "j1" || r.Existing || r.Canceled != nil {
		t.Fatalf("submit result = %+v, want JobID j1, not existing", r)
	}

	want := proto.Clone(j).(*gv1.Job)
	want.State = jobPending
	want.CreatedAt = ts(10)
	want.Version = 1
	for _, tk := range want.Tasks {
		if len(tk.Spec.Needs) == 0 {
			tk.State = pending
			tk.QueuedAt = ts(10)
			tk.RunnableAt = ts(10)
		} else {
			tk.State = blocked
		}
	}
	assertProto(t, "submitted job", h.job("j1"), want)

	if v, ok := h.f.JobVersion("j1"); !ok || v != 1 {
		t.Errorf("JobVersion(j1) = %d, %v; want 1, true", v, ok)
	}
	if got := h.f.AppliedIndex(); got != 1 {
		t.Errorf("AppliedIndex() = %d, want 1", got)
	}
	p := h.f.Pending()
	if len(p) != 2 {
		t.Fatalf("Pending() = %+v, want a and d", p)
	}
	for i, name := range []string{"a", "d"} {
		got := p[i]
		if got.Key != (fsm.TaskKey{JobID: "j1", Task: name}) || got.JobName != "pipeline-j1" || got.Priority != 7 ||
			got.Attempt != 0 || got.QueuedAt != nanos(10) || got.RunnableAt != nanos(10) || got.NotBefore != 0 || got.AvoidAgents != nil {
			t.Errorf("Pending()[%d] = %+v", i, got)
		}
		if !proto.Equal(got.Spec, j.Tasks[map[string]int{"a": 0, "d": 3}[name]].Spec) {
			t.Errorf("Pending()[%d].Spec = %v", i, got.Spec)
		}
	}
	if a := h.f.Active(); len(a) != 0 {
		t.Errorf("Active() = %v, want none", a)
	}
	jobs, tasks := h.f.Counts()
	if !reflect.DeepEqual(jobs, map[gv1.JobState]int{jobPending: 1}) ||
		!reflect.DeepEqual(tasks, map[gv1.TaskState]int{pending: 2, blocked: 2}) {
		t.Errorf("Counts() = %v, %v", jobs, tasks)
	}
}

func TestSubmitIdempotency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sameLog bool
	}{
		{"separate entries", false},
		{"one batch", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			first := submitCmd(1, newJob("j1", "key-1", 0, spec("a")))
			again := submitCmd(2, newJob("j2", "key-1", 0, spec("a"), spec("b")))
			other := submitCmd(3, newJob("j3", "key-2", 0, spec("a")))
			var res []fsm.Result
			if tt.sameLog {
				res = h.apply(first, again, other)
			} else {
				res = []fsm.Result{h.one(first), h.one(again), h.one(other)}
			}
			// Each result names the entry it was applied in.
			want := []fsm.Result{{JobID: "j1", Index: 1}, {JobID: "j1", Existing: true, Index: 2}, {JobID: "j3", Index: 3}}
			if tt.sameLog {
				want[1].Index, want[2].Index = 1, 1
			}
			if !reflect.DeepEqual(res, want) {
				t.Fatalf("results = %+v, want %+v", res, want)
			}
			if _, ok := h.f.Job("j2"); ok {
				t.Error("the repeated submit created job j2")
			}
			if got := len(h.job("j1").Tasks); got != 1 {
				t.Errorf("job j1 has %d tasks, want the first submit's 1", got)
			}
			if n := len(h.f.Jobs(nil, 0)); n != 2 {
				t.Errorf("%d jobs, want 2", n)
			}
			checkIndexes(t, h.f)
		})
	}
}

func TestSubmitRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"))))
	tests := []struct {
		name string
		cmd  *gv1.Command
		want error
	}{
		{"no id", submitCmd(2, newJob("", "", 0, spec("a"))), fsm.ErrInvalid},
		{"no tasks", submitCmd(2, newJob("j2", "", 0)), fsm.ErrInvalid},
		{"no job", &gv1.Command{At: ts(2), Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{}}}, fsm.ErrInvalid},
		{"id exists", submitCmd(2, newJob("j1", "k", 0, spec("x"))), fsm.ErrConflict},
	}
	for _, tt := range tests {
		// Not parallel: the cases share one FSM.
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			h.refused(tt.cmd, "j1", tt.want)
		})
	}
	h.t = t
	// The refused submit with key "k" did not record the key.
	if r := h.ok(submitCmd(3, newJob("j3", "k", 0, spec("a")))); r.JobID != "j3" || r.Existing {
		t.Errorf("submit with key of a refused submit = %+v, want new job j3", r)
	}
}

func TestAssign(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, withConcurrency(spec("a"), "k"), spec("b", "a"))))
	tests := []struct {
		name string
		cmd  *gv1.Command
		want error
	}{
		{"attempt 0", assignCmd(2, "j1", "a", 0, "ag1"), fsm.ErrStaleAttempt},
		{"attempt 2", assignCmd(2, "j1", "a", 2, "ag1"), fsm.ErrStaleAttempt},
		{"blocked task", assignCmd(2, "j1", "b", 1, "ag1"), fsm.ErrConflict},
		{"no agent", assignCmd(2, "j1", "a", 1, ""), fsm.ErrInvalid},
		{"unknown job", assignCmd(2, "nope", "a", 1, "ag1"), fsm.ErrNotFound},
		{"unknown task", assignCmd(2, "j1", "nope", 1, "ag1"), fsm.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			h.refused(tt.cmd, "j1", tt.want)
		})
	}
	h.t = t

	r := h.ok(assignCmd(5, "j1", "a", 1, "ag1"))
	if r.JobID != "j1" {
		t.Errorf("assign JobID = %q", r.JobID)
	}
	got := h.task("j1", "a")
	want := &gv1.Task{
		Name:       "a",
		Spec:       got.Spec,
		State:      assigned,
		Attempt:    1,
		Agent:      "ag1",
		QueuedAt:   ts(1),
		RunnableAt: ts(1),
		Attempts:   []*gv1.Attempt{{Number: 1, Agent: "ag1", AssignedAt: ts(5), RunnableAt: ts(1)}},
	}
	assertProto(t, "assigned task", got, want)
	h.wantJobState("j1", jobRunning)
	if v, _ := h.f.JobVersion("j1"); v != h.index {
		t.Errorf("job version = %d, want %d", v, h.index)
	}
	if !reflect.DeepEqual(h.f.AgentLoad(), map[string]int{"ag1": 1}) {
		t.Errorf("AgentLoad() = %v", h.f.AgentLoad())
	}
	if !reflect.DeepEqual(h.f.BusyConcurrency(), map[string]bool{"k": true}) {
		t.Errorf("BusyConcurrency() = %v", h.f.BusyConcurrency())
	}
	if p := h.f.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %+v, want none", p)
	}
	if !h.f.IsCurrent(ref("j1", "a", 1)) || h.f.IsCurrent(ref("j1", "a", 2)) || h.f.IsCurrent(ref("j1", "b", 0)) || h.f.IsCurrent(ref("x", "a", 1)) {
		t.Error("IsCurrent disagrees with the lease of j1/a#1")
	}

	// An assigned task cannot be assigned again, whatever the attempt.
	h.refused(assignCmd(6, "j1", "a", 2, "ag2"), "j1", fsm.ErrConflict)
	h.refused(assignCmd(6, "j1", "a", 1, "ag2"), "j1", fsm.ErrConflict)
}

func TestConcurrencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, withConcurrency(spec("deploy"), "prod"))))
	h.ok(submitCmd(2, newJob("j2", "", 0, withConcurrency(spec("deploy"), "prod"), withConcurrency(spec("other"), "staging"))))

	h.ok(assignCmd(3, "j1", "deploy", 1, "ag1"))
	h.refused(assignCmd(4, "j2", "deploy", 1, "ag2"), "j2", fsm.ErrConflict)
	// Another key is independent.
	h.ok(assignCmd(4, "j2", "other", 1, "ag2"))
	if want := map[string]bool{"prod": true, "staging": true}; !reflect.DeepEqual(h.f.BusyConcurrency(), want) {
		t.Errorf("BusyConcurrency() = %v, want %v", h.f.BusyConcurrency(), want)
	}
	// Running keeps the key.
	h.ok(startCmd(5, "j1", "deploy", 1))
	h.refused(assignCmd(6, "j2", "deploy", 1, "ag2"), "j2", fsm.ErrConflict)
	// Finishing releases it.
	h.ok(successCmd(7, "j1", "deploy", 1, "ag1"))
	if want := map[string]bool{"staging": true}; !reflect.DeepEqual(h.f.BusyConcurrency(), want) {
		t.Errorf("BusyConcurrency() after finish = %v, want %v", h.f.BusyConcurrency(), want)
	}
	h.ok(assignCmd(8, "j2", "deploy", 1, "ag2"))

	// A requeue releases it too.
	h.ok(requeueCmd(9, "j2", "deploy", 1, "lost"))
	if h.f.BusyConcurrency()["prod"] {
		t.Error("requeue kept the concurrency key held")
	}
	h.ok(assignCmd(10, "j2", "deploy", 2, "ag3"))
	if !h.f.BusyConcurrency()["prod"] {
		t.Error("reassignment did not take the concurrency key")
	}
}

func TestConcurrencyKeyWithinBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(
		submitCmd(1, newJob("j1", "", 0, withConcurrency(spec("a"), "k"))),
		submitCmd(1, newJob("j2", "", 0, withConcurrency(spec("a"), "k"))),
	)
	res := h.apply(assignCmd(2, "j1", "a", 1, "ag1"), assignCmd(2, "j2", "a", 1, "ag2"))
	if res[0].Err != nil || !errors.Is(res[1].Err, fsm.ErrConflict) {
		t.Fatalf("assign results = %v, %v; want nil, ErrConflict", res[0].Err, res[1].Err)
	}
	h.wantStates("j2", map[string]gv1.TaskState{"a": pending})
	checkIndexes(t, h.f)
}

func TestStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"), spec("b"))))
	// Start before any assignment: attempt 0 is not leased.
	h.refused(startCmd(2, "j1", "a", 0), "j1", fsm.ErrStaleAttempt)
	h.ok(assignCmd(3, "j1", "a", 1, "ag1"))
	h.refused(startCmd(4, "j1", "a", 0), "j1", fsm.ErrStaleAttempt)
	h.refused(startCmd(4, "j1", "a", 2), "j1", fsm.ErrStaleAttempt)
	h.refused(startCmd(4, "j1", "nope", 1), "j1", fsm.ErrNotFound)
	h.refused(startCmd(4, "nope", "a", 1), "j1", fsm.ErrNotFound)

	h.ok(startCmd(5, "j1", "a", 1))
	got := h.task("j1", "a")
	want := &gv1.Task{
		Name:       "a",
		Spec:       got.Spec,
		State:      running,
		Attempt:    1,
		Agent:      "ag1",
		QueuedAt:   ts(1),
		RunnableAt: ts(1),
		StartedAt:  ts(5),
		Attempts:   []*gv1.Attempt{{Number: 1, Agent: "ag1", AssignedAt: ts(3), StartedAt: ts(5), RunnableAt: ts(1)}},
	}
	assertProto(t, "started task", got, want)
	if v, _ := h.f.JobVersion("j1"); v != h.index {
		t.Errorf("job version = %d, want %d", v, h.index)
	}

	// A repeated start is accepted and changes nothing, not even the version.
	before := h.job("j1")
	if r := h.ok(startCmd(6, "j1", "a", 1)); r.Err != nil || r.JobID != "j1" {
		t.Errorf("repeated start = %+v", r)
	}
	assertProto(t, "job after repeated start", h.job("j1"), before)

	// After the attempt ends, a start for it is stale.
	h.ok(successCmd(7, "j1", "a", 1, "ag1"))
	h.refused(startCmd(8, "j1", "a", 1), "j1", fsm.ErrStaleAttempt)
}

func TestFinishSuccessUnblocksDependents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// a -> b, a -> c, (b, c) -> d
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c"))))
	h.wantStates("j1", map[string]gv1.TaskState{"a": pending, "b": blocked, "c": blocked, "d": blocked})
	h.wantJobState("j1", jobPending)

	h.ok(assignCmd(2, "j1", "a", 1, "ag1"))
	h.ok(startCmd(3, "j1", "a", 1))
	h.ok(reportCmd(4, &gv1.Report{Ref: ref("j1", "a", 1), Success: true, Agent: "ag1", Outputs: map[string]string{"sha": "abc"}}))
	a := h.task("j1", "a")
	wantA := &gv1.Task{
		Name: "a", Spec: a.Spec, State: succeeded, Attempt: 1, Agent: "ag1",
		QueuedAt: ts(1), RunnableAt: ts(1), StartedAt: ts(3), FinishedAt: ts(4),
		Outputs: map[string]string{"sha": "abc"},
		Attempts: []*gv1.Attempt{{
			Number: 1, Agent: "ag1", AssignedAt: ts(2), StartedAt: ts(3), FinishedAt: ts(4), Result: succeeded, RunnableAt: ts(1),
		}},
	}
	assertProto(t, "succeeded task", a, wantA)
	h.wantStates("j1", map[string]gv1.TaskState{"b": pending, "c": pending, "d": blocked})
	if b := h.task("j1", "b"); !proto.Equal(b.QueuedAt, ts(4)) || !proto.Equal(b.RunnableAt, ts(4)) {
		t.Errorf("unblocked task queued at %v, runnable at %v; want both %v", b.QueuedAt.AsTime(), b.RunnableAt.AsTime(), ts(4).AsTime())
	}
	h.wantJobState("j1", jobRunning)

	// An assigned (never started) task may report success too.
	h.ok(assignCmd(5, "j1", "b", 1, "ag1"))
	h.ok(successCmd(6, "j1", "b", 1, ""))
	h.wantStates("j1", map[string]gv1.TaskState{"b": succeeded, "c": pending, "d": blocked})

	h.ok(assignCmd(7, "j1", "c", 1, "ag2"))
	h.ok(startCmd(8, "j1", "c", 1))
	h.ok(successCmd(9, "j1", "c", 1, "ag2"))
	h.wantStates("j1", map[string]gv1.TaskState{"c": succeeded, "d": pending})
	if h.job("j1").FinishedAt != nil {
		t.Error("job finished before its last task")
	}

	h.ok(assignCmd(10, "j1", "d", 1, "ag1"))
	h.ok(startCmd(11, "j1", "d", 1))
	h.ok(successCmd(12, "j1", "d", 1, "ag1"))
	j := h.job("j1")
	if j.State != jobSucceeded || !proto.Equal(j.FinishedAt, ts(12)) || j.Version != h.index {
		t.Errorf("job = state %v finished %v version %d; want SUCCEEDED at %v version %d", j.State, j.FinishedAt, j.Version, ts(12), h.index)
	}
	if len(h.f.AgentLoad()) != 0 || len(h.f.Active()) != 0 || len(h.f.Pending()) != 0 {
		t.Errorf("indexes not empty after the job: load %v active %v pending %v", h.f.AgentLoad(), h.f.Active(), h.f.Pending())
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n          int32
		job, infra time.Duration
	}{
		{1, time.Second, 0},
		{2, 2 * time.Second, 500 * time.Millisecond},
		{3, 4 * time.Second, time.Second},
		{4, 8 * time.Second, 2 * time.Second},
		{6, 32 * time.Second, 8 * time.Second},
		{7, time.Minute, 16 * time.Second},
		{8, time.Minute, 30 * time.Second},
		{100, time.Minute, 30 * time.Second},
	}
	for _, tt := range tests {
		if got := fsm.JobBackoff(tt.n); got != tt.job {
			t.Errorf("JobBackoff(%d) = %v, want %v", tt.n, got, tt.job)
		}
		if got := fsm.InfraBackoff(tt.n); got != tt.infra {
			t.Errorf("InfraBackoff(%d) = %v, want %v", tt.n, got, tt.infra)
		}
	}
	if got := fsm.InfraBackoff(0); got != 0 {
		t.Errorf("InfraBackoff(0) = %v, want 0", got)
	}
}

func TestFinalStates(t *testing.T) {
	t.Parallel()
	for s := range gv1.TaskState_name {
		st := gv1.TaskState(s)
		want := st == succeeded || st == failed || st == canceled || st == skipped
		if got := fsm.TaskFinal(st); got != want {
			t.Errorf("TaskFinal(%v) = %v, want %v", st, got, want)
		}
	}
	for s := range gv1.JobState_name {
		st := gv1.JobState(s)
		want := st == jobSucceeded || st == jobFailed || st == jobCanceled
		if got := fsm.JobFinal(st); got != want {
			t.Errorf("JobFinal(%v) = %v, want %v", st, got, want)
		}
	}
}

func TestJobsAccessor(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"))))
	h.ok(submitCmd(2, newJob("j2", "", 0, spec("a"))))
	h.ok(submitCmd(3, newJob("j3", "", 0, spec("a"))))
	h.ok(cancelCmd(4, "j2", ""))
	h.ok(assignCmd(5, "j3", "a", 1, "ag"))

	ids := func(js []*gv1.Job) []string {
		var out []string
		for _, j := range js {
			out = append(out, j.Id)
		}
		return out
	}
	tests := []struct {
		name   string
		states []gv1.JobState
		limit  int
		want   []string
	}{
		{"all", nil, 0, []string{"j3", "j2", "j1"}},
		{"limit", nil, 2, []string{"j3", "j2"}},
		{"pending", []gv1.JobState{jobPending}, 0, []string{"j1"}},
		{"running or canceled", []gv1.JobState{jobRunning, jobCanceled}, 0, []string{"j3", "j2"}},
		{"filter and limit", []gv1.JobState{jobRunning, jobCanceled}, 1, []string{"j3"}},
		{"none", []gv1.JobState{jobSucceeded}, 0, nil},
	}
	for _, tt := range tests {
		if got := ids(h.f.Jobs(tt.states, tt.limit)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Jobs() = %v, want %v", tt.name, got, tt.want)
		}
	}

	// Accessors return copies.
	j := h.job("j1")
	j.State = jobFailed
	j.Tasks[0].State = failed
	h.f.Jobs(nil, 0)[0].Tasks[0].Agent = "mutated"
	h.wantJobState("j1", jobPending)
	h.wantStates("j1", map[string]gv1.TaskState{"a": pending})
	if got := h.task("j3", "a").Agent; got != "ag" {
		t.Errorf("Jobs() returned the live job: agent now %q", got)
	}
	if _, ok := h.f.Job("nope"); ok {
		t.Error("Job(nope) found")
	}
	if _, ok := h.f.JobVersion("nope"); ok {
		t.Error("JobVersion(nope) found")
	}
}

func TestPendingOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("low", "", -5, spec("a"))))
	h.ok(submitCmd(2, newJob("old", "", 10, spec("b"), spec("a"))))
	h.ok(submitCmd(3, newJob("new", "", 10, spec("a"))))
	h.apply(submitCmd(0, newJob("early", "", 0, spec("a")))) // older time, later entry
	var got []fsm.TaskKey
	for _, p := range h.f.Pending() {
		got = append(got, p.Key)
	}
	want := []fsm.TaskKey{{"old", "a"}, {"old", "b"}, {"new", "a"}, {"early", "a"}, {"low", "a"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Pending() order = %v, want %v", got, want)
	}
}

func TestApplyNonCommandEntry(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	if got := f.Apply(&raft.Log{Index: 1, Type: raft.LogNoop}); got != nil {
		t.Errorf("Apply(noop) = %v, want nil", got)
	}
}

func TestJobsPageCountsAndBoundsSize(t *testing.T) {
	h := newHarness(t)
	for i := range 30 {
		h.ok(submitCmd(i, newJob(fmt.Sprintf("j%02d", i), "", 0, spec("t"))))
	}
	h.ok(cancelCmd(40, "j00", "test"))
	pending := []gv1.JobState{gv1.JobState_JOB_STATE_PENDING}
	jobs, total, truncated := h.f.JobsPage(pending, 5, 0, gv1.JobView_JOB_VIEW_FULL)
	if len(jobs) != 5 || total != 29 || truncated || jobs[0].Id != "j29" {
		t.Errorf("limit 5: %d jobs (first %s), total %d, truncated %v; want 5 from j29, 29, false", len(jobs), jobs[0].Id, total, truncated)
	}
	one := proto.Size(h.job("j01"))
	jobs, total, truncated = h.f.JobsPage(nil, 0, 3*one+30, gv1.JobView_JOB_VIEW_FULL)
	if len(jobs) != 3 || total != 30 || !truncated {
		t.Errorf("byte bound of about 3 jobs: %d jobs, total %d, truncated %v", len(jobs), total, truncated)
	}
	// The basic view is counted at its own size: more jobs fit.
	jobs, _, _ = h.f.JobsPage(nil, 0, 3*one+30, gv1.JobView_JOB_VIEW_BASIC)
	if len(jobs) <= 3 {
		t.Errorf("byte bound of about 3 whole jobs, basic view: %d jobs, want more", len(jobs))
	}
}

// JOB_VIEW_BASIC is the job without its tasks' specs, live or ended (an
// ended job is sealed), in a page and alone; any other view is the whole job.
func TestJobViewBasic(t *testing.T) {
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("live", "", 3, spec("a"), spec("b", "a"))))
	h.ok(assignCmd(2, "live", "a", 1, "ag"))
	h.ok(submitCmd(3, newJob("ended", "", 0, spec("a"))))
	h.ok(assignCmd(4, "ended", "a", 1, "ag"))
	h.ok(successCmd(5, "ended", "a", 1, "ag"))
	h.wantJobState("ended", gv1.JobState_JOB_STATE_SUCCEEDED)
	basic := func(j *gv1.Job) *gv1.Job {
		j.Spec.Tasks = nil
		for _, t := range j.Tasks {
			t.Spec = nil
		}
		return j
	}
	page, _, _ := h.f.JobsPage(nil, 0, 0, gv1.JobView_JOB_VIEW_BASIC)
	if len(page) != 2 {
		t.Fatalf("page of %d jobs, want 2", len(page))
	}
	for i, id := range []string{"ended", "live"} {
		want := basic(h.job(id))
		got, ok := h.f.JobIn(id, gv1.JobView_JOB_VIEW_BASIC)
		if !ok {
			t.Fatalf("JobIn(%s): not found", id)
		}
		assertProto(t, "basic view of "+id, got, want)
		assertProto(t, "page's basic view of "+id, page[i], want)
		if got.Spec.GetPriority() != h.job(id).Spec.GetPriority() || got.Tasks[0].GetState() == gv1.TaskState_TASK_STATE_UNSPECIFIED {
			t.Errorf("basic view of %s lost more than the specs: %v", id, got)
		}
		for _, v := range []gv1.JobView{gv1.JobView_JOB_VIEW_UNSPECIFIED, gv1.JobView_JOB_VIEW_FULL, gv1.JobView(99)} {
			full, _ := h.f.JobIn(id, v)
			assertProto(t, "view "+v.String()+" of "+id, full, h.job(id))
		}
	}
	if _, ok := h.f.JobIn("none", gv1.JobView_JOB_VIEW_BASIC); ok {
		t.Error("JobIn(none): found")
	}
}

func TestSettled(t *testing.T) {
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"), spec("b"))))
	h.ok(assignCmd(2, "j1", "a", 1, "ag"))
	if !h.f.Settled(ref("j1", "a", 1)) {
		t.Fatal("an applied assignment: want settled")
	}
	if h.f.Settled(ref("j1", "b", 1)) {
		t.Fatal("a live job's task never assigned: want not settled (its reservation holds a slot)")
	}
	h.ok(successCmd(3, "j1", "a", 1, "ag"))
	h.ok(cancelCmd(4, "j1", "done"))
	h.wantJobState("j1", gv1.JobState_JOB_STATE_CANCELED)
	if !h.f.Settled(ref("j1", "b", 1)) {
		t.Fatal("an ended job's task: want settled (nothing of the job holds a slot)")
	}
}
