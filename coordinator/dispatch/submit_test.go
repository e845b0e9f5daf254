package dispatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/scheduler"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// leading runs the fixture's dispatcher as the leader over an embedded NATS
// server, with one agent of slots slots that accepts every assignment; it
// returns the assignments the agent got.
func (x *fixture) leading(t *testing.T, agent string, slots int32) <-chan *gv1.Assignment {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	got := make(chan *gv1.Assignment, 64)
	if _, err := nc.Subscribe(x.ns.Assign(agent), func(m *nats.Msg) {
		var as gv1.Assignment
		if err := proto.Unmarshal(m.Data, &as); err != nil {
			t.Errorf("assignment: %v", err)
			return
		}
		data, _ := proto.Marshal(&gv1.AssignmentReply{Accepted: true})
		_ = m.Respond(data)
		got <- &as
	}); err != nil {
		t.Fatal(err)
	}
	x.d.nc = nc
	if _, err := x.d.fleet.Observe(&gv1.Heartbeat{Agent: &gv1.AgentInfo{Name: agent, Slots: slots, Capabilities: []string{"exec"}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(x.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.d.Lead(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	// Leading once a pass has left the agent's slots for Submit.
	if !poll.Until(10*time.Second, func() bool {
		x.d.placeMu.Lock()
		defer x.d.placeMu.Unlock()
		return x.d.spare != nil
	}) {
		t.Fatal("the dispatcher never made a scheduling pass")
	}
	return got
}

func jobCommand(id string, labels map[string]string) *gv1.Command {
	spec := &gv1.TaskSpec{Name: "t", Labels: labels, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
	return &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
		Id: id, Spec: &gv1.JobSpec{Name: "p", Tasks: []*gv1.TaskSpec{spec}}, Tasks: []*gv1.Task{{Name: "t", Spec: spec}},
	}}}}
}

// A task submitted while an agent has a free slot is assigned by the
// submit's own commit: acknowledged, it is already assigned, and the agent
// gets it without a scheduling pass.
func TestSubmitAssignsInTheSameCommit(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	got := x.leading(t, "a1", 2)
	for i := range 2 {
		id := fmt.Sprintf("j%d", i)
		res, err := x.d.Submit(context.Background(), jobCommand(id, nil))
		if err != nil || res.JobID != id {
			t.Fatalf("submit %s: %v, %+v", id, err, res)
		}
		j, _ := x.fsm.Job(id)
		if st, agent := j.GetTasks()[0].GetState(), j.GetTasks()[0].GetAgent(); st != gv1.TaskState_TASK_STATE_ASSIGNED || agent != "a1" {
			t.Fatalf("job %s acknowledged with its task %s on %q; want assigned to a1 by the same commit", id, st, agent)
		}
		select {
		case as := <-got:
			if as.GetRef().GetJobId() != id || as.GetRef().GetAttempt() != 1 {
				t.Fatalf("agent got %v; want attempt 1 of %s", as.GetRef(), id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the agent never got %s", id)
		}
	}
	// The agent is full: the next task waits in the queue, and one that
	// no agent fits is not assigned either.
	for _, c := range []*gv1.Command{jobCommand("full", nil), jobCommand("nolabel", map[string]string{"os": "plan9"})} {
		res, err := x.d.Submit(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		j, _ := x.fsm.Job(res.JobID)
		if st := j.GetTasks()[0].GetState(); st != gv1.TaskState_TASK_STATE_PENDING {
			t.Fatalf("job %s acknowledged with its task %s; want pending", res.JobID, st)
		}
	}
}

// A task whose class has tasks queued is left to the scheduling pass, which
// takes them in order: it does not overtake them, even with a slot free.
func TestSubmitDoesNotOvertakeTheQueue(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	if _, err := x.prop.ProposeOne(x.ctx, jobCommand("first", nil)); err != nil {
		t.Fatal(err)
	}
	// Leading, between passes: the last one left a slot free.
	x.d.lead.Store(&x.ctx)
	x.d.spare = scheduler.NewPass([]scheduler.Candidate{{Name: "a1", Free: 1, Capabilities: []string{"exec"}}}, nil, time.Now().UnixNano())
	res, err := x.d.Submit(context.Background(), jobCommand("second", nil))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := x.fsm.Job(res.JobID)
	if st := j.GetTasks()[0].GetState(); st != gv1.TaskState_TASK_STATE_PENDING {
		t.Fatalf("second job acknowledged with its task %s; want pending behind the first", st)
	}
	// A resubmit with a used key finds its job and places nothing, even
	// with a slot free that fits it.
	first := jobCommand("keyed", nil)
	first.GetSubmitJob().GetJob().IdempotencyKey = "k"
	if _, err := x.d.Submit(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	solo := map[string]string{"os": "solo"}
	x.d.placeMu.Lock()
	x.d.spare = scheduler.NewPass([]scheduler.Candidate{{Name: "a1", Labels: solo, Free: 1, Capabilities: []string{"exec"}}}, nil, time.Now().UnixNano())
	x.d.placeMu.Unlock()
	again := jobCommand("keyed-again", solo)
	again.GetSubmitJob().GetJob().IdempotencyKey = "k"
	if res, err := x.d.Submit(context.Background(), again); err != nil || !res.Existing || res.JobID != "keyed" {
		t.Fatalf("resubmit with a used key: %v, %+v", err, res)
	}
	x.d.placeMu.Lock()
	_, free := x.d.spare.Place(fsm.PendingTask{Key: fsm.TaskKey{JobID: "probe", Task: "t"}, Spec: again.GetSubmitJob().GetJob().GetTasks()[0].GetSpec()})
	x.d.placeMu.Unlock()
	if !free {
		t.Fatal("the resubmit took the free slot")
	}
	// Another class may take the slot.
	res, err = x.d.Submit(context.Background(), jobCommand("other", map[string]string{"os": "linux"}))
	if err != nil {
		t.Fatal(err)
	}
	j, _ = x.fsm.Job(res.JobID)
	if st := j.GetTasks()[0].GetState(); st != gv1.TaskState_TASK_STATE_PENDING {
		t.Fatalf("job other acknowledged with its task %s; want pending (no agent has its label)", st)
	}
}

// An agent that drains (or goes silent) right after a pass counted its
// free slots is not given the next submit's task: Submit checks each agent
// it places on against the fleet as it is now.
func TestSubmitSkipsAnAgentDrainedSinceThePass(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	got := x.leading(t, "a1", 2)
	if _, err := x.d.fleet.Observe(&gv1.Heartbeat{Agent: &gv1.AgentInfo{Name: "a1", Slots: 2, Capabilities: []string{"exec"}, Draining: true}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The spare as a pass just before the drain left it.
	x.d.placeMu.Lock()
	x.d.spare = scheduler.NewPass([]scheduler.Candidate{{Name: "a1", Free: 2, Capabilities: []string{"exec"}}}, nil, time.Now().UnixNano())
	x.d.spareAt = time.Now()
	x.d.placeMu.Unlock()
	res, err := x.d.Submit(context.Background(), jobCommand("after-drain", nil))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := x.fsm.Job(res.JobID)
	if tk := j.GetTasks()[0]; tk.GetState() != gv1.TaskState_TASK_STATE_PENDING || tk.GetAgent() != "" {
		t.Fatalf("task submitted after its only agent drained: %s on %q; want pending on no agent", tk.GetState(), tk.GetAgent())
	}
	select {
	case as := <-got:
		t.Fatalf("the drained agent was sent %v", as.GetRef())
	default:
	}
}

// A committed report gives its agent's slot back to the free slots Submit
// places on, without a recount: the next task on a full agent is assigned
// by its submit's own commit. A slot the last count already saw free is not
// given twice.
func TestReportGivesTheSlotBackToSubmit(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	got := x.leading(t, "a1", 1)
	finish := func(id string) {
		t.Helper()
		var as *gv1.Assignment
		select {
		case as = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("the agent never got %s", id)
		}
		r := &gv1.Report{Ref: as.GetRef(), Success: true}
		if reply, outcome := x.d.report(x.ctx, x.ns.Report("a1"), marshal(t, r)); !reply.GetAccepted() || outcome != "accepted" {
			t.Fatalf("report of %s: %v (%s)", id, reply, outcome)
		}
	}
	// No recount between the submits: the spare is as the first pass
	// left it, plus what reports gave back.
	x.d.placeMu.Lock()
	x.d.spareAt = time.Now().Add(time.Hour)
	x.d.placeMu.Unlock()
	for i := range 3 {
		id := fmt.Sprintf("j%d", i)
		res, err := x.d.Submit(context.Background(), jobCommand(id, nil))
		if err != nil {
			t.Fatal(err)
		}
		j, _ := x.fsm.Job(res.JobID)
		if st := j.GetTasks()[0].GetState(); st != gv1.TaskState_TASK_STATE_ASSIGNED {
			t.Fatalf("job %s acknowledged with its task %s; want assigned by its own commit (the slot the last report freed)", id, st)
		}
		finish(id)
	}
	// Counted after the last report: the free slot is in the count, and
	// a late credit for that report changes nothing.
	x.d.placeMu.Lock()
	cands, index := x.d.candidates(time.Now())
	x.d.spare, x.d.spareIndex = scheduler.NewPass(cands, nil, time.Now().UnixNano()), index
	x.d.placeMu.Unlock()
	x.d.credit("a1", index)
	for _, id := range []string{"fits", "full"} {
		res, err := x.d.Submit(context.Background(), jobCommand(id, nil))
		if err != nil {
			t.Fatal(err)
		}
		j, _ := x.fsm.Job(res.JobID)
		want := gv1.TaskState_TASK_STATE_ASSIGNED
		if id == "full" {
			want = gv1.TaskState_TASK_STATE_PENDING
		}
		if st := j.GetTasks()[0].GetState(); st != want {
			t.Fatalf("job %s acknowledged with its task %s; want %s (one slot, counted once)", id, st, want)
		}
	}
}
