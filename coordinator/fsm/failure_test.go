package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const (
	jobFailure   = gv1.FailureClass_FAILURE_CLASS_JOB
	infraFailure = gv1.FailureClass_FAILURE_CLASS_INFRA
)

func TestJobFailureRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, withRetries(spec("a"), 2), spec("b", "a"), spec("c"))))

	var wantAttempts []*gv1.Attempt
	sec := 10
	runnable := ts(1) // of the attempt about to be assigned
	for n := int32(1); n <= 3; n++ {
		agent := fmt.Sprintf("ag%d", n)
		h.ok(assignCmd(sec, "j1", "a", n, agent))
		if nb := h.task("j1", "a").NotBefore; nb != nil {
			t.Errorf("attempt %d: assignment kept NotBefore %v", n, nb.AsTime())
		}
		h.ok(startCmd(sec+1, "j1", "a", n))
		// Failure class UNSPECIFIED counts as a job failure.
		h.ok(reportCmd(sec+2, &gv1.Report{Ref: ref("j1", "a", n), ExitCode: 3, Error: "exit status 3", Agent: agent}))
		wantAttempts = append(wantAttempts, &gv1.Attempt{
			Number: n, Agent: agent, AssignedAt: ts(sec), StartedAt: ts(sec + 1), FinishedAt: ts(sec + 2),
			Result: failed, Failure: jobFailure, ExitCode: 3, Error: "exit status 3", RunnableAt: runnable,
		})
		got := h.task("j1", "a")
		want := &gv1.Task{
			Name: "a", Spec: got.Spec, Attempt: n, JobFailures: n,
			RunnableAt: runnable, StartedAt: ts(sec + 1), FinishedAt: ts(sec + 2),
			ExitCode: 3, Error: "exit status 3", Failure: jobFailure,
			Attempts: wantAttempts,
		}
		if n <= 2 {
			want.State = pending
			want.QueuedAt = ts(sec + 2)
			delay := []time.Duration{time.Second, 2 * time.Second}[n-1] // JobBackoff(n)
			want.NotBefore = timestamppb.New(ts(sec + 2).AsTime().Add(delay))
			want.RunnableAt = want.NotBefore
			runnable = want.NotBefore
			h.wantStates("j1", map[string]gv1.TaskState{"b": blocked})
			h.wantJobState("j1", jobRunning)
			p := h.f.Pending()
			if len(p) != 2 || p[1].Key.Task != "a" || p[1].Attempt != n || p[1].NotBefore != want.NotBefore.AsTime().UnixNano() ||
				p[1].RunnableAt != p[1].NotBefore || p[1].QueuedAt != nanos(sec+2) || p[1].AvoidAgents != nil {
				t.Errorf("attempt %d: Pending() = %+v", n, p)
			}
		} else {
			want.State = failed
			want.Agent = agent
			want.QueuedAt = ts(sec - 8)
		}
		assertProto(t, fmt.Sprintf("task a after failure %d", n), got, want)
		sec += 10
	}
	// Retries exhausted: the dependent is skipped, the job waits for c.
	b := h.task("j1", "b")
	if b.State != skipped || !proto.Equal(b.FinishedAt, ts(32)) {
		t.Errorf("dependent b = %v finished %v, want SKIPPED at %v", b.State, b.FinishedAt, ts(32))
	}
	h.wantJobState("j1", jobRunning)
	h.ok(assignCmd(40, "j1", "c", 1, "ag1"))
	h.ok(successCmd(41, "j1", "c", 1, "ag1"))
	j := h.job("j1")
	if j.State != jobFailed || !proto.Equal(j.FinishedAt, ts(41)) {
		t.Errorf("job = %v finished %v, want FAILED at %v", j.State, j.FinishedAt, ts(41))
	}
}

