package dispatch

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/scheduler"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// backlog is an FSM with n pending one-task jobs spread over 50 label
// sets, and 100 agents: 10 with two free slots, matching label sets 0-9,
// the rest full.
func backlog(tb testing.TB, n int) (*fsm.FSM, []scheduler.Candidate) {
	tb.Helper()
	f := fsm.New()
	at := timestamppb.New(time.Unix(1_700_000_000, 0))
	var cmds []*gv1.Command
	index := uint64(0)
	flush := func() {
		data, err := proto.Marshal(&gv1.Batch{Commands: cmds})
		if err != nil {
			tb.Fatal(err)
		}
		index++
		f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data})
		cmds = cmds[:0]
	}
	for i := range n {
		spec := &gv1.TaskSpec{Name: "t", Labels: map[string]string{"set": fmt.Sprint(i % 50)},
			Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"true"}}}}
		id := fmt.Sprintf("j%07d", i)
		cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
			Id: id, Spec: &gv1.JobSpec{Name: "backlog", Tasks: []*gv1.TaskSpec{spec}},
			Tasks: []*gv1.Task{{Name: "t", Spec: spec}},
		}}}})
		if len(cmds) == 1000 {
			flush()
		}
	}
	if len(cmds) > 0 {
		flush()
	}
	if got := f.PendingCount(); got != n {
		tb.Fatalf("%d pending, want %d", got, n)
	}
	var cands []scheduler.Candidate
	for i := range 100 {
		c := scheduler.Candidate{Name: fmt.Sprintf("a%03d", i), Labels: map[string]string{"set": fmt.Sprint(i % 50)}, Capabilities: []string{"exec"}}
		if i < 10 {
			c.Free = 2
		}
		cands = append(cands, c)
	}
	return f, cands
}

// BenchmarkSchedulePass measures one scheduling pass (what the leader does
// whenever the state or the fleet changes) over a queue of 100 and of
// 100,000 pending tasks, against the whole-queue pass it replaced (sorted
// snapshot of every pending task, each offered in turn).
func BenchmarkSchedulePass(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		f, cands := backlog(b, n)
		now := time.Unix(1_700_000_100, 0)
		benchPass(b, n, f, cands, now)
		b.Run(fmt.Sprintf("pending=%d/whole-queue", n), func(b *testing.B) {
			for b.Loop() {
				scheduler.Schedule(f.Pending(), cands, f.BusyConcurrency(), now.UnixNano())
			}
		})
	}
}

// benchPass times SchedulePass over f's queue of n, which must place 20.
func benchPass(b *testing.B, n int, f *fsm.FSM, cands []scheduler.Candidate, now time.Time) {
	b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
		placed := 0
		for b.Loop() {
			placed = len(SchedulePass(f, cands, now).Placements)
		}
		if placed != 20 {
			b.Fatalf("placed %d, want 20", placed)
		}
	})
}

// unplaceable is backlog's queue with agents that fit none of it but 20
// newer tasks of their own label set: free slots stay free, so a pass
// cannot stop early; it must skip the classes it cannot place.
func unplaceable(tb testing.TB, n int) (*fsm.FSM, []scheduler.Candidate) {
	tb.Helper()
	f, _ := backlog(tb, n)
	at := timestamppb.New(time.Unix(1_700_000_050, 0))
	var cmds []*gv1.Command
	for i := range 20 {
		spec := &gv1.TaskSpec{Name: "t", Labels: map[string]string{"set": "fleet"},
			Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"true"}}}}
		id := fmt.Sprintf("f%07d", i)
		cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
			Id: id, Spec: &gv1.JobSpec{Name: "fleet", Tasks: []*gv1.TaskSpec{spec}},
			Tasks: []*gv1.Task{{Name: "t", Spec: spec}},
		}}}})
	}
	data, err := proto.Marshal(&gv1.Batch{Commands: cmds})
	if err != nil {
		tb.Fatal(err)
	}
	f.Apply(&raft.Log{Index: f.AppliedIndex() + 1, Term: 1, Type: raft.LogCommand, Data: data})
	var cands []scheduler.Candidate
	for i := range 10 {
		cands = append(cands, scheduler.Candidate{Name: fmt.Sprintf("f%02d", i), Labels: map[string]string{"set": "fleet"}, Capabilities: []string{"exec"}, Free: 16})
	}
	return f, cands
}

// BenchmarkSchedulePassUnplaceable: 20 placeable tasks behind 100 or
// 100,000 that no agent fits, with slots left free.
func BenchmarkSchedulePassUnplaceable(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		f, cands := unplaceable(b, n)
		now := time.Unix(1_700_000_100, 0)
		benchPass(b, n, f, cands, now)
	}
}

func TestSchedulePassSkipsUnplaceableClasses(t *testing.T) {
	f, cands := unplaceable(t, 3000)
	now := time.Unix(1_700_000_100, 0)
	fast := SchedulePass(f, cands, now)
	whole := scheduler.Schedule(f.Pending(), cands, f.BusyConcurrency(), now.UnixNano())
	if len(fast.Placements) != 20 || len(whole.Placements) != 20 {
		t.Fatalf("%d placements, the whole-queue pass makes %d; want 20", len(fast.Placements), len(whole.Placements))
	}
	for i := range fast.Placements {
		if fast.Placements[i].Task.Key != whole.Placements[i].Task.Key || fast.Placements[i].Agent != whole.Placements[i].Agent {
			t.Fatalf("placement %d differs from the whole-queue pass", i)
		}
	}
	for i := range 50 {
		if r := fast.WaitingClass[fmt.Sprintf("set=%d|exec|", i)]; r != fmt.Sprintf("no agent with labels set=%d", i) {
			t.Errorf("class set=%d waits because %q", i, r)
		}
	}
}

func TestSchedulePassPlacesAsTheWholeQueuePass(t *testing.T) {
	f, cands := backlog(t, 2000)
	now := time.Unix(1_700_000_100, 0)
	fast := SchedulePass(f, cands, now)
	whole := scheduler.Schedule(f.Pending(), cands, f.BusyConcurrency(), now.UnixNano())
	if len(fast.Placements) != len(whole.Placements) {
		t.Fatalf("%d placements, the whole-queue pass makes %d", len(fast.Placements), len(whole.Placements))
	}
	for i := range fast.Placements {
		if fast.Placements[i].Task.Key != whole.Placements[i].Task.Key || fast.Placements[i].Agent != whole.Placements[i].Agent {
			t.Fatalf("placement %d: %v on %s, the whole-queue pass: %v on %s", i, fast.Placements[i].Task.Key, fast.Placements[i].Agent,
				whole.Placements[i].Task.Key, whole.Placements[i].Agent)
		}
	}
	// A task of a blocked class says why it waits.
	if r := fast.WaitingClass["set=20|exec|"]; r != "all matching agents busy" {
		t.Errorf("class set=20 waits because %q", r)
	}
}
