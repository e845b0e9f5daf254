package fsm_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/scheduler"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestBlockedListsUnmetNeeds(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(0, newJob("low", "", 1, spec("a"), spec("b"), spec("c", "a", "b"))))
	h.ok(submitCmd(1, newJob("high", "", 9, spec("x"), spec("y", "x"))))
	h.ok(assignCmd(2, "low", "a", 1, "ag"))
	h.ok(startCmd(2, "low", "a", 1))
	h.ok(successCmd(3, "low", "a", 1, "ag"))

	var got []string
	for _, b := range h.f.Blocked() {
		got = append(got, b.Key.JobID+"/"+b.Key.Task)
		if b.Key == (fsm.TaskKey{JobID: "low", Task: "c"}) && !reflect.DeepEqual(b.Unmet, []string{"b"}) {
			t.Errorf("low/c unmet needs = %v, want [b]", b.Unmet)
		}
		if b.Key.JobID == "low" && !b.CreatedAt.Equal(ts(0).AsTime()) {
			t.Errorf("low/c created at %v, want %v", b.CreatedAt, ts(0).AsTime())
		}
	}
	if want := []string{"high/y", "low/c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Blocked() = %v, want %v (higher priority first)", got, want)
	}

	h.ok(cancelCmd(4, "high", ""))
	if got := h.f.Blocked(); len(got) != 1 || got[0].Key.JobID != "low" {
		t.Errorf("Blocked() after canceling high = %v, want only low/c", got)
	}
}

func TestRecentStartsReadRecordedRunnableTimes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(0, newJob("j", "", 0, withRetries(spec("a"), 1), spec("b", "a"))))
	// a: runnable at 0, started at 2.
	h.ok(assignCmd(1, "j", "a", 1, "ag"))
	h.ok(startCmd(2, "j", "a", 1))
	// a fails at 10; the retry is runnable after its 1s backoff, at 11.
	h.ok(failCmd(10, "j", "a", 1, "ag"))
	h.ok(assignCmd(12, "j", "a", 2, "ag"))
	h.ok(startCmd(14, "j", "a", 2))
	h.ok(successCmd(20, "j", "a", 2, "ag"))
	// b: runnable when a succeeded (20), started at 25.
	h.ok(assignCmd(24, "j", "b", 1, "ag"))
	h.ok(startCmd(25, "j", "b", 1))

	waits := map[string][]time.Duration{}
	for _, s := range h.f.RecentStarts(time.Time{}, 0) {
		key := "a"
		if s.StartedAt.Equal(ts(25).AsTime()) {
			key = "b"
		}
		waits[key] = append(waits[key], s.Wait)
	}
	want := map[string][]time.Duration{"a": {2 * time.Second, 3 * time.Second}, "b": {5 * time.Second}}
	if !reflect.DeepEqual(waits, want) {
		t.Errorf("RecentStarts waits = %v, want %v", waits, want)
	}
	if got := h.f.RecentStarts(ts(14).AsTime(), 0); len(got) != 2 {
		t.Errorf("RecentStarts since 14s: %d samples, want 2 (a's retry and b)", len(got))
	}
	if got := h.f.RecentStarts(time.Time{}, 1); len(got) != 3 {
		t.Errorf("RecentStarts of the newest job: %d samples, want 3", len(got))
	}
}

