package dispatch

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestReportBoundsAreRefusedWithReason(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	ref := x.submit(t, "j1", "a1")
	ok := func() *gv1.Report {
		return &gv1.Report{Ref: ref, Success: true, Outputs: map[string]string{"digest": "sha256:1"}}
	}
	for _, tt := range []struct {
		name   string
		agent  string // whose subject it arrives on
		mutate func(*gv1.Report)
		want   string
	}{
		{"too many outputs", "a1", func(r *gv1.Report) { r.Outputs = outputs(limit.ReportOutputs+1, 1) },
			"report.outputs: 65 outputs, more than the limit of 64"},
		{"output key not a name", "a1", func(r *gv1.Report) { r.Outputs = map[string]string{"a.b": "x"} },
			`report.outputs: key: invalid name: "a.b" has '.'`},
		{"output value too long", "a1", func(r *gv1.Report) { r.Outputs = map[string]string{"k": strings.Repeat("x", limit.OutputValue+1)} },
			`report.outputs["k"]: value is 4097 bytes, longer than the limit of 4096`},
		{"no ref", "a1", func(r *gv1.Report) { r.Ref = nil }, "report.ref: required"},
		{"attempt zero", "a1", func(r *gv1.Report) { r.Ref = &gv1.TaskRef{JobId: "j1", Task: "t"} }, "report.ref.attempt: 0 is not positive"},
		{"job id not a token", "a1", func(r *gv1.Report) { r.Ref = &gv1.TaskRef{JobId: "j.>", Task: "t", Attempt: 1} }, "report.ref.job_id: invalid name"},
		{"agent field forged", "a1", func(r *gv1.Report) { r.Agent = "a2" }, `report.agent: "a2", but the report came from agent a1`},
		{"not the lease holder", "a2", func(r *gv1.Report) {}, "report.ref: attempt 1 of j1/t is not held by agent a2"},
		{"forged for the holder", "a2", func(r *gv1.Report) { r.Agent = "a1" }, `report.agent: "a1", but the report came from agent a2`},
	} {
		r := ok()
		tt.mutate(r)
		before, applied := x.state(t), x.fsm.AppliedIndex()
		reply, outcome := x.d.report(x.ctx, x.ns.Report(tt.agent), marshal(t, r))
		if reply == nil || reply.Accepted || !strings.Contains(reply.Reason, tt.want) {
			t.Errorf("%s: reply %v (%s); want refused saying %q", tt.name, reply, outcome, tt.want)
			continue
		}
		if x.state(t) != before || x.fsm.AppliedIndex() != applied {
			t.Errorf("%s: a refused report changed the state or reached the log", tt.name)
		}
	}
	for _, subj := range []string{"gantry.t.agent.report", "gantry.t.agent.a*b.report", "gantry.other.agent.a1.report"} {
		if reply, _ := x.d.report(x.ctx, subj, marshal(t, ok())); reply.GetAccepted() || !strings.Contains(reply.GetReason(), "names no agent") {
			t.Errorf("report on %s: %v; want refused", subj, reply)
		}
	}
	if reply, _ := x.d.report(x.ctx, x.ns.Report("a1"), []byte{0xff, 0xff, 0xff}); reply.GetAccepted() || !strings.Contains(reply.GetReason(), "malformed report") {
		t.Errorf("undecodable report: %v; want refused as malformed", reply)
	}

	// Within every bound, from the holder: accepted, and final.
	r := ok()
	r.Outputs = outputs(limit.ReportOutputs, limit.OutputValue)
	if reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), marshal(t, r)); !reply.GetAccepted() || outcome != "accepted" {
		t.Fatalf("valid report: %v (%s)", reply, outcome)
	}
	if reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), marshal(t, r)); !reply.GetAccepted() || outcome != "duplicate" {
		t.Fatalf("same report again: %v (%s); want a duplicate", reply, outcome)
	}
	// A forged report for the ended attempt changes nothing either.
	before := x.state(t)
	if reply, _ := x.d.report(x.ctx, x.ns.Report("a2"), marshal(t, ok())); reply.GetAccepted() {
		t.Errorf("report from a2 for a1's ended attempt accepted: %v", reply)
	}
	if x.state(t) != before {
		t.Error("a forged report for an ended attempt changed the state")
	}
}

