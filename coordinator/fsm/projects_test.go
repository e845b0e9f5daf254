package fsm_test

import (
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func createProjectCmd(sec int, name string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_CreateProject{CreateProject: &gv1.CreateProjectCommand{Project: &gv1.Project{
		Spec: &gv1.ProjectSpec{Name: name, Repo: "http://forge/acme/web.git", Forge: "gitea"},
	}}}}
}

func pushTrigger(ref, sha string) *gv1.Trigger {
	return &gv1.Trigger{Event: "push", Ref: "refs/heads/" + ref, Branch: ref, Sha: sha, Source: "webhook"}
}

func triggerCmd(sec int, project string, tr *gv1.Trigger, hold bool) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_TriggerBuild{TriggerBuild: &gv1.TriggerBuildCommand{
		Project: project, Trigger: tr, Key: tr.Event + "/" + tr.Ref + "/" + tr.Sha, Hold: hold,
	}}}
}

func startBuildCmd(sec int, project string, n uint64, j *gv1.Job) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_StartBuild{StartBuild: &gv1.StartBuildCommand{Project: project, Number: n, Job: j}}}
}

func statusCmd(sec int, project string, n uint64, state string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_BuildStatus{BuildStatus: &gv1.BuildStatusCommand{Project: project, Number: n, State: state}}}
}

func buildJob(id string, tr *gv1.Trigger, specs ...*gv1.TaskSpec) *gv1.Job {
	j := newJob(id, "build/"+id, 0, specs...)
	j.Spec.Trigger = tr
	return j
}

func TestTriggerOncePerKeyAndSupersede(t *testing.T) {
	h := newHarness(t)
	h.ok(createProjectCmd(1, "web"))
	h.refused(createProjectCmd(2, "web"), "", fsm.ErrConflict)

	tr1 := pushTrigger("main", "aaa")
	r := h.ok(triggerCmd(2, "web", tr1, false))
	if r.Build != 1 || r.Existing {
		t.Fatalf("first trigger: %+v", r)
	}
	// A redelivered webhook, or a poll seeing the same commit: same build.
	if r := h.ok(triggerCmd(3, "web", tr1, false)); r.Build != 1 || !r.Existing {
		t.Fatalf("second trigger of the same key: %+v", r)
	}
	h.ok(startBuildCmd(3, "web", 1, buildJob("j1", tr1, spec("a"), spec("b", "a"))))
	h.ok(assignCmd(4, "j1", "a", 1, "agent-1"))

	// A newer push to main cancels the older build's running and waiting
	// tasks.
	r = h.ok(triggerCmd(5, "web", pushTrigger("main", "bbb"), false))
	if r.Build != 2 || len(r.Canceled) != 1 || r.Canceled[0].Task != "a" {
		t.Fatalf("superseding trigger: %+v", r)
	}
	h.wantStates("j1", map[string]gv1.TaskState{"a": gv1.TaskState_TASK_STATE_CANCELED, "b": gv1.TaskState_TASK_STATE_CANCELED})
	h.wantJobState("j1", gv1.JobState_JOB_STATE_CANCELED)
	p, _ := h.f.Project("web")
	if p.Builds[0].SupersededBy != 2 || p.Refs["refs/heads/main"] != "bbb" {
		t.Fatalf("project after supersede: %v", p)
	}
	// A build superseded before it got its job never gets one.
	h.ok(triggerCmd(6, "web", pushTrigger("main", "ccc"), false))
	h.ok(startBuildCmd(7, "web", 2, buildJob("j2", pushTrigger("main", "bbb"), spec("a"))))
	p, _ = h.f.Project("web")
	if b := p.Builds[1]; b.JobId != "" || b.Error == "" {
		t.Fatalf("superseded build started: %v", b)
	}
	// Another branch is not superseded.
	h.ok(triggerCmd(8, "web", pushTrigger("dev", "ddd"), false))
	p, _ = h.f.Project("web")
	if p.Builds[2].SupersededBy != 0 {
		t.Fatalf("build of main superseded by a push to dev: %v", p.Builds[2])
	}
}

func TestBuildStatusOnlyMovesForward(t *testing.T) {
	h := newHarness(t)
	h.ok(createProjectCmd(1, "web"))
	h.ok(triggerCmd(2, "web", pushTrigger("main", "aaa"), false))
	h.ok(statusCmd(3, "web", 1, fsm.StatusRunning))
	if r := h.ok(statusCmd(4, "web", 1, fsm.StatusPending)); !r.Existing {
		t.Fatalf("pending after running accepted: %+v", r)
	}
	h.ok(statusCmd(5, "web", 1, fsm.StatusSuccess))
	h.ok(statusCmd(6, "web", 1, fsm.StatusFailure)) // same rank: ignored
	p, _ := h.f.Project("web")
	if got := p.Builds[0].StatusSent; got != fsm.StatusSuccess {
		t.Fatalf("status sent = %q, want success", got)
	}
	h.refused(statusCmd(7, "web", 1, "running-ish"), "", fsm.ErrInvalid)
}