// TestQueueViewAndSchedulerAgree checks that what the queue view lists
// (Pending: the order, and when each task is runnable) is what the
// scheduler acts on, and that both read the runnable time Apply stored:
// at every instant the scheduler places the runnable tasks in the view's
// order and holds back exactly those the view shows as runnable later.
func TestQueueViewAndSchedulerAgree(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("old", "", 0, withRetries(spec("a"), 2))))
	h.ok(submitCmd(2, newJob("dep", "", 0, spec("a"), spec("b", "a"))))
	h.ok(assignCmd(3, "old", "a", 1, "ag"))
	h.ok(failCmd(4, "old", "a", 1, "ag"))
	h.ok(assignCmd(5, "old", "a", 2, "ag"))
	h.ok(assignCmd(5, "dep", "a", 1, "ag"))
	h.ok(submitCmd(8, newJob("high", "", 5, spec("a"))))
	// old/a fails again at 9: queued at 9, runnable after its 2s backoff,
	// at 11. dep/b is runnable when dep/a succeeds, at 9.
	h.ok(failCmd(9, "old", "a", 2, "ag"))
	h.ok(successCmd(9, "dep", "a", 1, "ag"))
	// new/a is queued after old/a, at 10, but runnable before it.
	h.ok(submitCmd(10, newJob("new", "", 0, spec("a"))))

	view := h.f.Pending()
	var order []string
	for _, p := range view {
		key := p.Key.JobID + "/" + p.Key.Task
		order = append(order, key)
		if stored := h.task(p.Key.JobID, p.Key.Task).RunnableAt.AsTime().UnixNano(); p.RunnableAt != stored {
			t.Errorf("%s: view runnable at %d, stored %d", key, p.RunnableAt, stored)
		}
	}
	if want := []string{"high/a", "dep/b", "new/a", "old/a"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("queue view order %v, want %v (priority, then runnable time)", order, want)
	}
	wantRunnable := map[string]int64{"high/a": nanos(8), "dep/b": nanos(9), "new/a": nanos(10), "old/a": nanos(11)}
	for i, p := range view {
		if p.RunnableAt != wantRunnable[order[i]] {
			t.Errorf("%s runnable at %v, want %v", order[i], time.Unix(0, p.RunnableAt).UTC(), time.Unix(0, wantRunnable[order[i]]).UTC())
		}
	}

	agent := scheduler.Candidate{Name: "ag", Free: len(view), Capabilities: []string{"exec"}}
	for sec := 10; sec <= 12; sec++ {
		now := nanos(sec)
		var wantPlaced []string
		wantWaiting := map[string]string{}
		for i, p := range view {
			if p.RunnableAt > now {
				wantWaiting[order[i]] = "retry backoff"
			} else {
				wantPlaced = append(wantPlaced, order[i])
			}
		}
		plan := scheduler.Schedule(view, []scheduler.Candidate{agent}, nil, now)
		var placed []string
		for _, pl := range plan.Placements {
			placed = append(placed, pl.Task.Key.JobID+"/"+pl.Task.Key.Task)
		}
		if !reflect.DeepEqual(placed, wantPlaced) || !reflect.DeepEqual(plan.Waiting, wantWaiting) {
			t.Errorf("at %ds: scheduler placed %v and held %v; the view says %v runnable, %v not yet",
				sec, placed, plan.Waiting, wantPlaced, wantWaiting)
		}
	}

	// A snapshot carries the decision; a snapshot written before it was
	// stored gets the time the scheduler used then.
	data := snapshotBytes(t, h.f)
	if got, want := pendingViews(restored(t, data)), pendingViews(h.f); !reflect.DeepEqual(got, want) {
		t.Errorf("restored queue view\n%v\nwant\n%v", got, want)
	}
	var snap gv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	for _, j := range snap.Jobs {
		for _, task := range j.Tasks {
			task.RunnableAt = nil
		}
	}
	old, err := proto.Marshal(&snap)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pendingViews(restored(t, old)), pendingViews(h.f); !reflect.DeepEqual(got, want) {
		t.Errorf("queue view restored from a snapshot without runnable times\n%v\nwant\n%v", got, want)
	}

	// The start latency is measured from the same time: old/a's third
	// attempt waited from 11, not from when it was queued (9).
	h.ok(assignCmd(12, "old", "a", 3, "ag"))
	h.ok(startCmd(13, "old", "a", 3))
	if got := h.f.RecentStarts(ts(13).AsTime(), 0); len(got) != 1 || got[0].Wait != 2*time.Second {
		t.Errorf("RecentStarts since 13s = %+v; want old/a waiting 2s (runnable at 11, started at 13)", got)
	}
}

// Blocked tasks of one priority come oldest job first, in submit order,
// also with ended jobs between them and after a restore.
func TestBlockedInSubmitOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var want []string
	for i := range 30 {
		id := fmt.Sprintf("j%02d", i)
		h.ok(submitCmd(i, newJob(id, "", 5, spec("a"), spec("b", "a"))))
		if i%4 == 0 {
			h.ok(cancelCmd(i, id, "ended"))
			continue
		}
		want = append(want, id+"/b")
	}
	for _, f := range []*fsm.FSM{h.f, restored(t, snapshotBytes(t, h.f))} {
		var got []string
		for _, b := range f.Blocked() {
			got = append(got, b.Key.JobID+"/"+b.Key.Task)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Blocked() = %v, want %v (submit order)", got, want)
		}
	}
}
