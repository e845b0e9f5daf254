package fsm

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// MaxHistory is how many deploy records an application keeps.
const MaxHistory = 100

// DeployApp names the application a deploy task belongs to: its spec's app,
// or "JOB.TASK" for a pipeline deploy that names none.
func DeployApp(job *gv1.Job, t *gv1.Task) string {
	if a := t.GetSpec().GetDeploy().GetApp(); a != "" {
		return a
	}
	name := job.GetSpec().GetName()
	if name == "" {
		name = job.GetId()
	}
	return name + "." + t.GetName()
}

func (s *state) createApp(at *timestamppb.Timestamp, c *gv1.CreateAppCommand) Result {
	spec := c.GetSpec()
	if spec.GetName() == "" {
		return Result{Err: fmt.Errorf("create application: name is empty: %w", ErrInvalid)}
	}
	if a, ok := s.apps[spec.GetName()]; ok {
		if a.GetSpec().GetRepo() != "" {
			return Result{Err: fmt.Errorf("application %q already exists: %w", spec.GetName(), ErrConflict)}
		}
		// An application known only from pipeline deploys is adopted with
		// its history.
		a.Spec, a.HookId, a.WebhookSecret, a.WebhookKeyId = spec, c.GetHookId(), c.GetWebhookSecret(), c.GetWebhookKeyId()
		return Result{}
	}
	s.apps[spec.GetName()] = &gv1.App{Spec: spec, CreatedAt: at, NextDeployId: 1, HookId: c.GetHookId(), WebhookSecret: c.GetWebhookSecret(), WebhookKeyId: c.GetWebhookKeyId()}
	return Result{}
}

func (s *state) deleteApp(c *gv1.DeleteAppCommand) Result {
	if _, ok := s.apps[c.GetName()]; !ok {
		return Result{Err: fmt.Errorf("application %q: %w", c.GetName(), ErrNotFound)}
	}
	delete(s.apps, c.GetName())
	return Result{}
}

func (s *state) pinApp(c *gv1.PinAppCommand) Result {
	a, ok := s.apps[c.GetName()]
	if !ok {
		return Result{Err: fmt.Errorf("application %q: %w", c.GetName(), ErrNotFound)}
	}
	a.PinnedRevision = c.GetRevision()
	return Result{}
}

func (s *state) observeRevision(c *gv1.ObserveRevisionCommand) Result {
	a, ok := s.apps[c.GetName()]
	if !ok {
		return Result{Err: fmt.Errorf("application %q: %w", c.GetName(), ErrNotFound)}
	}
	a.LatestRevision = c.GetRevision()
	return Result{}
}

// recordAssign opens a deploy record for a new attempt of a deploy task and
// gives the attempt its fencing token.
func (s *state) recordAssign(j *gv1.Job, t *gv1.Task, at *timestamppb.Timestamp) {
	d := t.GetSpec().GetDeploy()
	if d == nil {
		return
	}
	s.fence++
	t.Fence = s.fence
	name := DeployApp(j, t)
	a, ok := s.apps[name]
	if !ok {
		a = &gv1.App{Spec: &gv1.AppSpec{Name: name, Cluster: d.GetCluster(), Namespace: d.GetNamespace()}, CreatedAt: at, NextDeployId: 1}
		s.apps[name] = a
	}
	trigger := d.GetTrigger()
	if trigger == "" {
		trigger = "pipeline"
	}
	a.History = append(a.History, &gv1.DeployRecord{
		Id:        a.NextDeployId,
		App:       name,
		Revision:  d.GetSource().GetGit().GetRevision(),
		Images:    d.GetImages(),
		JobId:     j.Id,
		Task:      t.Name,
		Attempt:   t.Attempt,
		Fence:     t.Fence,
		Agent:     t.Agent,
		StartedAt: at,
		Result:    gv1.DeployResult_DEPLOY_RESULT_RUNNING,
		Trigger:   trigger,
		Cluster:   d.GetCluster(),
		Namespace: d.GetNamespace(),
	})
	a.NextDeployId++
	if n := len(a.History); n > MaxHistory {
		a.History = append([]*gv1.DeployRecord(nil), a.History[n-MaxHistory:]...)
	}
}

// recordEnd closes the deploy record of an attempt.
func (s *state) recordEnd(j *gv1.Job, t *gv1.Task, attempt int32, at *timestamppb.Timestamp, result gv1.DeployResult, msg string, outputs map[string]string) {
	if t.GetSpec().GetDeploy() == nil {
		return
	}
	a, ok := s.apps[DeployApp(j, t)]
	if !ok {
		return
	}
	for i := len(a.History) - 1; i >= 0; i-- {
		r := a.History[i]
		if r.JobId != j.Id || r.Task != t.Name || r.Attempt != attempt {
			continue
		}
		r.FinishedAt = at
		r.Result = result
		r.Message = msg
		if rev := outputs["revision"]; rev != "" {
			r.Revision = rev
		}
		if imgs := outputs["images"]; imgs != "" {
			r.Images = decodeImages(imgs, r.Images)
		}
		return
	}
}

