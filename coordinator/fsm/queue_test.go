package fsm_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/gantryci/gantry/coordinator/fsm"
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

func TestRecentStartsDerivesRunnableTimes(t *testing.T) {
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