func TestWhenAndUntrustedSkipWithoutFailing(t *testing.T) {
	h := newHarness(t)
	deploy := deploySpec("deploy", "web", "aaa")
	deploy.Needs = []string{"test"}
	onlyMain := spec("notify", "test")
	onlyMain.When = &gv1.When{Branches: []string{"main"}, Events: []string{"push"}}
	after := spec("after", "notify")

	// A pull request: notify (when: push to main) is skipped, so is what
	// needs it; the job still succeeds.
	tr := &gv1.Trigger{Event: "pull_request", Branch: "main", Sha: "aaa", PullRequest: 3}
	h.ok(submitCmd(1, buildJob("pr", tr, spec("test"), onlyMain, after)))
	h.wantStates("pr", map[string]gv1.TaskState{
		"test": gv1.TaskState_TASK_STATE_PENDING, "notify": gv1.TaskState_TASK_STATE_SKIPPED, "after": gv1.TaskState_TASK_STATE_SKIPPED,
	})
	if r := h.task("pr", "after").SkipReason; r != "needs notify, which is skipped" {
		t.Fatalf("skip reason %q", r)
	}
	h.ok(assignCmd(2, "pr", "test", 1, "agent-1"))
	h.ok(successCmd(3, "pr", "test", 1, "agent-1"))
	h.wantJobState("pr", gv1.JobState_JOB_STATE_SUCCEEDED)

	// An untrusted change: no deploy, no push, no secrets.
	push := &gv1.TaskSpec{Name: "image", Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{Push: "r/app:x"}}}
	secret := &gv1.TaskSpec{Name: "sign", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"true"}, SecretEnv: map[string]string{"K": "KEY"}}}}
	tr = &gv1.Trigger{Event: "pull_request", Branch: "main", Sha: "bbb", PullRequest: 4, Untrusted: true}
	h.ok(submitCmd(4, buildJob("fork", tr, spec("test"), deploy, push, secret)))
	h.wantStates("fork", map[string]gv1.TaskState{
		"test": gv1.TaskState_TASK_STATE_PENDING, "deploy": gv1.TaskState_TASK_STATE_SKIPPED,
		"image": gv1.TaskState_TASK_STATE_SKIPPED, "sign": gv1.TaskState_TASK_STATE_SKIPPED,
	})
	if !h.f.JobUntrusted("fork") || h.f.JobUntrusted("pr") {
		t.Fatal("JobUntrusted wrong")
	}
	// Every task ruled out: the job ends at submit, successfully.
	h.ok(submitCmd(5, buildJob("none", &gv1.Trigger{Event: "tag", Tag: "v1", Sha: "ccc"}, onlyMain)))
	h.wantJobState("none", gv1.JobState_JOB_STATE_SUCCEEDED)
}

func TestApprovalHoldsBuild(t *testing.T) {
	h := newHarness(t)
	h.ok(createProjectCmd(1, "web"))
	tr := &gv1.Trigger{Event: "pull_request", Ref: "refs/pull/4/head", Branch: "main", Sha: "bbb", PullRequest: 4, Untrusted: true}
	h.ok(triggerCmd(2, "web", tr, true))
	h.refused(startBuildCmd(3, "web", 1, buildJob("j1", tr, spec("a"))), "", fsm.ErrConflict)
	approve := &gv1.Command{At: ts(4), Actor: &gv1.Actor{Name: "alice"}, Method: "ApproveBuild",
		Cmd: &gv1.Command_ApproveBuild{ApproveBuild: &gv1.ApproveBuildCommand{Project: "web", Number: 1}}}
	h.ok(approve)
	h.ok(startBuildCmd(5, "web", 1, buildJob("j1", tr, spec("a"))))
	p, _ := h.f.Project("web")
	if b := p.Builds[0]; b.JobId != "j1" || b.ApprovedBy.GetName() != "alice" {
		t.Fatalf("approved build: %v", b)
	}
	approve.At, approve.Actor = ts(6), nil // an actor would be audited, a change
	h.refused(approve, "", fsm.ErrConflict)
}

func TestProjectsInSnapshot(t *testing.T) {
	h := newHarness(t)
	h.ok(createProjectCmd(1, "web"))
	h.ok(triggerCmd(2, "web", pushTrigger("main", "aaa"), false))
	data, err := h.f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := fsm.Decode(data)
	if err != nil || len(snap.Projects) != 1 || len(snap.Projects[0].Builds) != 1 {
		t.Fatalf("decoded %v, %v", snap.GetProjects(), err)
	}
}

func decideCmd(sec int, job, task, who string, reject bool) *gv1.Command {
	c := &gv1.Command{At: ts(sec), Method: "DecideTask",
		Cmd: &gv1.Command_DecideTask{DecideTask: &gv1.DecideTaskCommand{JobId: job, Task: task, Reject: reject, Comment: "ok"}}}
	if who != "" { // an actor is audited, refused or not: a change
		c.Actor = &gv1.Actor{Name: who}
	}
	return c
}

