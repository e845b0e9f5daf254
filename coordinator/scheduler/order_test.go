package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// NewPass orders agents as less does (most free first, then by name),
// whatever order they come in and whatever their free slots (negative
// ones included).
func TestNewPassOrdersAsLess(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		cs := make([]Candidate, rng.IntN(40))
		for i := range cs {
			cs[i] = Candidate{Name: fmt.Sprintf("a%03d", rng.IntN(1000)), Free: rng.IntN(7) - 2}
		}
		if rng.IntN(2) == 0 {
			slices.SortFunc(cs, func(a, b Candidate) int { return cmpName(a, b) })
		}
		want := slices.Clone(cs)
		sort.SliceStable(want, func(a, b int) bool { return want[a].Name < want[b].Name })
		sort.SliceStable(want, func(a, b int) bool { return less(&want[a], &want[b]) })
		got := NewPass(cs, nil, 0).free
		for i := range want {
			if got[i].Name != want[i].Name || got[i].Free != want[i].Free {
				t.Fatalf("order %v, want %v", got, want)
			}
		}
	}
}

func cmpName(a, b Candidate) int {
	switch {
	case a.Name < b.Name:
		return -1
	case a.Name > b.Name:
		return 1
	}
	return 0
}

// Each placement keeps the free list in the order NewPass gives it (most
// free first, then by name), whichever agent it took a slot from.
func TestPlacementsKeepTheOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	exec := []string{capability.Exec}
	for range 200 {
		cs := make([]Candidate, 1+rng.IntN(40))
		for i := range cs {
			cs[i] = Candidate{Name: fmt.Sprintf("a%03d", i), Free: rng.IntN(5), Capabilities: exec,
				Labels: map[string]string{"pool": fmt.Sprint(rng.IntN(3))}}
		}
		p := NewPass(cs, nil, 0)
		for n := range 30 {
			spec := &gv1.TaskSpec{Name: "t", Labels: map[string]string{"pool": fmt.Sprint(rng.IntN(3))}, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
			p.Place(fsm.PendingTask{Key: fsm.TaskKey{JobID: fmt.Sprint(n), Task: "t"}, Spec: spec})
			if !inOrder(p.free) {
				t.Fatalf("after placement %d the free list is out of order: %v", n, p.free)
			}
		}
	}
}

// Credits and placements in any mix keep the free list in order, count
// free slots as the agents' own counts add up, and give the credited
// agent exactly one slot; an agent the pass never counted is ignored.
func TestCreditsKeepTheOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	exec := []string{capability.Exec}
	spec := &gv1.TaskSpec{Name: "t", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
	for range 200 {
		cs := make([]Candidate, 1+rng.IntN(40))
		for i := range cs {
			cs[i] = Candidate{Name: fmt.Sprintf("a%03d", i), Free: rng.IntN(6) - 1, Capabilities: exec}
		}
		p := NewPass(cs, nil, 0)
		free := func(name string) int {
			for _, c := range p.free {
				if c.Name == name {
					return c.Free
				}
			}
			t.Fatalf("agent %s left the free list", name)
			return 0
		}
		for n := range 60 {
			if rng.IntN(2) == 0 {
				p.Place(fsm.PendingTask{Key: fsm.TaskKey{JobID: fmt.Sprint(n), Task: "t"}, Spec: spec})
			} else {
				name := cs[rng.IntN(len(cs))].Name
				before := free(name)
				p.Credit(name)
				if got := free(name); got != before+1 {
					t.Fatalf("credit %d: %s has %d free slots, want %d", n, name, got, before+1)
				}
			}
			p.Credit("not-counted")
			sum := 0
			for _, c := range p.free {
				sum += max(c.Free, 0)
			}
			if sum != p.freeSlots || len(p.free) != len(cs) {
				t.Fatalf("step %d: %d free slots counted over %d agents, the agents have %d over %d", n, p.freeSlots, len(p.free), sum, len(cs))
			}
			if !inOrder(p.free) {
				t.Fatalf("after step %d the free list is out of order: %v", n, p.free)
			}
		}
	}
}

// inOrder reports whether free is in the order less gives.
func inOrder(free []*Candidate) bool {
	return slices.IsSortedFunc(free, func(a, b *Candidate) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
}
