package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// t0 is the base of every command time in these tests.
var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// ts returns t0 plus sec seconds as a proto timestamp.
func ts(sec int) *timestamppb.Timestamp {
	return timestamppb.New(t0.Add(time.Duration(sec) * time.Second))
}

// nanos returns t0 plus sec seconds as unix nanoseconds.
func nanos(sec int) int64 { return t0.Add(time.Duration(sec) * time.Second).UnixNano() }

// spec returns a task spec that needs the given tasks.
func spec(name string, needs ...string) *gv1.TaskSpec {
	return &gv1.TaskSpec{
		Name:     name,
		Needs:    needs,
		Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "run " + name}},
	}
}

// withRetries sets the job-failure retries of a spec.
func withRetries(s *gv1.TaskSpec, n int32) *gv1.TaskSpec { s.Retries = n; return s }

// withConcurrency sets the concurrency key of a spec.
func withConcurrency(s *gv1.TaskSpec, key string) *gv1.TaskSpec { s.Concurrency = key; return s }

// newJob builds a job the way the API leader does: one Task per TaskSpec.
func newJob(id, key string, priority int32, specs ...*gv1.TaskSpec) *gv1.Job {
	j := &gv1.Job{
		Id:             id,
		IdempotencyKey: key,
		Spec:           &gv1.JobSpec{Name: "pipeline-" + id, Priority: priority, Tasks: specs},
	}
	for _, s := range specs {
		j.Tasks = append(j.Tasks, &gv1.Task{Name: s.Name, Spec: s})
	}
	return j
}

func ref(job, task string, attempt int32) *gv1.TaskRef {
	return &gv1.TaskRef{JobId: job, Task: task, Attempt: attempt}
}

func submitCmd(sec int, j *gv1.Job) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: j}}}
}

func assignCmd(sec int, job, task string, attempt int32, agent string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_AssignTask{AssignTask: &gv1.AssignTaskCommand{Ref: ref(job, task, attempt), Agent: agent}}}
}

func startCmd(sec int, job, task string, attempt int32) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_StartTask{StartTask: &gv1.StartTaskCommand{Ref: ref(job, task, attempt)}}}
}

func reportCmd(sec int, r *gv1.Report) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_FinishTask{FinishTask: &gv1.FinishTaskCommand{Report: r}}}
}

// successCmd reports a successful attempt from agent (empty: not stated).
func successCmd(sec int, job, task string, attempt int32, agent string) *gv1.Command {
	return reportCmd(sec, &gv1.Report{Ref: ref(job, task, attempt), Success: true, Agent: agent})
}

// failCmd reports a job failure (exit code 1) from agent.
func failCmd(sec int, job, task string, attempt int32, agent string) *gv1.Command {
	return reportCmd(sec, &gv1.Report{Ref: ref(job, task, attempt), ExitCode: 1, Error: "exit status 1", Failure: gv1.FailureClass_FAILURE_CLASS_JOB, Agent: agent})
}

func requeueCmd(sec int, job, task string, attempt int32, reason string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_RequeueTask{RequeueTask: &gv1.RequeueTaskCommand{Ref: ref(job, task, attempt), Reason: reason}}}
}

func cancelCmd(sec int, job, reason string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_CancelJob{CancelJob: &gv1.CancelJobCommand{JobId: job, Reason: reason}}}
}