func TestApprovalTaskGatesWhatNeedsIt(t *testing.T) {
	h := newHarness(t)
	gate := &gv1.TaskSpec{Name: "gate", Executor: &gv1.TaskSpec_Approval{Approval: &gv1.ApprovalSpec{}}}
	free := &gv1.TaskSpec{Name: "free", Executor: &gv1.TaskSpec_Approval{Approval: &gv1.ApprovalSpec{}}}
	gate.Needs = []string{"test"}
	h.ok(submitCmd(1, newJob("j", "", 0, spec("test"), gate, spec("ship", "gate"), free)))
	// An approval without needs waits at once; one with needs waits after
	// them. Neither is ever pending (no agent runs it).
	h.wantStates("j", map[string]gv1.TaskState{
		"test": gv1.TaskState_TASK_STATE_PENDING, "gate": gv1.TaskState_TASK_STATE_BLOCKED,
		"ship": gv1.TaskState_TASK_STATE_BLOCKED, "free": gv1.TaskState_TASK_STATE_WAITING,
	})
	// Deciding too early is a conflict and changes nothing.
	h.refused(decideCmd(2, "j", "gate", "", false), "j", fsm.ErrConflict)
	// Deciding a task that is no gate is invalid.
	h.refused(decideCmd(2, "j", "test", "", false), "j", fsm.ErrInvalid)
	h.ok(assignCmd(3, "j", "test", 1, "agent-1"))
	h.ok(successCmd(4, "j", "test", 1, "agent-1"))
	h.wantStates("j", map[string]gv1.TaskState{"gate": gv1.TaskState_TASK_STATE_WAITING, "ship": gv1.TaskState_TASK_STATE_BLOCKED})
	for _, v := range pendingViews(h.f) {
		if v.Key.Task == "gate" || v.Key.Task == "free" {
			t.Fatalf("approval %s is pending for agents", v.Key.Task)
		}
	}
	h.ok(decideCmd(5, "j", "gate", "alice", false))
	h.wantStates("j", map[string]gv1.TaskState{"gate": gv1.TaskState_TASK_STATE_SUCCEEDED, "ship": gv1.TaskState_TASK_STATE_PENDING})
	if out := h.task("j", "gate").Outputs; out["approved_by"] != "alice" || out["comment"] != "ok" {
		t.Fatalf("gate outputs %v", out)
	}
	// Decided once: a second decision is a conflict.
	h.refused(decideCmd(6, "j", "gate", "", true), "j", fsm.ErrConflict)
	// Rejecting fails the gate and the job; nothing needs free.
	h.ok(decideCmd(7, "j", "free", "bob", true))
	if tk := h.task("j", "free"); tk.State != gv1.TaskState_TASK_STATE_FAILED || tk.Error != "rejected by bob" {
		t.Fatalf("rejected gate: %v %q", tk.State, tk.Error)
	}
	h.ok(assignCmd(8, "j", "ship", 1, "agent-1"))
	h.ok(successCmd(9, "j", "ship", 1, "agent-1"))
	h.wantJobState("j", gv1.JobState_JOB_STATE_FAILED)

	// Canceling a job ends its waiting gates.
	h.ok(submitCmd(10, newJob("k", "", 0, free)))
	h.ok(cancelCmd(11, "k", "no"))
	h.wantStates("k", map[string]gv1.TaskState{"free": gv1.TaskState_TASK_STATE_CANCELED})
	h.wantJobState("k", gv1.JobState_JOB_STATE_CANCELED)
}

func TestResealProject(t *testing.T) {
	h := newHarness(t)
	create := createProjectCmd(1, "web")
	create.GetCreateProject().Project.WebhookSecret, create.GetCreateProject().Project.WebhookKeyId = []byte("sealed-with-k1"), "k1"
	h.ok(create)
	p, _ := h.f.Project("web")
	if got := h.f.ProjectsNotSealedWith(p.GetWebhookKeyId()); len(got) != 0 {
		t.Fatalf("projects not sealed with their own key: %v", got)
	}
	if got := h.f.ProjectsNotSealedWith("k2"); len(got) != 1 || got[0].GetSpec().GetName() != "web" {
		t.Fatalf("projects to reseal with k2: %v", got)
	}
	reseal := func(sec int, name string, ct []byte, key string) *gv1.Command {
		return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_ResealWebhook{ResealWebhook: &gv1.ResealWebhookCommand{Project: name, WebhookSecret: ct, WebhookKeyId: key}}}
	}
	h.refused(reseal(2, "web", nil, "k2"), "", fsm.ErrInvalid)
	h.refused(reseal(2, "nope", []byte("x"), "k2"), "", fsm.ErrNotFound)
	h.ok(reseal(3, "web", []byte("sealed-with-k2"), "k2"))
	if p, _ = h.f.Project("web"); string(p.GetWebhookSecret()) != "sealed-with-k2" || p.GetWebhookKeyId() != "k2" {
		t.Fatalf("resealed project: %v", p)
	}
	if got := h.f.ProjectsNotSealedWith("k2"); len(got) != 0 {
		t.Fatalf("still to reseal: %v", got)
	}
}
