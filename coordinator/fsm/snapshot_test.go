package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// buildVaried returns an FSM holding jobs in many states: pending, blocked,
// running with a concurrency key, retrying after job and infra failures,
// succeeded, failed and canceled, some with idempotency keys.
func buildVaried(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	run := withConcurrency(spec("run"), "deploy")
	run.Timeout = dur(90 * time.Second)
	run.Labels = map[string]string{"os": "linux", "arch": "amd64"}
	h.ok(submitCmd(1, newJob("mixed", "key-mixed", 3, run, spec("after", "run"), withRetries(spec("flaky"), 2), spec("infra"), spec("idle"))))
	h.ok(submitCmd(2, newJob("done", "key-done", 0, spec("a"))))
	h.ok(submitCmd(3, newJob("bad", "", -1, spec("a"), spec("b", "a"))))
	h.ok(submitCmd(4, newJob("gone", "key-gone", 0, spec("a"), spec("b"))))
	h.ok(assignCmd(5, "mixed", "run", 1, "ag1"))
	h.ok(startCmd(6, "mixed", "run", 1))
	h.ok(assignCmd(5, "mixed", "flaky", 1, "ag2"))
	h.ok(failCmd(7, "mixed", "flaky", 1, "ag2"))
	h.ok(assignCmd(5, "mixed", "infra", 1, "ag3"))
	h.ok(requeueCmd(8, "mixed", "infra", 1, "lost"))
	h.ok(assignCmd(9, "mixed", "infra", 2, "ag1"))
	h.ok(requeueCmd(10, "mixed", "infra", 2, "lost"))
	h.ok(assignCmd(5, "done", "a", 1, "ag2"))
	h.ok(reportCmd(6, &gv1.Report{Ref: ref("done", "a", 1), Success: true, Outputs: map[string]string{"z": "1", "a": "2", "m": "3"}}))
	h.ok(assignCmd(5, "bad", "a", 1, "ag2"))
	h.ok(failCmd(6, "bad", "a", 1, "ag2"))
	h.ok(assignCmd(5, "gone", "a", 1, "ag3"))
	h.ok(cancelCmd(6, "gone", "stop"))
	return h
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	h := buildVaried(t)
	data := snapshotBytes(t, h.f)
	g := restored(t, data)
	checkIndexes(t, g)

	want, got := h.f.Jobs(nil, 0), g.Jobs(nil, 0)
	if len(got) != len(want) {
		t.Fatalf("restored %d jobs, want %d", len(got), len(want))
	}
	for i := range want {
		assertProto(t, "restored job "+want[i].Id, got[i], want[i])
	}
	wantIdx, gotIdx := indexesOf(h.f), indexesOf(g)
	if !reflect.DeepEqual(gotIdx, wantIdx) {
		t.Errorf("restored indexes:\ngot:  %+v\nwant: %+v", gotIdx, wantIdx)
	}
	// Spot-check the indexes are not trivially empty.
	if len(wantIdx.Pending) != 3 || len(wantIdx.Active) != 1 || !wantIdx.Busy["deploy"] || wantIdx.Load["ag1"] != 1 {
		t.Fatalf("fixture indexes unexpected: %+v", wantIdx)
	}
	for _, p := range g.Pending() {
		if p.Key.Task == "infra" && !reflect.DeepEqual(p.AvoidAgents, []string{"ag3", "ag1"}) {
			t.Errorf("restored AvoidAgents = %v, want [ag3 ag1]", p.AvoidAgents)
		}
	}
	if !bytes.Equal(snapshotBytes(t, g), data) {
		t.Error("snapshot of the restored FSM differs from the original snapshot")
	}

	// Idempotency keys survive, for live and finished jobs.
	g2 := &harness{t: t, f: g, index: h.index}
	for _, key := range []string{"key-mixed", "key-done", "key-gone"} {
		wantID := map[string]string{"key-mixed": "mixed", "key-done": "done", "key-gone": "gone"}[key]
		for _, hh := range []*harness{h, g2} {
			if r := hh.ok(submitCmd(20, newJob("new-"+key, key, 0, spec("a")))); r.JobID != wantID || !r.Existing {
				t.Errorf("submit with %s after restore = %+v, want existing %s", key, r, wantID)
			}
		}
	}
	// Both continue the same way.
	cont := [][]*gv1.Command{
		{successCmd(21, "mixed", "run", 1, "ag1"), assignCmd(21, "mixed", "infra", 3, "ag2")},
		{assignCmd(22, "mixed", "run", 2, "ag9"), submitCmd(22, newJob("late", "", 0, spec("a")))},
		{assignCmd(23, "mixed", "after", 1, "ag2"), startCmd(23, "mixed", "after", 1)},
	}
	for _, c := range cont {
		ra, rb := h.apply(c...), g2.apply(c...)
		if fmt.Sprint(ra) != fmt.Sprint(rb) {
			t.Errorf("results differ after restore: %v vs %v", ra, rb)
		}
	}
	if !bytes.Equal(snapshotBytes(t, h.f), snapshotBytes(t, g)) {
		t.Error("original and restored FSM diverged")
	}
	checkIndexes(t, g)
}

