package subject

import (
	"strings"
	"testing"
)

func TestAgentSubjects(t *testing.T) {
	t.Parallel()
	ns := New("prod")
	own, ctl := ns.AgentOwn("a1"), ns.AgentControls("a1")
	for _, s := range []string{ns.Heartbeat("a1"), ns.Report("a1"), ns.Drift("a1")} {
		if !strings.HasPrefix(s, strings.TrimSuffix(own, ">")) {
			t.Errorf("%s is not under %s", s, own)
		}
	}
	for _, s := range []string{ns.Assign("a1"), ns.Control("a1"), ns.Watch("a1")} {
		if !strings.HasPrefix(s, strings.TrimSuffix(ctl, ">")) {
			t.Errorf("%s is not under %s", s, ctl)
		}
	}
	if !strings.HasPrefix(ns.Heartbeat("a1"), "gantry.prod.") || strings.HasPrefix(ns.Heartbeat("a10"), strings.TrimSuffix(own, ">")) {
		t.Errorf("%s covers another agent's subjects", own)
	}
}