func TestJobFailureSkipsTransitively(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// a -> b -> c; d needs a and e; e is independent.
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"), spec("b", "a"), spec("c", "b"), spec("d", "e", "a"), spec("e"))))
	h.ok(assignCmd(2, "j1", "a", 1, "ag"))
	h.ok(failCmd(3, "j1", "a", 1, "ag"))
	h.wantStates("j1", map[string]gv1.TaskState{"a": failed, "b": skipped, "c": skipped, "d": skipped, "e": pending})
	h.wantJobState("j1", jobRunning)
	h.ok(assignCmd(4, "j1", "e", 1, "ag"))
	h.ok(failCmd(5, "j1", "e", 1, "ag"))
	h.wantJobState("j1", jobFailed)
	if f := h.job("j1").FinishedAt; !proto.Equal(f, ts(5)) {
		t.Errorf("job finished at %v, want %v", f, ts(5))
	}
}

func TestInfraRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"), spec("b", "a"))))
	var avoid []string
	sec := 10
	for n := int32(1); n <= fsm.MaxInfraRetries+1; n++ {
		agent := fmt.Sprintf("ag%d", n)
		h.ok(assignCmd(sec, "j1", "a", n, agent))
		h.ok(startCmd(sec+1, "j1", "a", n))
		if n%2 == 0 {
			h.ok(requeueCmd(sec+2, "j1", "a", n, "agent lost"))
		} else {
			// An agent's own report of an infrastructure failure counts the same.
			h.ok(reportCmd(sec+2, &gv1.Report{Ref: ref("j1", "a", n), Failure: infraFailure, Error: "agent lost", Agent: agent}))
		}
		avoid = append(avoid, agent)
		got := h.task("j1", "a")
		if got.InfraFailures != n || got.JobFailures != 0 || got.Failure != infraFailure || got.Error != "agent lost" {
			t.Errorf("failure %d: task = %v", n, got)
		}
		last := got.Attempts[len(got.Attempts)-1]
		if last.Failure != infraFailure || last.Result != failed || !proto.Equal(last.FinishedAt, ts(sec+2)) || last.Agent != agent {
			t.Errorf("failure %d: attempt record = %v", n, last)
		}
		if n <= fsm.MaxInfraRetries {
			if got.State != pending || got.Agent != "" {
				t.Errorf("failure %d: state %v agent %q, want PENDING with no agent", n, got.State, got.Agent)
			}
			var wantNB int64
			if d := fsm.InfraBackoff(n); d > 0 {
				wantNB = ts(sec + 2).AsTime().Add(d).UnixNano()
			}
			if (got.NotBefore == nil) != (wantNB == 0) {
				t.Errorf("failure %d: NotBefore = %v, want %d", n, got.NotBefore, wantNB)
			}
			p := h.f.Pending()
			if len(p) != 1 || p[0].NotBefore != wantNB || !reflect.DeepEqual(p[0].AvoidAgents, avoid) || p[0].Attempt != n {
				t.Errorf("failure %d: Pending() = %+v, want NotBefore %d AvoidAgents %v", n, p, wantNB, avoid)
			}
			h.wantJobState("j1", jobRunning)
		} else {
			if got.State != failed {
				t.Errorf("failure %d: state %v, want FAILED", n, got.State)
			}
			h.wantStates("j1", map[string]gv1.TaskState{"b": skipped})
			h.wantJobState("j1", jobFailed)
		}
		sec += 10
	}
	if len(h.f.Pending()) != 0 || len(h.f.AgentLoad()) != 0 {
		t.Errorf("indexes after failure: pending %v load %v", h.f.Pending(), h.f.AgentLoad())
	}
}

// TestInfraAndJobFailuresCountedApart: infra failures do not use up the
// spec's retries and job failures do not use up infra retries.
func TestInfraAndJobFailuresCountedApart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, withRetries(spec("a"), 1))))
	h.ok(assignCmd(2, "j1", "a", 1, "ag1"))
	h.ok(requeueCmd(3, "j1", "a", 1, "lost"))
	h.ok(assignCmd(4, "j1", "a", 2, "ag2"))
	h.ok(failCmd(5, "j1", "a", 2, "ag2"))
	h.wantStates("j1", map[string]gv1.TaskState{"a": pending})
	// Only the infra failure's agent is avoided.
	if p := h.f.Pending(); len(p) != 1 || !reflect.DeepEqual(p[0].AvoidAgents, []string{"ag1"}) {
		t.Errorf("Pending() = %+v, want AvoidAgents [ag1]", p)
	}
	h.ok(assignCmd(6, "j1", "a", 3, "ag1"))
	h.ok(failCmd(7, "j1", "a", 3, "ag1"))
	h.wantStates("j1", map[string]gv1.TaskState{"a": failed})
	h.wantJobState("j1", jobFailed)
}

func TestStaleReportsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, withRetries(spec("a"), 3), spec("b"))))
	h.ok(assignCmd(2, "j1", "a", 1, "ag1"))
	h.ok(requeueCmd(3, "j1", "a", 1, "lease expired"))
	h.ok(assignCmd(4, "j1", "a", 2, "ag2"))
	h.ok(startCmd(5, "j1", "a", 2))

	tests := []struct {
		name string
		cmd  *gv1.Command
		want error
	}{
		{"old attempt success", successCmd(6, "j1", "a", 1, "ag1"), fsm.ErrStaleAttempt},
		{"old attempt failure", failCmd(6, "j1", "a", 1, "ag1"), fsm.ErrStaleAttempt},
		{"old attempt requeue", requeueCmd(6, "j1", "a", 1, "lost"), fsm.ErrStaleAttempt},
		{"old attempt without agent", successCmd(6, "j1", "a", 1, ""), fsm.ErrStaleAttempt},
		{"future attempt", successCmd(6, "j1", "a", 3, "ag2"), fsm.ErrStaleAttempt},
		{"current attempt from another agent", successCmd(6, "j1", "a", 2, "ag1"), fsm.ErrStaleAttempt},
		{"never assigned task", successCmd(6, "j1", "b", 0, ""), fsm.ErrStaleAttempt},
		{"unknown task", successCmd(6, "j1", "x", 1, ""), fsm.ErrNotFound},
		{"unknown job", successCmd(6, "x", "a", 1, ""), fsm.ErrNotFound},
		{"no report", &gv1.Command{At: ts(6), Cmd: &gv1.Command_FinishTask{FinishTask: &gv1.FinishTaskCommand{}}}, fsm.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			r := h.refused(tt.cmd, "j1", tt.want)
			if tt.want == fsm.ErrStaleAttempt && r.JobID != "j1" {
				t.Errorf("JobID = %q, want j1", r.JobID)
			}
		})
	}
	h.t = t
	h.wantStates("j1", map[string]gv1.TaskState{"a": running})
	// The holder's report, with or without its name, is accepted.
	h.ok(successCmd(7, "j1", "a", 2, "ag2"))
	h.wantStates("j1", map[string]gv1.TaskState{"a": succeeded})
}

