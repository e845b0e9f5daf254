package gitops

import (
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

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