func TestRestoreReplacesState(t *testing.T) {
	t.Parallel()
	src := buildVaried(t)
	data := snapshotBytes(t, src.f)

	h := newHarness(t)
	h.ok(submitCmd(1, newJob("old", "key-old", 0, withConcurrency(spec("a"), "old"))))
	h.ok(assignCmd(2, "old", "a", 1, "ag-old"))
	ch := h.f.Changed()
	rc := &closeTracker{Reader: bytes.NewReader(data)}
	if err := h.f.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Error("Restore did not close the reader")
	}
	select {
	case <-ch:
	default:
		t.Error("Restore did not signal Changed")
	}
	if _, ok := h.f.Job("old"); ok {
		t.Error("Restore kept a job that is not in the snapshot")
	}
	if h.f.AgentLoad()["ag-old"] != 0 || h.f.BusyConcurrency()["old"] {
		t.Errorf("Restore kept old indexes: load %v busy %v", h.f.AgentLoad(), h.f.BusyConcurrency())
	}
	if !reflect.DeepEqual(indexesOf(h.f), indexesOf(src.f)) {
		t.Error("restored indexes differ from the source")
	}
	if r := h.ok(submitCmd(3, newJob("old2", "key-old", 0, spec("a")))); r.Existing {
		t.Error("Restore kept an idempotency key that is not in the snapshot")
	}
}

