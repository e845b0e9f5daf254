package fsm_test

import (
	"bytes"
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func deploySpec(name, app, rev string) *gv1.TaskSpec {
	return &gv1.TaskSpec{Name: name, Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{
		App: app, Cluster: "local", Namespace: "shop", Trigger: "commit",
		Source: &gv1.ManifestSource{Git: &gv1.GitSource{Url: "file:///r.git", Revision: rev}, Path: "k8s"},
	}}}
}

func createAppCmd(sec int, name string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_CreateApp{CreateApp: &gv1.CreateAppCommand{Spec: &gv1.AppSpec{
		Name: name, Repo: "file:///r.git", Path: "k8s", Revision: "main", Cluster: "local", Namespace: "shop", AutoSync: true,
	}}}}
}

func pinCmd(sec int, name, rev string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_PinApp{PinApp: &gv1.PinAppCommand{Name: name, Revision: rev}}}
}

func TestAppLifecycleAndDeployHistory(t *testing.T) {
	h := newHarness(t)
	h.ok(createAppCmd(1, "web"))
	h.refused(createAppCmd(2, "web"), "", fsm.ErrConflict)
	h.refused(pinCmd(2, "nope", "abc"), "", fsm.ErrNotFound)
	h.ok(&gv1.Command{At: ts(2), Cmd: &gv1.Command_ObserveRevision{ObserveRevision: &gv1.ObserveRevisionCommand{Name: "web", Revision: "aaa"}}})

	// Two deploys: each assignment gets a higher fencing token; the first
	// succeeds, the second rolls back.
	h.ok(submitCmd(3, newJob("j1", "", 0, deploySpec("deploy", "web", "aaa"))))
	h.ok(assignCmd(4, "j1", "deploy", 1, "agent-1"))
	app, fence1, ok := h.f.DeployAttempt(ref("j1", "deploy", 1))
	if !ok || app != "web" || fence1 == 0 {
		t.Fatalf("DeployAttempt = %q %d %v", app, fence1, ok)
	}
	h.ok(reportCmd(5, &gv1.Report{Ref: ref("j1", "deploy", 1), Success: true, Agent: "agent-1",
		Outputs: map[string]string{"revision": "aaa", "images": `{"web":"r/web@sha256:1"}`}}))
	h.ok(submitCmd(6, newJob("j2", "", 0, deploySpec("deploy", "web", "bbb"))))
	h.ok(assignCmd(7, "j2", "deploy", 1, "agent-2"))
	_, fence2, _ := h.f.DeployAttempt(ref("j2", "deploy", 1))
	if fence2 <= fence1 {
		t.Fatalf("second fence %d not above first %d", fence2, fence1)
	}
	h.ok(reportCmd(8, &gv1.Report{Ref: ref("j2", "deploy", 1), Failure: gv1.FailureClass_FAILURE_CLASS_JOB, Error: "unhealthy", Agent: "agent-2",
		Outputs: map[string]string{"result": "rolled_back", "rolled_back_to": "aaa"}}))

	a, ok := h.f.App("web")
	if !ok {
		t.Fatal("app web missing")
	}
	if a.LatestRevision != "aaa" || len(a.History) != 2 {
		t.Fatalf("app = %v", a)
	}
	first, second := a.History[0], a.History[1]
	if first.Id != 1 || first.Result != gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED || first.Images["web"] != "r/web@sha256:1" || first.Fence != fence1 || first.Trigger != "commit" {
		t.Errorf("first record = %v", first)
	}
	if second.Id != 2 || second.Result != gv1.DeployResult_DEPLOY_RESULT_ROLLED_BACK || second.Revision != "bbb" || second.FinishedAt == nil {
		t.Errorf("second record = %v", second)
	}
	if got := fsm.DeployedRevision(a); got != "aaa" {
		t.Errorf("DeployedRevision = %q, want aaa", got)
	}

	h.ok(pinCmd(9, "web", "aaa"))
	if a, _ := h.f.App("web"); a.PinnedRevision != "aaa" {
		t.Errorf("pinned = %q", a.PinnedRevision)
	}

	// Apps, history and the fence survive a snapshot.
	data := snapshotBytes(t, h.f)
	r := restored(t, data)
	if !bytes.Equal(stateBytes(t, r), stateBytes(t, h.f)) {
		t.Fatal("restored state differs")
	}
	h2 := &harness{t: t, f: r, index: h.index}
	h2.ok(submitCmd(10, newJob("j3", "", 0, deploySpec("deploy", "web", "ccc"))))
	h2.ok(assignCmd(11, "j3", "deploy", 1, "agent-1"))
	if _, fence3, _ := r.DeployAttempt(ref("j3", "deploy", 1)); fence3 <= fence2 {
		t.Errorf("fence after restore %d not above %d", fence3, fence2)
	}
	h2.ok(cancelCmd(12, "j3", "superseded"))
	a, _ = r.App("web")
	if last := fsm.LastDeploy(a); last.Result != gv1.DeployResult_DEPLOY_RESULT_CANCELED {
		t.Errorf("canceled deploy recorded as %v", last.Result)
	}

	h2.ok(&gv1.Command{At: ts(13), Cmd: &gv1.Command_DeleteApp{DeleteApp: &gv1.DeleteAppCommand{Name: "web"}}})
	if _, ok := r.App("web"); ok {
		t.Error("deleted app still there")
	}
}