// entry encodes commands as one Raft log entry.
func entry(t testing.TB, index uint64, cmds ...*gv1.Command) *raft.Log {
	t.Helper()
	data, err := proto.Marshal(&gv1.Batch{Commands: cmds})
	if err != nil {
		t.Fatalf("marshal batch: %v", err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// harness drives one FSM with consecutive log indexes.
type harness struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return &harness{t: t, f: fsm.New()}
}

// apply commits cmds as one entry and returns its results.
func (h *harness) apply(cmds ...*gv1.Command) []fsm.Result {
	h.t.Helper()
	h.index++
	out := h.f.Apply(entry(h.t, h.index, cmds...))
	res, ok := out.([]fsm.Result)
	if !ok {
		h.t.Fatalf("Apply returned %T, want []fsm.Result", out)
	}
	if len(res) != len(cmds) {
		h.t.Fatalf("Apply returned %d results for %d commands", len(res), len(cmds))
	}
	return res
}

// one applies a single command and returns its result.
func (h *harness) one(c *gv1.Command) fsm.Result {
	h.t.Helper()
	return h.apply(c)[0]
}

// ok applies a single command and fails the test if it was refused.
func (h *harness) ok(c *gv1.Command) fsm.Result {
	h.t.Helper()
	r := h.one(c)
	if r.Err != nil {
		h.t.Fatalf("command %v refused: %v", prototext.Format(c), r.Err)
	}
	checkIndexes(h.t, h.f)
	return r
}

// refused applies a single command, expects err and expects no change to the
// job (or to the whole state when job is empty).
func (h *harness) refused(c *gv1.Command, job string, want error) fsm.Result {
	h.t.Helper()
	before := stateBytes(h.t, h.f)
	var jobBefore *gv1.Job
	if job != "" {
		jobBefore = h.job(job)
	}
	idx := indexesOf(h.f)
	r := h.one(c)
	if !errors.Is(r.Err, want) {
		h.t.Fatalf("command %v: err = %v, want %v", prototext.Format(c), r.Err, want)
	}
	if job != "" {
		if after := h.job(job); !proto.Equal(jobBefore, after) {
			h.t.Fatalf("refused command changed job %s:\nbefore: %v\nafter:  %v", job, prototext.Format(jobBefore), prototext.Format(after))
		}
	}
	if after := stateBytes(h.t, h.f); !bytes.Equal(before, after) {
		h.t.Fatalf("refused command %v changed the state", prototext.Format(c))
	}
	if got := indexesOf(h.f); !reflect.DeepEqual(idx, got) {
		h.t.Fatalf("refused command changed indexes:\nbefore: %+v\nafter:  %+v", idx, got)
	}
	return r
}

// job returns a copy of a job that must exist.
func (h *harness) job(id string) *gv1.Job {
	h.t.Helper()
	j, ok := h.f.Job(id)
	if !ok {
		h.t.Fatalf("job %s not found", id)
	}
	return j
}

// task returns a copy of a task that must exist.
func (h *harness) task(job, name string) *gv1.Task {
	h.t.Helper()
	for _, t := range h.job(job).Tasks {
		if t.Name == name {
			return t
		}
	}
	h.t.Fatalf("task %s/%s not found", job, name)
	return nil
}

// wantStates checks the state of every named task of a job.
func (h *harness) wantStates(job string, want map[string]gv1.TaskState) {
	h.t.Helper()
	for name, st := range want {
		if got := h.task(job, name).State; got != st {
			h.t.Errorf("task %s/%s state = %v, want %v", job, name, got, st)
		}
	}
}

func (h *harness) wantJobState(job string, want gv1.JobState) {
	h.t.Helper()
	if got := h.job(job).State; got != want {
		h.t.Errorf("job %s state = %v, want %v", job, got, want)
	}
}

// assertProto fails when got and want differ.
func assertProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\ngot:  %v\nwant: %v", what, prototext.Format(got), prototext.Format(want))
	}
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, canceled bool
	failWrite        bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.canceled = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// snapshotBytes snapshots f and persists it into memory.
func snapshotBytes(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.canceled {
		t.Fatalf("Persist left sink closed=%v canceled=%v", sink.closed, sink.canceled)
	}
	return sink.Bytes()
}

// stateBytes is the snapshot without the applied index, which every entry
// advances, refused or not.
func stateBytes(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	var snap gv1.Snapshot
	if err := proto.Unmarshal(snapshotBytes(t, f), &snap); err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	snap.AppliedIndex = 0
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(&snap)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// restored returns a new FSM restored from data.
func restored(t testing.TB, data []byte) *fsm.FSM {
	t.Helper()
	f := fsm.New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return f
}

// pendingView is a PendingTask in comparable form.
type pendingView struct {
	Key        fsm.TaskKey
	JobName    string
	Priority   int32
	Spec       string
	Attempt    int32
	QueuedAt   int64
	RunnableAt int64
	NotBefore  int64
	Avoid      string
}

// activeView is an ActiveTask in comparable form.
type activeView struct {
	Job, Task string
	Attempt   int32
	Agent     string
	State     gv1.TaskState
	Timeout   int64
}

// indexes is every read accessor's view of the state, in comparable form.
type indexes struct {
	Pending []pendingView
	Active  []activeView
	Load    map[string]int
	Busy    map[string]bool
}

func pendingViews(f *fsm.FSM) []pendingView {
	var out []pendingView
	for _, p := range f.Pending() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p.Spec)
		if err != nil {
			panic(err)
		}
		out = append(out, pendingView{p.Key, p.JobName, p.Priority, string(b), p.Attempt, p.QueuedAt, p.RunnableAt, p.NotBefore, fmt.Sprint(p.AvoidAgents)})
	}
	return out
}

// activeViews returns Active() sorted by job and task (Active does not
// promise an order).
func activeViews(f *fsm.FSM) []activeView {
	var out []activeView
	for _, a := range f.Active() {
		out = append(out, activeView{a.Ref.GetJobId(), a.Ref.GetTask(), a.Ref.GetAttempt(), a.Agent, a.State, a.Timeout})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Job != out[j].Job {
			return out[i].Job < out[j].Job
		}
		return out[i].Task < out[j].Task
	})
	return out
}

func indexesOf(f *fsm.FSM) indexes {
	return indexes{Pending: pendingViews(f), Active: activeViews(f), Load: f.AgentLoad(), Busy: f.BusyConcurrency()}
}

