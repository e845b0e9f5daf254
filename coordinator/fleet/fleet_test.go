package fleet

import (
	"errors"
	"fmt"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func hbOf(name string) *gv1.Heartbeat {
	return &gv1.Heartbeat{Agent: &gv1.AgentInfo{Name: name, Slots: 1}}
}

func TestViewIsBounded(t *testing.T) {
	t.Parallel()
	f := NewBounded(time.Second, 3, time.Hour)
	now := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		if _, err := f.Observe(hbOf(fmt.Sprint("a", i)), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Observe(hbOf("new"), now); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth agent in a fleet of 3 live agents: %v; want ErrFull", err)
	}
	// Known agents still renew.
	if _, err := f.Observe(hbOf("a0"), now.Add(500*time.Millisecond)); err != nil {
		t.Fatalf("known agent refused in a full fleet: %v", err)
	}
	// Once the others are lost, they make room.
	later := now.Add(1200 * time.Millisecond)
	if _, err := f.Observe(hbOf("new"), later); err != nil {
		t.Fatalf("new agent with lost agents in the view: %v", err)
	}
	got := map[string]bool{}
	for _, a := range f.Agents(later, 0) {
		got[a.Info.Name] = true
	}
	if len(got) > 3 || !got["a0"] || !got["new"] {
		t.Fatalf("fleet %v; want at most 3 with a0 (alive) and new", got)
	}
}

func TestViewForgetsSilentAgents(t *testing.T) {
	t.Parallel()
	f := NewBounded(time.Second, 10, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	if _, err := f.Observe(hbOf("old"), now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Observe(hbOf("a1"), now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.LastSeen("old"); ok {
		t.Fatal("agent silent past the forget time still in the view")
	}
	if _, ok := f.LastSeen("a1"); !ok {
		t.Fatal("live agent missing")
	}
}

// EachActive walks the live, undrained agents by name, and Agents every
// agent by name, as agents join and are forgotten.
func TestEachActiveByName(t *testing.T) {
	t.Parallel()
	f := NewBounded(time.Second, 10, time.Minute)
	now := time.Unix(1_800_000_000, 0)
	for _, n := range []string{"c", "a", "old", "b"} {
		if _, err := f.Observe(hbOf(n), now); err != nil {
			t.Fatal(err)
		}
	}
	drain := hbOf("b")
	drain.Agent.Draining = true
	later := now.Add(2 * time.Minute)
	for _, hb := range []*gv1.Heartbeat{hbOf("c"), hbOf("a"), drain, hbOf("d")} {
		if _, err := f.Observe(hb, later); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	f.EachActive(later, func(info *gv1.AgentInfo) { got = append(got, info.Name) })
	if fmt.Sprint(got) != "[a c d]" {
		t.Errorf("EachActive = %v; want [a c d] (old forgotten, b draining)", got)
	}
	got = nil
	f.EachActive(later.Add(2*time.Second), func(info *gv1.AgentInfo) { got = append(got, info.Name) })
	if len(got) != 0 {
		t.Errorf("EachActive after the TTL = %v; want none", got)
	}
	got = nil
	for _, a := range f.Agents(later, 0) {
		got = append(got, a.Info.Name+"/"+a.State.String())
	}
	if want := "[a/AGENT_STATE_ACTIVE b/AGENT_STATE_DRAINING c/AGENT_STATE_ACTIVE d/AGENT_STATE_ACTIVE]"; fmt.Sprint(got) != want {
		t.Errorf("Agents = %v; want %s", got, want)
	}
}

func TestRosterIgnoresSlotChanges(t *testing.T) {
	t.Parallel()
	f := New(time.Second)
	now := time.Unix(1_800_000_000, 0)
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	observe := func(hb *gv1.Heartbeat) {
		t.Helper()
		if _, err := f.Observe(hb, now); err != nil {
			t.Fatal(err)
		}
	}
	roster, changed := f.Roster(), f.Changed()
	observe(hbOf("a"))
	if !closed(roster) || !closed(changed) {
		t.Fatal("a new agent: want Roster and Changed closed")
	}
	// The agent takes a task: the schedule changes, the roster does not.
	roster, changed = f.Roster(), f.Changed()
	busy := hbOf("a")
	busy.Running = []*gv1.TaskRef{{JobId: "j", Task: "t", Attempt: 1}}
	observe(busy)
	if closed(roster) || !closed(changed) {
		t.Fatalf("a slot taken: Roster closed %v (want false), Changed closed %v (want true)", closed(roster), closed(changed))
	}
	// Each step changes one thing over the step before.
	for _, step := range []struct {
		name string
		info *gv1.AgentInfo
	}{
		{"draining", &gv1.AgentInfo{Name: "a", Slots: 1, Draining: true}},
		{"capabilities", &gv1.AgentInfo{Name: "a", Slots: 1, Draining: true, Capabilities: []string{"cluster:x"}}},
		{"restarted", &gv1.AgentInfo{Name: "a", Slots: 1, Draining: true, Capabilities: []string{"cluster:x"}, Session: "s2"}},
	} {
		roster = f.Roster()
		observe(&gv1.Heartbeat{Agent: step.info, Running: busy.Running})
		if !closed(roster) {
			t.Fatalf("%s: Roster not closed", step.name)
		}
	}
}

// EachActive walks the agents by name with their latest heartbeats, as
// agents come, send heartbeats and are forgotten.
func TestEachActiveInNameOrder(t *testing.T) {
	t.Parallel()
	f := NewBounded(time.Second, 100, 2*time.Second)
	now := time.Unix(1_800_000_000, 0)
	observe := func(name string, slots int32, at time.Time) {
		t.Helper()
		if _, err := f.Observe(&gv1.Heartbeat{Agent: &gv1.AgentInfo{Name: name, Slots: slots}}, at); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		observe(n, 1, now)
	}
	// Later heartbeats replace what an agent said; "e" stays silent.
	later := now.Add(1500 * time.Millisecond)
	for _, n := range []string{"d", "a", "c", "b"} {
		observe(n, 2, later)
	}
	// Past e's forget time: it is forgotten (the sweep runs at a
	// heartbeat), and a new agent comes.
	last := now.Add(3 * time.Second)
	observe("aa", 3, last)
	for _, n := range []string{"a", "b", "c", "d"} {
		observe(n, 4, last)
	}
	var got []string
	f.EachActive(last, func(info *gv1.AgentInfo) {
		got = append(got, fmt.Sprintf("%s:%d", info.GetName(), info.GetSlots()))
	})
	want := []string{"a:4", "aa:3", "b:4", "c:4", "d:4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("EachActive: %v; want %v", got, want)
	}
}