func TestReportErrorIsCutKeepingStartAndEnd(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	ref := x.submit(t, "j1", "a1")
	msg := "START " + strings.Repeat("x", 100_000) + " END"
	r := &gv1.Report{Ref: ref, ExitCode: 2, Error: msg, Failure: gv1.FailureClass_FAILURE_CLASS_JOB}
	if reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), marshal(t, r)); !reply.GetAccepted() {
		t.Fatalf("report with a long error: %v (%s)", reply, outcome)
	}
	got := x.attempt(t, ref).Error
	if len(got) > limit.ReportError || !strings.HasPrefix(got, "START ") || !strings.HasSuffix(got, " END") {
		t.Fatalf("recorded error of %d bytes: %.60q…; want at most %d, with its start and end", len(got), got, limit.ReportError)
	}
	// The agent resends the same report (a lost answer): still a duplicate.
	if reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), marshal(t, r)); !reply.GetAccepted() || outcome != "duplicate" {
		t.Fatalf("resent report: %v (%s); want a duplicate", reply, outcome)
	}
}

func TestRequeueReasonIsBounded(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	ref := x.submit(t, "j1", "a1")
	x.d.requeue(x.ctx, ref, "agent a1 did not take the task: "+strings.Repeat("y", 1<<20), "not_accepted")
	if got := x.attempt(t, ref).Error; len(got) > limit.ReportError || !strings.HasPrefix(got, "agent a1 did not take the task") {
		t.Fatalf("requeue recorded a %d-byte reason: %.60q…", len(got), got)
	}
}

// TestRefusalRequeues: a refused report (a published assignment the agent
// did not take) puts the attempt back in the queue when its holder sends
// it, changes nothing from another agent or for an attempt no longer
// current, and waits for an assignment sent before its commit.
func TestRefusalRequeues(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	refusal := func(ref *gv1.TaskRef) []byte {
		return marshal(t, &gv1.Report{Ref: ref, Refused: true, Failure: gv1.FailureClass_FAILURE_CLASS_INFRA, Error: "no free slot"})
	}
	ref := x.submit(t, "j1", "a1")
	before := x.state(t)
	if reply, outcome := x.d.report(x.ctx, x.ns.Report("a2"), refusal(ref)); reply.GetAccepted() || outcome != "refused" {
		t.Fatalf("a refusal from another agent: %v, %s", reply, outcome)
	}
	if x.state(t) != before {
		t.Fatal("a refusal from another agent changed the state")
	}
	if reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), refusal(ref)); !reply.GetAccepted() || outcome != "not_accepted" {
		t.Fatalf("the holder's refusal: %v, %s", reply, outcome)
	}
	a := x.attempt(t, ref)
	if a.Failure != gv1.FailureClass_FAILURE_CLASS_INFRA || !strings.Contains(a.Error, "agent a1 did not take the task: no free slot") {
		t.Fatalf("the refused attempt = %v", a)
	}
	j, _ := x.fsm.Job("j1")
	if st := j.Tasks[0].State; st != gv1.TaskState_TASK_STATE_PENDING {
		t.Fatalf("task after a refusal: %s, want pending", st)
	}
	before = x.state(t)
	if reply, _ := x.d.report(x.ctx, x.ns.Report("a1"), refusal(ref)); reply.GetAccepted() || x.state(t) != before {
		t.Fatalf("a second refusal of the ended attempt: %v", reply)
	}

	// Sent before its commit: the refusal waits for it.
	early := &gv1.TaskRef{JobId: "j2", Task: "t", Attempt: 1}
	x.d.placeMu.Lock()
	x.d.reserved[attemptOf(early)] = "a1"
	x.d.placeMu.Unlock()
	type answer struct {
		reply   *gv1.ReportReply
		outcome string
	}
	got := make(chan answer, 1)
	go func() {
		reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), refusal(early))
		got <- answer{reply, outcome}
	}()
	x.submit(t, "j2", "a1")
	x.d.placeMu.Lock()
	delete(x.d.reserved, attemptOf(early))
	x.d.placeMu.Unlock()
	if a := <-got; !a.reply.GetAccepted() || a.outcome != "not_accepted" {
		t.Fatalf("a refusal that came before its assignment's commit: %v, %s", a.reply, a.outcome)
	}
	if a := x.attempt(t, early); a.FinishedAt == nil || a.Failure != gv1.FailureClass_FAILURE_CLASS_INFRA {
		t.Fatalf("the early refused attempt = %v", a)
	}
}