// checkIndexes derives the pending set, the leases, the agent load and the
// held concurrency keys from the jobs themselves and compares them with what
// the FSM's indexes report.
func checkIndexes(t testing.TB, f *fsm.FSM) {
	t.Helper()
	var wantPending []fsm.TaskKey
	var wantActive []activeView
	wantLoad := map[string]int{}
	wantBusy := map[string]bool{}
	for _, j := range f.Jobs(nil, 0) {
		for _, tk := range j.Tasks {
			switch tk.State {
			case gv1.TaskState_TASK_STATE_PENDING:
				wantPending = append(wantPending, fsm.TaskKey{JobID: j.Id, Task: tk.Name})
			case gv1.TaskState_TASK_STATE_ASSIGNED, gv1.TaskState_TASK_STATE_RUNNING:
				wantActive = append(wantActive, activeView{j.Id, tk.Name, tk.Attempt, tk.Agent, tk.State, tk.Spec.GetTimeout().AsDuration().Nanoseconds()})
				wantLoad[tk.Agent]++
				if c := tk.Spec.GetConcurrency(); c != "" {
					if wantBusy[c] {
						t.Errorf("concurrency key %q leased twice", c)
					}
					wantBusy[c] = true
				}
			}
		}
	}
	var gotPending []fsm.TaskKey
	for _, p := range f.Pending() {
		gotPending = append(gotPending, p.Key)
	}
	// The walk by class, skipping none, is the queue in the same order.
	var byClass []fsm.TaskKey
	f.EachPendingByClass(func(_ string, task func() fsm.PendingTask) (bool, bool) {
		byClass = append(byClass, task().Key)
		return true, false
	})
	if !reflect.DeepEqual(byClass, gotPending) && (len(byClass) > 0 || len(gotPending) > 0) {
		t.Errorf("EachPendingByClass order %v, Pending() order %v", byClass, gotPending)
	}
	sortKeys := func(ks []fsm.TaskKey) {
		sort.Slice(ks, func(a, b int) bool {
			if ks[a].JobID != ks[b].JobID {
				return ks[a].JobID < ks[b].JobID
			}
			return ks[a].Task < ks[b].Task
		})
	}
	sortKeys(wantPending)
	sortKeys(gotPending)
	if !reflect.DeepEqual(gotPending, wantPending) {
		t.Errorf("Pending() keys = %v, want %v", gotPending, wantPending)
	}
	sort.Slice(wantActive, func(i, j int) bool {
		if wantActive[i].Job != wantActive[j].Job {
			return wantActive[i].Job < wantActive[j].Job
		}
		return wantActive[i].Task < wantActive[j].Task
	})
	if got := activeViews(f); !reflect.DeepEqual(got, wantActive) {
		t.Errorf("Active() = %+v, want %+v", got, wantActive)
	}
	if got := f.AgentLoad(); !reflect.DeepEqual(got, wantLoad) {
		t.Errorf("AgentLoad() = %v, want %v", got, wantLoad)
	}
	if got := f.BusyConcurrency(); !reflect.DeepEqual(got, wantBusy) {
		t.Errorf("BusyConcurrency() = %v, want %v", got, wantBusy)
	}
	// The newest waiting or leased deploy job per application.
	wantDeploys := map[string]string{}
	newest := map[string]int64{}
	for _, j := range f.Jobs(nil, 0) {
		for _, tk := range j.Tasks {
			switch tk.State {
			case gv1.TaskState_TASK_STATE_PENDING, gv1.TaskState_TASK_STATE_ASSIGNED, gv1.TaskState_TASK_STATE_RUNNING:
			default:
				continue
			}
			if tk.Spec.GetDeploy() == nil {
				continue
			}
			app := fsm.DeployApp(j, tk)
			if c := j.GetCreatedAt().AsTime().UnixNano(); wantDeploys[app] == "" || c > newest[app] {
				wantDeploys[app], newest[app] = j.Id, c
			}
		}
	}
	gotDeploys := map[string]string{}
	for app, a := range f.ActiveDeploys() {
		gotDeploys[app] = a.JobID
	}
	if !reflect.DeepEqual(gotDeploys, wantDeploys) {
		t.Errorf("ActiveDeploys() = %v, want %v", gotDeploys, wantDeploys)
	}
	for _, a := range wantActive {
		if !f.IsCurrent(ref(a.Job, a.Task, a.Attempt)) {
			t.Errorf("IsCurrent(%s/%s#%d) = false for a leased attempt", a.Job, a.Task, a.Attempt)
		}
		if f.IsCurrent(ref(a.Job, a.Task, a.Attempt-1)) {
			t.Errorf("IsCurrent(%s/%s#%d) = true for an old attempt", a.Job, a.Task, a.Attempt-1)
		}
	}
}

// dur is a shorthand for durationpb.New.
func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
