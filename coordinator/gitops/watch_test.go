package gitops

import (
	"fmt"
	"testing"
)

func TestPickSpreadsAndIsStable(t *testing.T) {
	agents := []string{"a1", "a2", "a3"}
	count := map[string]int{}
	for i := range 300 {
		app := fmt.Sprintf("app-%d", i)
		owner := pick(app, agents)
		if owner != pick(app, []string{"a3", "a1", "a2"}) {
			t.Fatalf("pick of %s depends on the order of agents", app)
		}
		count[owner]++
	}
	for _, a := range agents {
		if count[a] < 60 {
			t.Errorf("agent %s watches %d of 300 apps: not spread (%v)", a, count[a], count)
		}
	}
	// Removing an agent moves only its own applications.
	moved := 0
	for i := range 300 {
		app := fmt.Sprintf("app-%d", i)
		before := pick(app, agents)
		after := pick(app, []string{"a1", "a2"})
		if before != "a3" && before != after {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d applications moved between agents that stayed", moved)
	}
	if pick("x", nil) != "" {
		t.Error("pick with no agents must be empty")
	}
}
