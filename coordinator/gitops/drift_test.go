package gitops

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// driftFixture is a controller over an FSM with applications app-00000
// and app-00001, in namespace "t".
func driftFixture(tb testing.TB) (*Controller, *fsm.FSM) {
	tb.Helper()
	f := loadApps(tb, 2, 0)
	c := New(Deps{Log: zap.NewNop(), FSM: f, Namespace: subject.New("t"), Fleet: fleet.New(time.Second), NewJobID: func() string { return "x" }})
	return c, f
}

func driftBytes(tb testing.TB, r *gv1.DriftReport) []byte {
	tb.Helper()
	data, err := proto.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// driftState is the table's content, encoded, for comparing before and
// after.
func driftState(c *Controller) map[string]string {
	c.drift.mu.Lock()
	defer c.drift.mu.Unlock()
	out := map[string]string{}
	for app, r := range c.drift.reports {
		data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		out[app] = string(data)
	}
	return out
}

func TestDriftKeepsReportsOfKnownApps(t *testing.T) {
	t.Parallel()
	c, f := driftFixture(t)
	ns := subject.New("t")
	now := time.Now()
	report := &gv1.DriftReport{App: "app-00000", Agent: "a1", Sync: gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC, ObservedAt: timestamppb.New(now)}
	if err := c.handleDrift(ns.Drift("a1"), driftBytes(t, report), now); err != nil {
		t.Fatalf("report of a known application refused: %v", err)
	}
	if c.Drift("app-00000").GetSync() != gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC {
		t.Fatal("report not kept")
	}
	for _, tt := range []struct {
		name string
		subj string
		r    *gv1.DriftReport
		want string
	}{
		{"unknown app", ns.Drift("a1"), &gv1.DriftReport{App: "ghost", Agent: "a1"}, "drift report.app: ghost: unknown application"},
		{"bad app name", ns.Drift("a1"), &gv1.DriftReport{App: "../x", Agent: "a1"}, "drift report.app: invalid name"},
		{"other agent", ns.Drift("a1"), &gv1.DriftReport{App: "app-00001", Agent: "a2"}, `drift report.agent: "a2", but the report came from agent a1`},
		{"no agent subject", "gantry.t.agent.drift", &gv1.DriftReport{App: "app-00001", Agent: "a1"}, "names no agent"},
	} {
		before := driftState(c)
		err := c.handleDrift(tt.subj, driftBytes(t, tt.r), now)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error saying %q", tt.name, err, tt.want)
		}
		if after := driftState(c); len(after) != len(before) || after["app-00000"] != before["app-00000"] {
			t.Errorf("%s: a refused report changed the table", tt.name)
		}
	}

	// A deleted application's report goes at the next prune.
	data, _ := proto.Marshal(&gv1.Batch{Commands: []*gv1.Command{{At: timestamppb.New(now), Cmd: &gv1.Command_DeleteApp{DeleteApp: &gv1.DeleteAppCommand{Name: "app-00000"}}}}})
	f.Apply(&raft.Log{Index: 1000, Type: raft.LogCommand, Data: data})
	later := now.Add(2 * driftPruneEvery)
	if err := c.handleDrift(ns.Drift("a1"), driftBytes(t, &gv1.DriftReport{App: "app-00001", Agent: "a1"}), later); err != nil {
		t.Fatal(err)
	}
	if c.Drift("app-00000") != nil || c.Drift("app-00001") == nil {
		t.Errorf("table holds %v; want only app-00001", driftState(c))
	}
}

func TestDriftReportIsClipped(t *testing.T) {
	t.Parallel()
	c, _ := driftFixture(t)
	long, value := strings.Repeat("v", 100_000), strings.Repeat("w", 2*limit.DriftValue)
	r := &gv1.DriftReport{App: "app-00000", Agent: "a1", Error: long, Revision: long}
	for range 4 * limit.DriftItems {
		r.Items = append(r.Items, &gv1.DriftItem{Object: value, Field: value, Want: value, Live: value})
	}
	if err := c.handleDrift(subject.New("t").Drift("a1"), driftBytes(t, r), time.Now()); err != nil {
		t.Fatal(err)
	}
	got := c.Drift("app-00000")
	if len(got.Items) != limit.DriftItems || len(got.Error) > limit.ReportError || len(got.Revision) > limit.LabelValue {
		t.Fatalf("kept %d items, a %d-byte error and a %d-byte revision", len(got.Items), len(got.Error), len(got.Revision))
	}
	for _, it := range got.Items {
		for _, s := range []string{it.Object, it.Field, it.Want, it.Live} {
			if len(s) > limit.DriftValue {
				t.Fatalf("kept a %d-byte drift value", len(s))
			}
		}
	}
}

// FuzzDriftReport feeds random and mutated drift reports to the handler:
// none panics, a refused one changes nothing, and what is kept is bounded.
func FuzzDriftReport(f *testing.F) {
	ns := subject.New("t")
	valid := &gv1.DriftReport{App: "app-00000", Agent: "a1", Revision: "abc", Fence: 3, Sync: gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC,
		Items: []*gv1.DriftItem{{Object: "apps/v1/Deployment ns/web", Field: "spec.replicas", Want: "2", Live: "3"}}, ObservedAt: timestamppb.Now()}
	f.Add("a1", driftBytes(f, valid))
	f.Add("a2", driftBytes(f, valid))
	f.Add("a1", driftBytes(f, &gv1.DriftReport{App: "ghost", Agent: "a1"}))
	f.Add("a.1", []byte{0x0a, 0x00})
	c, _ := driftFixture(f)
	f.Fuzz(func(t *testing.T, agent string, data []byte) {
		before := driftState(c)
		if err := c.handleDrift(ns.Drift(agent), data, time.Now()); err != nil {
			after := driftState(c)
			if len(after) != len(before) {
				t.Fatalf("refused report (%v) changed the table", err)
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("refused report (%v) changed %s", err, k)
				}
			}
		}
		c.drift.mu.Lock()
		defer c.drift.mu.Unlock()
		if len(c.drift.reports) > 2 {
			t.Fatalf("table holds %d reports for 2 applications", len(c.drift.reports))
		}
		for _, r := range c.drift.reports {
			if len(r.Items) > limit.DriftItems || len(r.Error) > limit.ReportError {
				t.Fatalf("kept an unbounded report: %d items, %d-byte error", len(r.Items), len(r.Error))
			}
		}
	})
}