// deployResult maps an attempt's report to a deploy result.
func deployResult(r *gv1.Report) gv1.DeployResult {
	switch {
	case r.GetSuccess():
		return gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED
	case r.GetOutputs()["result"] == "rolled_back":
		return gv1.DeployResult_DEPLOY_RESULT_ROLLED_BACK
	}
	return gv1.DeployResult_DEPLOY_RESULT_FAILED
}

// App returns a copy of an application.
func (f *FSM) App(name string) (*gv1.App, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.state.apps[name]
	if !ok {
		return nil, false
	}
	return proto.Clone(a).(*gv1.App), true
}

// LastDeploy returns the newest deploy record of an application.
func LastDeploy(a *gv1.App) *gv1.DeployRecord {
	if n := len(a.GetHistory()); n > 0 {
		return a.GetHistory()[n-1]
	}
	return nil
}

// DeployedRevision returns the revision of the newest successful deploy.
func DeployedRevision(a *gv1.App) string {
	h := a.GetHistory()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Result == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED {
			return h[i].Revision
		}
	}
	return ""
}

// DeployAttempt returns the application and fencing token of a deploy
// task's current attempt; ok is false when ref is not that attempt.
func (f *FSM) DeployAttempt(ref *gv1.TaskRef) (app string, fence uint64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, t, err := f.state.lookup(ref)
	if err != nil || t.Attempt != ref.GetAttempt() || t.GetSpec().GetDeploy() == nil {
		return "", 0, false
	}
	return DeployApp(j, t), t.Fence, true
}

// Active is a deploy job waiting for or holding an agent.
type Active struct {
	JobID    string
	Revision string
	created  int64
}

// ActiveDeploy returns the newest job with a deploy of app that is waiting
// for or holding an agent, and the revision it deploys.
func (f *FSM) ActiveDeploy(app string) (jobID, revision string, ok bool) {
	a, ok := f.ActiveDeploys()[app]
	return a.JobID, a.Revision, ok
}

// ActiveDeploys returns, per application, the newest job with a deploy of
// it that is waiting for or holding an agent.
func (f *FSM) ActiveDeploys() map[string]Active {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string]Active{}
	consider := func(k TaskKey) {
		j := f.state.jobs[k.JobID]
		t := f.state.task(j, k.Task)
		if t.GetSpec().GetDeploy() == nil {
			return
		}
		app := DeployApp(j, t)
		created := j.GetCreatedAt().AsTime().UnixNano()
		if cur, ok := out[app]; !ok || created > cur.created {
			out[app] = Active{JobID: j.Id, Revision: t.GetSpec().GetDeploy().GetSource().GetGit().GetRevision(), created: created}
		}
	}
	for k := range f.state.deploys {
		consider(k)
	}
	return out
}

// AppView is what the GitOps controller reads of an application on every
// pass: the spec and the head of the history, without copying the history.
type AppView struct {
	// Spec is shared with the state and must not be modified (commands
	// replace an application's spec, they never change one).
	Spec         *gv1.AppSpec
	Latest       string
	Pinned       string
	NextDeployID uint64
	Deployed     int // number of deploy records
	// Last is a copy of the newest deploy record, nil if none.
	Last *gv1.DeployRecord
	// DeployedRevision is the revision of the newest successful deploy.
	DeployedRevision string
}

// AppViews returns a view of every application, sorted by name.
func (f *FSM) AppViews() []AppView {
	f.mu.RLock()
	out := make([]AppView, 0, len(f.state.apps))
	for _, a := range f.state.apps {
		v := AppView{Spec: a.Spec, Latest: a.LatestRevision, Pinned: a.PinnedRevision, NextDeployID: a.NextDeployId,
			Deployed: len(a.History), DeployedRevision: DeployedRevision(a)}
		if l := LastDeploy(a); l != nil {
			v.Last = proto.Clone(l).(*gv1.DeployRecord)
		}
		out = append(out, v)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, k int) bool { return out[i].Spec.GetName() < out[k].Spec.GetName() })
	return out
}

// ViewOf makes the view of an application copy.
func ViewOf(a *gv1.App) AppView {
	return AppView{Spec: a.GetSpec(), Latest: a.GetLatestRevision(), Pinned: a.GetPinnedRevision(), NextDeployID: a.GetNextDeployId(),
		Deployed: len(a.GetHistory()), Last: LastDeploy(a), DeployedRevision: DeployedRevision(a)}
}