func TestRestoreBadSnapshot(t *testing.T) {
	t.Parallel()
	h := buildVaried(t)
	before := snapshotBytes(t, h.f)
	idx := indexesOf(h.f)
	rc := &closeTracker{Reader: bytes.NewReader([]byte{0x0a, 0x7f, 0x01})}
	if err := h.f.Restore(rc); err == nil {
		t.Fatal("Restore of garbage succeeded")
	}
	if !rc.closed {
		t.Error("Restore did not close the reader")
	}
	if !bytes.Equal(snapshotBytes(t, h.f), before) || !reflect.DeepEqual(indexesOf(h.f), idx) {
		t.Error("failed Restore changed the state")
	}
	if err := h.f.Restore(io.NopCloser(iotestErrReader{})); err == nil {
		t.Error("Restore with a failing reader succeeded")
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	t.Parallel()
	h := buildVaried(t)
	want := snapshotBytes(t, h.f)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h.ok(cancelCmd(30, "mixed", "later"))
	h.ok(submitCmd(30, newJob("later", "", 0, spec("a"))))
	wantPersisted(t, snap, want)
}

// A snapshot shares the submit order with the state (the chunks of
// order.go): ending jobs in the chunks it holds, appending to its last one
// and pruning after it is taken change nothing it writes, and the state
// goes on as if it had not been taken.
func TestSnapshotSharesTheOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	other := newHarness(t) // the same commands, never snapshotted
	// both applies cmds as one entry to each.
	both := func(cmds ...*gv1.Command) {
		t.Helper()
		for _, x := range []*harness{h, other} {
			for i, r := range x.apply(cmds...) {
				if r.Err != nil {
					t.Fatalf("command %d refused: %v", i, r.Err)
				}
			}
		}
	}
	const n = 2500 // three chunks
	var setup []*gv1.Command
	for i := range n {
		id := fmt.Sprintf("j%04d", i)
		setup = append(setup, submitCmd(1, newJob(id, "", 0, spec("a"))))
		if i%2 == 0 {
			setup = append(setup, cancelCmd(2, id, "ended before the snapshot"))
		}
	}
	both(setup...)
	want := snapshotBytes(t, h.f)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var after []*gv1.Command
	for i := 1; i < n; i += 4 { // end live jobs in every chunk
		after = append(after, cancelCmd(20, fmt.Sprintf("j%04d", i), "ended after"))
	}
	both(after...)
	both(submitCmd(21, newJob("later", "", 0, spec("a"))))
	both(&gv1.Command{At: ts(22), Cmd: &gv1.Command_PruneJobs{PruneJobs: &gv1.PruneJobsCommand{FinishedBefore: ts(10)}}})
	both(cancelCmd(23, "j0003", "ended after the prune"))
	wantPersisted(t, snap, want)
	if !bytes.Equal(stateBytes(t, h.f), stateBytes(t, other.f)) {
		t.Error("the state after a snapshot differs from the same state never snapshotted")
	}
	if got := len(h.f.Jobs(nil, 0)); got != n/2+1 {
		t.Errorf("%d jobs after pruning those ended before the snapshot; want %d", got, n/2+1)
	}
}

// wantPersisted persists and releases snap and fails unless it wrote want.
func wantPersisted(t *testing.T, snap raft.FSMSnapshot, want []byte) {
	t.Helper()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !bytes.Equal(sink.Bytes(), want) {
		t.Error("Persist wrote changes applied after Snapshot")
	}
}

func TestPersistWriteError(t *testing.T) {
	t.Parallel()
	h := buildVaried(t)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{failWrite: true}
	if err := snap.Persist(sink); err == nil {
		t.Error("Persist succeeded with a failing sink")
	}
	if !sink.canceled || sink.closed {
		t.Errorf("sink canceled=%v closed=%v, want canceled and not closed", sink.canceled, sink.closed)
	}
}

func TestChanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := h.f.Changed()
	if closed(ch) {
		t.Fatal("Changed() closed before any Apply")
	}
	if h.f.Changed() != ch {
		t.Error("Changed() returned a new channel without an Apply")
	}
	h.ok(submitCmd(1, newJob("j1", "", 0, spec("a"))))
	if !closed(ch) {
		t.Fatal("Changed() not closed by Apply")
	}
	next := h.f.Changed()
	if closed(next) {
		t.Fatal("Changed() after Apply is already closed")
	}
	// An entry whose commands are all refused is still an applied entry.
	h.one(&gv1.Command{At: ts(2)})
	if !closed(next) {
		t.Error("Changed() not closed by an entry of refused commands")
	}
	if got := h.f.AppliedIndex(); got != 2 {
		t.Errorf("AppliedIndex() = %d, want 2", got)
	}
}

// TestDeterminism applies the same pseudo-random entries to two FSMs, and to
// a third restored midway from a snapshot of the first: all end identical.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			testDeterminism(t, seed)
		})
	}
}

