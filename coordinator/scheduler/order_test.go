package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
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
		sort.SliceStable(want, func(a, b int) bool { return less(want[a], want[b]) })
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