func TestPipelineDeployRecordedUnderJobAndTask(t *testing.T) {
	h := newHarness(t)
	s := deploySpec("ship", "", "main")
	s.GetDeploy().Trigger = ""
	h.ok(submitCmd(1, newJob("j1", "", 0, s)))
	h.ok(assignCmd(2, "j1", "ship", 1, "a"))
	h.ok(requeueCmd(3, "j1", "ship", 1, "agent lost"))
	views := h.f.AppViews()
	if len(views) != 1 || views[0].Spec.GetName() != "pipeline-j1.ship" || views[0].Deployed != 1 {
		t.Fatalf("apps = %+v", views)
	}
	rec := views[0].Last
	if rec.Trigger != "pipeline" || rec.Result != gv1.DeployResult_DEPLOY_RESULT_FAILED || rec.Message != "agent lost" {
		t.Errorf("record = %v", rec)
	}
	// A pipeline-only application can be adopted by a GitOps one.
	h.ok(createAppCmd(4, "pipeline-j1.ship"))
}

func TestDecodeRejectsGarbage(t *testing.T) {
	if _, err := fsm.Decode([]byte("not a snapshot")); err == nil {
		t.Error("Decode accepted garbage")
	}
	h := newHarness(t)
	h.ok(createAppCmd(1, "web"))
	snap, err := fsm.Decode(snapshotBytes(t, h.f))
	if err != nil || len(snap.Apps) != 1 {
		t.Fatalf("Decode = %v, %v", snap, err)
	}
}

func TestPruneJobsForgetsOnlyEndedOldJobs(t *testing.T) {
	h := newHarness(t)
	h.ok(submitCmd(1, newJob("old-done", "k-old", 0, spec("a"))))
	h.ok(assignCmd(2, "old-done", "a", 1, "ag"))
	h.ok(successCmd(3, "old-done", "a", 1, "ag"))
	h.ok(submitCmd(4, newJob("old-running", "k-run", 0, spec("a"))))
	h.ok(assignCmd(5, "old-running", "a", 1, "ag"))
	h.ok(submitCmd(6, newJob("old-pending", "", 0, spec("a"))))
	h.ok(submitCmd(7, newJob("new-done", "k-new", 0, spec("a"))))
	h.ok(cancelCmd(20, "new-done", "x"))

	h.refused(&gv1.Command{At: ts(30), Cmd: &gv1.Command_PruneJobs{PruneJobs: &gv1.PruneJobsCommand{}}}, "", fsm.ErrInvalid)
	for _, f := range []*fsm.FSM{h.f, restored(t, snapshotBytes(t, h.f))} {
		if !f.PrunableBefore(ts(10).AsTime()) || f.PrunableBefore(ts(3).AsTime()) {
			t.Fatalf("PrunableBefore 10 s = %v, 3 s = %v; want true (old-done ended at 3 s), false",
				f.PrunableBefore(ts(10).AsTime()), f.PrunableBefore(ts(3).AsTime()))
		}
	}
	r := h.ok(&gv1.Command{At: ts(30), Cmd: &gv1.Command_PruneJobs{PruneJobs: &gv1.PruneJobsCommand{FinishedBefore: ts(10)}}})
	if r.Pruned != 1 {
		t.Fatalf("pruned %d jobs, want 1", r.Pruned)
	}
	if h.f.PrunableBefore(ts(20).AsTime()) || !h.f.PrunableBefore(ts(21).AsTime()) {
		t.Error("after the prune, the oldest end is not new-done's (20 s)")
	}
	if _, ok := h.f.Job("old-done"); ok {
		t.Error("old finished job still there")
	}
	for _, id := range []string{"old-running", "old-pending", "new-done"} {
		if _, ok := h.f.Job(id); !ok {
			t.Errorf("job %s pruned", id)
		}
	}
	// Its idempotency key is free again; the others still answer.
	if res := h.ok(submitCmd(31, newJob("again", "k-old", 0, spec("a")))); res.Existing {
		t.Error("key of a pruned job still maps to it")
	}
	if res := h.ok(submitCmd(32, newJob("dup", "k-run", 0, spec("a")))); !res.Existing || res.JobID != "old-running" {
		t.Errorf("key of a kept job: %+v", res)
	}
	// Replicas restored from a snapshot agree.
	if !bytes.Equal(stateBytes(t, restored(t, snapshotBytes(t, h.f))), stateBytes(t, h.f)) {
		t.Error("state after prune does not survive a snapshot")
	}
}