func testDeterminism(t *testing.T, seed int64) {
	const steps, restoreAt = 400, 170
	g := &gen{rng: rand.New(rand.NewSource(seed))}
	a, b := fsm.New(), fsm.New()
	var c *fsm.FSM
	ok := map[string]int{}
	for i := 1; i <= steps; i++ {
		if i == restoreAt {
			c = restored(t, snapshotBytes(t, a))
		}
		cmds := g.batch(a, i)
		l := entry(t, uint64(i), cmds...)
		ra := a.Apply(l).([]fsm.Result)
		rb := b.Apply(l).([]fsm.Result)
		if fmt.Sprint(ra) != fmt.Sprint(rb) {
			t.Fatalf("step %d: results differ: %v vs %v", i, ra, rb)
		}
		if c != nil {
			if rc := c.Apply(l).([]fsm.Result); fmt.Sprint(ra) != fmt.Sprint(rc) {
				t.Fatalf("step %d: restored FSM results differ: %v vs %v", i, ra, rc)
			}
		}
		for j, r := range ra {
			if r.Err == nil {
				ok[kind(cmds[j])]++
			}
		}
		checkIndexes(t, a)
		if t.Failed() {
			t.Fatalf("step %d: indexes wrong", i)
		}
	}
	// The sequence must have exercised every kind of change.
	for _, k := range []string{"submit", "assign", "start", "success", "failure", "infra", "requeue", "cancel"} {
		if ok[k] < 3 {
			t.Errorf("only %d successful %s commands; the generator is too weak: %v", ok[k], k, ok)
		}
	}
	t.Logf("successful commands: %v", ok)
	sa, sb, sc := snapshotBytes(t, a), snapshotBytes(t, b), snapshotBytes(t, c)
	if !bytes.Equal(sa, sb) {
		t.Error("two FSMs fed the same entries have different snapshots")
	}
	if !bytes.Equal(sa, sc) {
		t.Error("the FSM restored midway has a different snapshot")
	}
	ia := indexesOf(a)
	if ib := indexesOf(b); !reflect.DeepEqual(ia, ib) {
		t.Errorf("indexes differ:\n%+v\n%+v", ia, ib)
	}
	if ic := indexesOf(c); !reflect.DeepEqual(ia, ic) {
		t.Errorf("restored indexes differ:\n%+v\n%+v", ia, ic)
	}
	checkIndexes(t, b)
	checkIndexes(t, c)
	if a.AppliedIndex() != steps || b.AppliedIndex() != steps || c.AppliedIndex() != steps {
		t.Errorf("AppliedIndex = %d, %d, %d; want %d", a.AppliedIndex(), b.AppliedIndex(), c.AppliedIndex(), steps)
	}
}

// gen makes pseudo-random batches, mostly valid for the FSM's current state.
type gen struct {
	rng  *rand.Rand
	jobs int
}

var agents = []string{"ag0", "ag1", "ag2", "ag3"}

