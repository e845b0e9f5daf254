package gitops

import (
	"fmt"
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestNormalizeURL(t *testing.T) {
	same := []string{
		"https://github.com/acme/shop",
		"https://GitHub.com/acme/shop.git",
		"https://github.com/acme/shop/",
		" https://github.com/acme/shop.git/ ",
	}
	for _, u := range same {
		if got := NormalizeURL(u); got != "https://github.com/acme/shop" {
			t.Errorf("NormalizeURL(%q) = %q", u, got)
		}
	}
	if NormalizeURL("https://github.com/acme/Shop") == NormalizeURL("https://github.com/acme/shop") {
		t.Error("paths are case-sensitive; they must not compare equal")
	}
	if got := NormalizeURL("file:///srv/repo.git"); got != "file:///srv/repo" {
		t.Errorf("file URL = %q", got)
	}
}

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

func TestTarget(t *testing.T) {
	for _, tt := range []struct {
		app  *gv1.App
		want string
	}{
		{&gv1.App{Spec: &gv1.AppSpec{AutoSync: true}, LatestRevision: "b"}, "b"},
		{&gv1.App{Spec: &gv1.AppSpec{AutoSync: false}, LatestRevision: "b"}, ""},
		{&gv1.App{Spec: &gv1.AppSpec{AutoSync: true}, LatestRevision: "b", PinnedRevision: "a"}, "a"},
		{&gv1.App{Spec: &gv1.AppSpec{}, PinnedRevision: "a"}, "a"},
	} {
		if got := Target(fsm.ViewOf(tt.app)); got != tt.want {
			t.Errorf("Target(%v) = %q, want %q", tt.app, got, tt.want)
		}
	}
}