func TestDuplicateFinish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		finish func(sec int) *gv1.Command
		state  gv1.TaskState
		again  error // a repeated agent report is a duplicate; a repeated requeue is stale
	}{
		{"success", func(sec int) *gv1.Command { return successCmd(sec, "j1", "a", 1, "ag1") }, succeeded, fsm.ErrDuplicate},
		{"job failure retried", func(sec int) *gv1.Command { return failCmd(sec, "j1", "a", 1, "ag1") }, pending, fsm.ErrDuplicate},
		{"job failure final", func(sec int) *gv1.Command { return failCmd(sec, "j1", "b", 1, "ag1") }, failed, fsm.ErrDuplicate},
		{"requeue", func(sec int) *gv1.Command { return requeueCmd(sec, "j1", "a", 1, "lost") }, pending, fsm.ErrStaleAttempt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.ok(submitCmd(1, newJob("j1", "", 0, withRetries(spec("a"), 1), spec("b"))))
			h.ok(assignCmd(2, "j1", "a", 1, "ag1"))
			h.ok(assignCmd(2, "j1", "b", 1, "ag1"))
			h.ok(startCmd(3, "j1", "a", 1))
			first := tt.finish(4)
			h.ok(first)
			task := first.GetFinishTask().GetReport().GetRef().GetTask()
			if task == "" {
				task = "a"
			}
			h.wantStates("j1", map[string]gv1.TaskState{task: tt.state})
			// The same report again, even later, changes nothing.
			h.refused(first, "j1", tt.again)
			h.refused(tt.finish(9), "j1", tt.again)
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0,
		spec("done"),
		withConcurrency(spec("run"), "k"),
		spec("leased"),
		spec("queued"),
		spec("waiting", "run"),
		withRetries(spec("retry"), 1),
	)))
	h.ok(submitCmd(1, newJob("other", "", 0, spec("a"))))
	h.ok(assignCmd(2, "j1", "done", 1, "ag1"))
	h.ok(successCmd(3, "j1", "done", 1, "ag1"))
	h.ok(assignCmd(4, "j1", "run", 1, "ag1"))
	h.ok(startCmd(5, "j1", "run", 1))
	h.ok(assignCmd(4, "j1", "leased", 1, "ag2"))
	h.ok(assignCmd(4, "j1", "retry", 1, "ag2"))
	h.ok(failCmd(5, "j1", "retry", 1, "ag2"))
	h.ok(assignCmd(6, "other", "a", 1, "ag1"))
	if want := map[string]int{"ag1": 2, "ag2": 1}; !reflect.DeepEqual(h.f.AgentLoad(), want) {
		t.Fatalf("AgentLoad() before cancel = %v, want %v", h.f.AgentLoad(), want)
	}

	before := h.job("j1")
	r := h.ok(cancelCmd(10, "j1", "user asked"))
	wantCanceled := []*gv1.TaskRef{ref("j1", "run", 1), ref("j1", "leased", 1)}
	if r.JobID != "j1" || len(r.Canceled) != len(wantCanceled) {
		t.Fatalf("cancel result = %+v, want Canceled %v", r, wantCanceled)
	}
	for i := range wantCanceled {
		assertProto(t, fmt.Sprintf("Canceled[%d]", i), r.Canceled[i], wantCanceled[i])
	}

	want := proto.Clone(before).(*gv1.Job)
	want.State = jobCanceled
	want.FinishedAt = ts(10)
	want.Version = h.index
	for _, tk := range want.Tasks {
		if tk.State == succeeded {
			continue
		}
		if tk.State == assigned || tk.State == running {
			last := tk.Attempts[len(tk.Attempts)-1]
			last.FinishedAt = ts(10)
			last.Result = canceled
			last.Error = "user asked"
		}
		tk.State = canceled
		tk.FinishedAt = ts(10)
		tk.Error = "canceled: user asked"
	}
	assertProto(t, "canceled job", h.job("j1"), want)
	if got := h.task("j1", "run").Agent; got != "ag1" {
		t.Errorf("canceled task lost its agent: %q", got)
	}

	// Only the other job's lease is left.
	if want := map[string]int{"ag1": 1}; !reflect.DeepEqual(h.f.AgentLoad(), want) {
		t.Errorf("AgentLoad() = %v, want %v", h.f.AgentLoad(), want)
	}
	if len(h.f.BusyConcurrency()) != 0 {
		t.Errorf("BusyConcurrency() = %v, want none", h.f.BusyConcurrency())
	}
	if a := h.f.Active(); len(a) != 1 || a[0].Ref.GetJobId() != "other" {
		t.Errorf("Active() = %v, want only other/a", a)
	}
	if p := h.f.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %+v, want none", p)
	}
	if h.f.IsCurrent(ref("j1", "run", 1)) {
		t.Error("canceled attempt is still current")
	}

	// Canceling again, or a late report from a canceled attempt, changes nothing.
	if r := h.refused(cancelCmd(11, "j1", "again"), "j1", nil); r.JobID != "j1" || r.Canceled != nil {
		t.Errorf("second cancel = %+v", r)
	}
	r = h.one(successCmd(12, "j1", "run", 1, "ag1"))
	if r.Err == nil {
		t.Error("report for a canceled attempt accepted")
	}
	assertProto(t, "job after late report", h.job("j1"), want)
	h.refused(startCmd(12, "j1", "leased", 1), "j1", fsm.ErrStaleAttempt)
	h.refused(assignCmd(12, "j1", "queued", 1, "ag3"), "j1", fsm.ErrConflict)
	h.refused(cancelCmd(12, "nope", ""), "", fsm.ErrNotFound)
}

func TestCancelFinishedJobIsNoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("ok", "", 0, spec("a"))))
	h.ok(assignCmd(2, "ok", "a", 1, "ag"))
	h.ok(successCmd(3, "ok", "a", 1, "ag"))
	h.ok(submitCmd(4, newJob("bad", "", 0, spec("a"))))
	h.ok(assignCmd(5, "bad", "a", 1, "ag"))
	h.ok(failCmd(6, "bad", "a", 1, "ag"))
	for _, id := range []string{"ok", "bad"} {
		if r := h.refused(cancelCmd(7, id, "late"), id, nil); r.JobID != id || r.Canceled != nil {
			t.Errorf("cancel of finished job %s = %+v", id, r)
		}
	}
	h.wantJobState("ok", jobSucceeded)
	h.wantJobState("bad", jobFailed)
}

func TestCancelPendingJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"), spec("b", "a"))))
	r := h.ok(cancelCmd(2, "j1", ""))
	if r.Err != nil || r.Canceled != nil {
		t.Errorf("cancel = %+v, want no leased attempts", r)
	}
	h.wantStates("j1", map[string]gv1.TaskState{"a": canceled, "b": canceled})
	h.wantJobState("j1", jobCanceled)
	if e := h.task("j1", "b").Error; e != "canceled" {
		t.Errorf("task error = %q, want %q", e, "canceled")
	}
}

func TestInvalidCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"))))
	tests := []struct {
		name string
		cmd  *gv1.Command
	}{
		{"no command", &gv1.Command{At: ts(2)}},
		{"no time on submit", &gv1.Command{Cmd: submitCmd(2, newJob("j2", "", 0, spec("a"))).Cmd}},
		{"no time on assign", &gv1.Command{Cmd: assignCmd(2, "j1", "a", 1, "ag").Cmd}},
		{"no time on cancel", &gv1.Command{Cmd: cancelCmd(2, "j1", "").Cmd}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.t = t
			h.refused(tt.cmd, "j1", fsm.ErrInvalid)
		})
	}
	h.t = t
	if _, ok := h.f.Job("j2"); ok {
		t.Error("submit without time created a job")
	}

	// A bad command in a batch does not stop the others.
	res := h.apply(assignCmd(3, "j1", "a", 1, "ag"), &gv1.Command{At: ts(3)}, startCmd(3, "j1", "a", 1))
	if res[0].Err != nil || !errors.Is(res[1].Err, fsm.ErrInvalid) || res[2].Err != nil {
		t.Errorf("batch results = %v, %v, %v; want nil, ErrInvalid, nil", res[0].Err, res[1].Err, res[2].Err)
	}
	h.wantStates("j1", map[string]gv1.TaskState{"a": running})
	checkIndexes(t, h.f)
}

func TestUndecodableEntryPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated", []byte{0x0a, 0x05, 0x01}},
		{"bad wire type", []byte{0x0f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"))))
			before := snapshotBytes(t, h.f)
			defer func() {
				if recover() == nil {
					t.Error("Apply of an undecodable entry did not panic")
				}
				if after := snapshotBytes(t, h.f); string(after) != string(before) {
					t.Error("undecodable entry changed the state")
				}
				if got := h.f.AppliedIndex(); got != 1 {
					t.Errorf("AppliedIndex() = %d, want 1", got)
				}
			}()
			h.f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: tt.data})
		})
	}
}

func TestUnknownCommandTypeStops(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"))))
	before := stateBytes(t, h.f)
	// A Command whose oneof holds a field number this version has no case
	// for, as a newer coordinator would write it: field 999, a message.
	known, err := proto.Marshal(&gv1.Command{At: ts(2)})
	if err != nil {
		t.Fatal(err)
	}
	cmd := append(known, protowire.AppendTag(nil, 999, protowire.BytesType)...)
	cmd = protowire.AppendBytes(cmd, []byte{0x0a, 0x01, 'x'})
	batch := protowire.AppendTag(nil, 1, protowire.BytesType)
	batch = protowire.AppendBytes(batch, cmd)
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "does not know") {
			t.Fatalf("applying an unknown command type: recovered %v, want a stop naming it", r)
		}
		if !bytes.Equal(before, stateBytes(t, h.f)) {
			t.Error("the state changed before the stop")
		}
	}()
	h.f.Apply(&raft.Log{Index: 2, Term: 1, Type: raft.LogCommand, Data: batch})
}