func (g *gen) batch(f *fsm.FSM, step int) []*gv1.Command {
	n := 1 + g.rng.Intn(4)
	cmds := make([]*gv1.Command, 0, n)
	pend := f.Pending()
	act := activeViews(f)
	for range n {
		sec := step*2 + g.rng.Intn(3) // roughly increasing, sometimes equal or backwards
		agent := agents[g.rng.Intn(len(agents))]
		var c *gv1.Command
		switch r := g.rng.Intn(100); {
		case r < 12 || g.jobs == 0:
			c = submitCmd(sec, g.job())
		case r < 40 && len(pend) > 0:
			p := pend[g.rng.Intn(len(pend))]
			c = assignCmd(sec, p.Key.JobID, p.Key.Task, p.Attempt+g.attemptSkew(), agent)
		case r < 85 && len(act) > 0:
			x := act[g.rng.Intn(len(act))]
			attempt := x.Attempt
			if g.rng.Intn(8) == 0 {
				attempt += g.attemptSkew()
			}
			from := x.Agent
			switch g.rng.Intn(8) {
			case 0:
				from = ""
			case 1:
				from = agent
			}
			switch k := g.rng.Intn(10); {
			case k < 3:
				c = startCmd(sec, x.Job, x.Task, attempt)
			case k < 6:
				c = successCmd(sec, x.Job, x.Task, attempt, from)
				c.GetFinishTask().GetReport().Outputs = map[string]string{"sha": fmt.Sprint(sec), "step": fmt.Sprint(step), "a": "1", "z": "2"}
			case k < 8:
				c = failCmd(sec, x.Job, x.Task, attempt, from)
			case k < 9:
				c = reportCmd(sec, &gv1.Report{Ref: ref(x.Job, x.Task, attempt), Failure: infraFailure, Error: "executor", Agent: from})
			default:
				c = requeueCmd(sec, x.Job, x.Task, attempt, "lease expired")
			}
		case r < 92:
			c = cancelCmd(sec, fmt.Sprintf("job%d", g.rng.Intn(g.jobs+1)), "")
		case r < 96:
			c = &gv1.Command{At: ts(sec)}
		default:
			// Replay of something old: a stale finish or a submit without time.
			c = successCmd(sec, fmt.Sprintf("job%d", g.rng.Intn(g.jobs)), "t0", int32(g.rng.Intn(3)), "")
			if g.rng.Intn(2) == 0 {
				c = submitCmd(sec, g.job())
				c.At = nil
			}
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// attemptSkew is usually 1 (the next attempt), sometimes stale or ahead.
func (g *gen) attemptSkew() int32 {
	switch g.rng.Intn(10) {
	case 0:
		return 0
	case 1:
		return 2
	}
	return 1
}

// job makes a job of 1-4 tasks; a task may need earlier ones.
func (g *gen) job() *gv1.Job {
	id := fmt.Sprintf("job%d", g.jobs)
	key := ""
	if g.rng.Intn(3) == 0 {
		key = fmt.Sprintf("key%d", g.rng.Intn(4)) // sometimes repeated
	}
	g.jobs++
	var specs []*gv1.TaskSpec
	for i := range 1 + g.rng.Intn(4) {
		var needs []string
		for j := range i {
			if g.rng.Intn(3) == 0 {
				needs = append(needs, fmt.Sprintf("t%d", j))
			}
		}
		s := withRetries(spec(fmt.Sprintf("t%d", i), needs...), int32(g.rng.Intn(3)))
		if g.rng.Intn(4) == 0 {
			s.Concurrency = fmt.Sprintf("c%d", g.rng.Intn(2))
		}
		if g.rng.Intn(3) == 0 {
			s.Labels = map[string]string{"os": "linux", "arch": "amd64", "pool": fmt.Sprint(g.rng.Intn(3))}
		}
		if g.rng.Intn(3) == 0 {
			s.Timeout = dur(time.Duration(1+g.rng.Intn(60)) * time.Minute)
		}
		specs = append(specs, s)
	}
	return newJob(id, key, int32(g.rng.Intn(3)-1), specs...)
}

// kind names a command for the coverage count.
func kind(c *gv1.Command) string {
	switch x := c.Cmd.(type) {
	case *gv1.Command_SubmitJob:
		return "submit"
	case *gv1.Command_AssignTask:
		return "assign"
	case *gv1.Command_StartTask:
		return "start"
	case *gv1.Command_FinishTask:
		r := x.FinishTask.GetReport()
		switch {
		case r.GetSuccess():
			return "success"
		case r.GetFailure() == infraFailure:
			return "infra"
		}
		return "failure"
	case *gv1.Command_RequeueTask:
		return "requeue"
	case *gv1.Command_CancelJob:
		return "cancel"
	}
	return "other"
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

var _ raft.FSM = fsm.New()

// Ended jobs are kept encoded (sealed): the state's encoding is still the
// deterministic encoding of the whole gv1.Snapshot, a restore reads the
// same state back, and commands naming an ended job still answer as they
// did.
func TestEndedJobsSealedKeepTheEncoding(t *testing.T) {
	h := buildVaried(t)
	data, err := h.f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := fsm.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, whole) {
		t.Fatal("Encode differs from the deterministic encoding of the snapshot it holds")
	}
	g := fsm.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	again, err := g.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Fatal("a restored state encodes differently")
	}
	for _, f := range []*fsm.FSM{h.f, g} {
		for _, id := range []string{"done", "bad", "gone"} {
			j, ok := f.Job(id)
			if !ok || !fsm.JobFinal(j.GetState()) || j.GetFinishedAt() == nil {
				t.Fatalf("ended job %s: %v %v", id, ok, j)
			}
			if st, _ := f.JobState(id); st != j.GetState() {
				t.Fatalf("JobState(%s) = %s, job says %s", id, st, j.GetState())
			}
			if v, _ := f.JobVersion(id); v != j.GetVersion() {
				t.Fatalf("JobVersion(%s) = %d, job says %d", id, v, j.GetVersion())
			}
		}
		if got := len(f.Jobs([]gv1.JobState{gv1.JobState_JOB_STATE_SUCCEEDED, gv1.JobState_JOB_STATE_FAILED, gv1.JobState_JOB_STATE_CANCELED}, 0)); got != 3 {
			t.Fatalf("%d ended jobs listed, want 3", got)
		}
	}
	// A report for an ended job is still stale, a
	// cancel changes nothing, and a resubmit with its key finds it.
	h.refused(reportCmd(11, &gv1.Report{Ref: ref("done", "a", 1), Success: true, Outputs: map[string]string{"z": "1", "a": "2", "m": "3"}}), "done", fsm.ErrStaleAttempt)
	if res := h.one(cancelCmd(12, "done", "late")); res.Err != nil {
		t.Fatalf("cancel of an ended job: %v", res.Err)
	}
	h.wantJobState("done", gv1.JobState_JOB_STATE_SUCCEEDED)
	if res := h.one(submitCmd(13, newJob("done-again", "key-done", 0, spec("a")))); res.JobID != "done" || !res.Existing {
		t.Fatalf("resubmit with an ended job's key: %+v", res)
	}
}

// A listing stops walking once its page is full, yet counts every job in
// the states asked for: the same pages and totals as a walk of every job,
// also after a restore and a prune.
func TestJobsPageTotalsWithoutAWalk(t *testing.T) {
	t.Parallel()
	h := buildVaried(t)
	var more []*gv1.Command
	for i := range 40 {
		id := fmt.Sprintf("n%02d", i)
		more = append(more, submitCmd(11+i/10, newJob(id, "", 0, spec("a"))))
		if i%3 == 0 {
			more = append(more, cancelCmd(11+i/10, id, "ended"))
		}
	}
	h.apply(more...)
	all := h.f.Jobs(nil, 0) // newest first
	check := func(f *fsm.FSM, what string) {
		t.Helper()
		for _, states := range [][]gv1.JobState{nil, {gv1.JobState_JOB_STATE_CANCELED}, {gv1.JobState_JOB_STATE_RUNNING, gv1.JobState_JOB_STATE_PENDING}, {gv1.JobState_JOB_STATE_FAILED, gv1.JobState_JOB_STATE_SUCCEEDED}} {
			want := map[gv1.JobState]bool{}
			for _, s := range states {
				want[s] = true
			}
			var ids []string
			for _, j := range f.Jobs(nil, 0) {
				if len(want) == 0 || want[j.GetState()] {
					ids = append(ids, j.GetId())
				}
			}
			for _, limit := range []int{1, 5, 100} {
				page, total, _ := f.JobsPage(states, limit, 0, gv1.JobView_JOB_VIEW_FULL)
				var got []string
				for _, j := range page {
					got = append(got, j.GetId())
				}
				wantPage := ids[:min(limit, len(ids))]
				if total != len(ids) || fmt.Sprint(got) != fmt.Sprint(wantPage) {
					t.Errorf("%s: JobsPage(%v, %d) = %v, total %d; want %v, total %d", what, states, limit, got, total, wantPage, len(ids))
				}
			}
		}
	}
	check(h.f, "applied")
	check(restored(t, snapshotBytes(t, h.f)), "restored")
	h.ok(&gv1.Command{At: ts(100), Cmd: &gv1.Command_PruneJobs{PruneJobs: &gv1.PruneJobsCommand{FinishedBefore: ts(12)}}})
	if n := len(h.f.Jobs(nil, 0)); n >= len(all) {
		t.Fatalf("the prune removed nothing (%d jobs of %d)", n, len(all))
	}
	check(h.f, "pruned")
}
