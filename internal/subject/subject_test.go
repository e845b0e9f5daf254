package subject

import "testing"

func TestReportAgent(t *testing.T) {
	t.Parallel()
	ns := New("prod")
	if got, ok := ns.ReportAgent(ns.Report("a-1")); !ok || got != "a-1" {
		t.Fatalf("ReportAgent(Report(a-1)) = %q, %v", got, ok)
	}
	for _, bad := range []string{"gantry.other.agent.a.report", "gantry.prod.agent..report", "gantry.prod.agent.a.b.report", "gantry.prod.agent.a.heartbeat"} {
		if got, ok := ns.ReportAgent(bad); ok {
			t.Errorf("ReportAgent(%q) = %q, want no agent", bad, got)
		}
	}
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "node-1", "A_b9"} {
		if err := ValidToken(ok); err != nil {
			t.Errorf("ValidToken(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "*", string(make([]byte, 65))} {
		if ValidToken(bad) == nil {
			t.Errorf("ValidToken(%q) accepted", bad)
		}
	}
}
