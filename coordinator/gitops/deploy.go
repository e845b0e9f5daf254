package gitops

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// DeployPriority puts deploys ahead of builds and tests waiting for agents.
const DeployPriority = 100

// Target is the commit an application should run: its pin, or with
// auto-sync the newest commit of its branch; empty means "leave it".
func Target(a fsm.AppView) string {
	if a.Pinned != "" {
		return a.Pinned
	}
	if a.Spec.GetAutoSync() {
		return a.Latest
	}
	return ""
}

// targetDue returns an application's target when it must be deployed: it
// is not what the active deploy (act, when active) deploys, which it then
// overtakes, nor, with none active, what the last deploy tried.
func targetDue(a fsm.AppView, act fsm.Active, active bool) (string, bool) {
	target := Target(a)
	switch {
	case target == "":
		return "", false
	case active:
		return target, act.Revision != target
	default:
		return target, a.Last == nil || a.Last.GetRevision() != target
	}
}

// reconcileApp starts the deploy an application needs: its target commit
// when that is due, or, with no deploy active, its current commit again
// when self-heal is on and the live objects drifted.
func (c *Controller) reconcileApp(ctx context.Context, a fsm.AppView, act fsm.Active, active bool, now time.Time) {
	if rev, ok := targetDue(a, act, active); ok {
		c.submit(ctx, a, rev, trigger(a))
		return
	}
	if active {
		return
	}
	if rev, ok := c.healDue(a, now); ok {
		c.submit(ctx, a, rev, "self-heal")
	}
}

func trigger(a fsm.AppView) string {
	if a.Pinned != "" {
		return "rollback"
	}
	return "commit"
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func (c *Controller) submit(ctx context.Context, a fsm.AppView, revision, trigger string) {
	if _, err := c.Deploy(ctx, a, revision, trigger); err != nil && ctx.Err() == nil {
		c.log.Warn("submit deploy", zap.String("app", a.Spec.GetName()), zap.Error(err))
	}
}

// Deploy commits a job deploying revision of an application; it must run
// on the leader. A deploy of another revision still waiting or running is
// canceled in the same Raft entry: the newer target overtakes it, and its
// fencing token keeps it from writing later. A deploy of the same revision
// for the same reason that is already queued is returned instead of a new
// one.
func (c *Controller) Deploy(ctx context.Context, a fsm.AppView, revision, trigger string) (string, error) {
	spec := a.Spec
	task := &gv1.TaskSpec{
		Name: "deploy",
		Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{
			App:           spec.GetName(),
			Cluster:       spec.GetCluster(),
			Namespace:     spec.GetNamespace(),
			Source:        &gv1.ManifestSource{Git: &gv1.GitSource{Url: spec.GetRepo(), Revision: revision, Secret: spec.GetCredential()}, Path: spec.GetPath()},
			Prune:         spec.GetPrune(),
			HealthTimeout: spec.GetHealthTimeout(),
			Trigger:       trigger,
		}},
	}
	if ht := spec.GetHealthTimeout(); ht != nil {
		// The attempt may take the rollout, a rollback and the checkout.
		task.Timeout = durationpb.New(2*ht.AsDuration() + time.Minute)
	}
	job := &gv1.Job{
		Id:             c.d.NewJobID(),
		Spec:           &gv1.JobSpec{Name: "deploy-" + spec.GetName(), Priority: DeployPriority, Tasks: []*gv1.TaskSpec{task}},
		IdempotencyKey: fmt.Sprintf("gitops/%s/%d/%s/%s", spec.GetName(), a.NextDeployID, revision, trigger),
		Tasks:          []*gv1.Task{{Name: task.Name, Spec: task}},
	}
	at := timestamppb.Now()
	var cmds []*gv1.Command
	if old, oldRev, ok := c.d.FSM.ActiveDeploy(spec.GetName()); ok && oldRev != revision {
		cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_CancelJob{CancelJob: &gv1.CancelJobCommand{
			JobId: old, Reason: fmt.Sprintf("superseded by %s of %s", trigger, short(revision)),
		}}})
	}
	cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: job}}})
	results, err := c.d.Proposer.Propose(ctx, cmds...)
	if err != nil {
		return "", err
	}
	res := results[len(results)-1]
	if res.Err != nil {
		return "", res.Err
	}
	if !res.Existing {
		c.log.Info("deploy submitted", zap.String("app", spec.GetName()), zap.String("revision", revision),
			zap.String("trigger", trigger), zap.String("job", res.JobID))
	}
	return res.JobID, nil
}
