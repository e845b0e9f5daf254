package fsm

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/spec"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// MaxBuilds is how many builds a project keeps: past it, the oldest ended
// ones are forgotten (their jobs stay until job retention prunes them).
const MaxBuilds = 200

// Commit status states, in the order a build's status moves through them.
const (
	StatusPending = "pending"
	StatusRunning = "running"
	StatusSuccess = "success"
	StatusFailure = "failure"
	StatusError   = "error"
)

// StatusRank orders commit status states: a status is only ever replaced
// by one of a higher rank. Unknown states rank 0.
func StatusRank(s string) int {
	switch s {
	case StatusPending:
		return 1
	case StatusRunning:
		return 2
	case StatusSuccess, StatusFailure, StatusError:
		return 3
	}
	return 0
}

func (s *state) project(name string) (*gv1.Project, error) {
	p, ok := s.projects[name]
	if !ok {
		return nil, fmt.Errorf("project %q: %w", name, ErrNotFound)
	}
	return p, nil
}

func (s *state) createProject(index uint64, at *timestamppb.Timestamp, c *gv1.CreateProjectCommand) Result {
	p := c.GetProject()
	name := p.GetSpec().GetName()
	if name == "" || p.GetSpec().GetRepo() == "" {
		return Result{Err: fmt.Errorf("create project: name or repository is empty: %w", ErrInvalid)}
	}
	if _, ok := s.projects[name]; ok {
		return Result{Err: fmt.Errorf("project %q already exists: %w", name, ErrConflict)}
	}
	p = proto.Clone(p).(*gv1.Project)
	p.CreatedAt = at
	p.NextBuild = 1
	p.Builds = nil
	p.Refs = nil
	p.Version = index
	s.projects[name] = p
	return Result{}
}

func (s *state) deleteProject(c *gv1.DeleteProjectCommand) Result {
	if _, err := s.project(c.GetName()); err != nil {
		return Result{Err: err}
	}
	delete(s.projects, c.GetName())
	return Result{}
}

// build returns build number n of p.
func build(p *gv1.Project, n uint64) (*gv1.Build, error) {
	// Builds are numbered in order: search from the newest.
	for i := len(p.Builds) - 1; i >= 0; i-- {
		if p.Builds[i].Number == n {
			return p.Builds[i], nil
		}
	}
	return nil, fmt.Errorf("build %d of project %q: %w", n, p.GetSpec().GetName(), ErrNotFound)
}

// triggerBuild records a build for a trigger, once per key: a trigger whose
// key was seen (a redelivered webhook, a poll finding a pushed commit, a
// new leader redoing a decision) answers the existing build. A push or
// pull request supersedes the older builds of the same ref unless the
// project keeps them.
func (s *state) triggerBuild(index uint64, at *timestamppb.Timestamp, c *gv1.TriggerBuildCommand) Result {
	p, err := s.project(c.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	tr := c.GetTrigger()
	if c.GetKey() == "" || tr.GetSha() == "" || tr.GetEvent() == "" {
		return Result{Err: fmt.Errorf("trigger project %q without key, commit or event: %w", p.Spec.GetName(), ErrInvalid)}
	}
	for i := len(p.Builds) - 1; i >= 0; i-- {
		if p.Builds[i].Key == c.GetKey() {
			return Result{Build: p.Builds[i].Number, Existing: true, JobID: p.Builds[i].JobId}
		}
	}
	tr = proto.Clone(tr).(*gv1.Trigger)
	tr.Project = p.Spec.GetName()
	b := &gv1.Build{Number: p.NextBuild, Key: c.GetKey(), Trigger: tr, CreatedAt: at, AwaitingApproval: c.GetHold()}
	p.NextBuild++
	res := Result{Build: b.Number}
	if tr.GetRef() != "" {
		switch tr.GetEvent() {
		case "push", "tag", "pull_request":
			if p.Refs == nil {
				p.Refs = map[string]string{}
			}
			p.Refs[tr.GetRef()] = tr.GetSha()
		}
	}
	if tr.GetSlot() != nil && (p.LastCron == nil || tr.GetSlot().AsTime().After(p.LastCron.AsTime())) {
		p.LastCron = tr.GetSlot()
	}
	if !p.Spec.GetKeepSuperseded() && (tr.GetEvent() == "push" || tr.GetEvent() == "pull_request") {
		for _, old := range p.Builds {
			ot := old.GetTrigger()
			if old.SupersededBy != 0 || ot.GetEvent() != tr.GetEvent() || ot.GetRef() != tr.GetRef() {
				continue
			}
			if old.JobId == "" {
				if old.Error == "" {
					old.SupersededBy = b.Number
				}
				continue
			}
			if j, ok := s.jobs[old.JobId]; ok && !JobFinal(j.State) {
				old.SupersededBy = b.Number
				res.Canceled = append(res.Canceled, s.supersede(index, at, j, b.Number)...)
			}
		}
	}
	p.Builds = append(p.Builds, b)
	s.trimBuilds(p)
	p.Version = index
	return res
}

// supersede cancels what of a job has not started, and what runs except
// deploys: a deploy is not interrupted mid-apply (its fence already keeps
// an older deploy from undoing a newer one). It returns the attempts
// taken from agents.
func (s *state) supersede(index uint64, at *timestamppb.Timestamp, j *gv1.Job, by uint64) []*gv1.TaskRef {
	reason := fmt.Sprintf("superseded by build %d", by)
	var refs []*gv1.TaskRef
	spared := false
	for _, t := range j.Tasks {
		switch t.State {
		case gv1.TaskState_TASK_STATE_ASSIGNED, gv1.TaskState_TASK_STATE_RUNNING:
			if t.GetSpec().GetDeploy() != nil {
				spared = true
				continue
			}
			refs = append(refs, &gv1.TaskRef{JobId: j.Id, Task: t.Name, Attempt: t.Attempt})
			rec := t.Attempts[len(t.Attempts)-1]
			rec.FinishedAt = at
			rec.Result = gv1.TaskState_TASK_STATE_CANCELED
			rec.Error = reason
		case gv1.TaskState_TASK_STATE_PENDING, gv1.TaskState_TASK_STATE_BLOCKED, gv1.TaskState_TASK_STATE_WAITING:
		default:
			continue
		}
		t.FinishedAt = at
		t.Error = "canceled: " + reason
		agent := t.Agent
		s.setState(j, t, gv1.TaskState_TASK_STATE_CANCELED)
		t.Agent = agent
	}
	j.Version = index
	if !spared {
		j.State = gv1.JobState_JOB_STATE_CANCELED
		j.FinishedAt = at
		s.ended = append(s.ended, j)
	}
	return refs
}

// trimBuilds forgets the oldest ended builds past MaxBuilds.
func (s *state) trimBuilds(p *gv1.Project) {
	extra := len(p.Builds) - MaxBuilds
	if extra <= 0 {
		return
	}
	kept := p.Builds[:0]
	for _, b := range p.Builds {
		if extra > 0 && s.buildEnded(b) {
			extra--
			continue
		}
		kept = append(kept, b)
	}
	for i := len(kept); i < len(p.Builds); i++ {
		p.Builds[i] = nil
	}
	p.Builds = kept
}

func (s *state) buildEnded(b *gv1.Build) bool {
	if b.JobId == "" {
		return b.Error != ""
	}
	j, ok := s.jobs[b.JobId]
	return !ok || JobFinal(j.State)
}

// startBuild gives a build its job (the project's pipeline at the commit
// built) or the reason it has none.
func (s *state) startBuild(index uint64, at *timestamppb.Timestamp, c *gv1.StartBuildCommand) Result {
	p, err := s.project(c.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	b, err := build(p, c.GetNumber())
	if err != nil {
		return Result{Err: err}
	}
	res := Result{Build: b.Number, JobID: b.JobId}
	if b.JobId != "" || b.Error != "" {
		res.Existing = true
		return res
	}
	if b.AwaitingApproval {
		res.Err = fmt.Errorf("build %d of project %q awaits approval: %w", b.Number, p.Spec.GetName(), ErrConflict)
		return res
	}
	p.Version = index
	switch {
	case b.SupersededBy != 0:
		b.Error = fmt.Sprintf("superseded by build %d before it started", b.SupersededBy)
	case c.GetError() != "" || c.GetJob() == nil:
		b.Error = c.GetError()
		if b.Error == "" {
			b.Error = "no pipeline"
		}
	default:
		j := proto.Clone(c.GetJob()).(*gv1.Job)
		r := s.submit(index, at, &gv1.SubmitJobCommand{Job: j})
		if r.Err != nil {
			b.Error = r.Err.Error()
			return res
		}
		b.JobId = r.JobID
		res.JobID = r.JobID
	}
	return res
}

func (s *state) observeRefs(index uint64, c *gv1.ObserveRefsCommand) Result {
	p, err := s.project(c.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	if c.GetBaseline() {
		if p.Baseline {
			return Result{Existing: true}
		}
		p.Baseline = true
	}
	if p.Refs == nil {
		p.Refs = map[string]string{}
	}
	for ref, sha := range c.GetRefs() {
		if sha == "" {
			delete(p.Refs, ref)
			continue
		}
		p.Refs[ref] = sha
	}
	p.Version = index
	return Result{}
}

// buildStatus records a commit status the forge acknowledged; statuses only
// move forward.
func (s *state) buildStatus(index uint64, c *gv1.BuildStatusCommand) Result {
	p, err := s.project(c.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	b, err := build(p, c.GetNumber())
	if err != nil {
		return Result{Err: err}
	}
	sent := b.StatusSent
	if c.GetTask() != "" {
		sent = b.TaskStatusSent[c.GetTask()]
	}
	if StatusRank(c.GetState()) == 0 {
		return Result{Err: fmt.Errorf("status %q: %w", c.GetState(), ErrInvalid)}
	}
	if StatusRank(c.GetState()) <= StatusRank(sent) {
		return Result{Existing: true}
	}
	if c.GetTask() != "" {
		if b.TaskStatusSent == nil {
			b.TaskStatusSent = map[string]string{}
		}
		b.TaskStatusSent[c.GetTask()] = c.GetState()
	} else {
		b.StatusSent = c.GetState()
	}
	p.Version = index
	return Result{}
}

func (s *state) approveBuild(index uint64, c *gv1.Command) Result {
	a := c.GetApproveBuild()
	p, err := s.project(a.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	b, err := build(p, a.GetNumber())
	if err != nil {
		return Result{Err: err}
	}
	if !b.AwaitingApproval {
		return Result{Build: b.Number, Err: fmt.Errorf("build %d of project %q is not awaiting approval: %w", b.Number, p.Spec.GetName(), ErrConflict)}
	}
	b.AwaitingApproval = false
	b.ApprovedBy = c.GetActor()
	if a.GetReject() {
		who := c.GetActor().GetName()
		if who == "" {
			who = "an operator"
		}
		b.Error = "rejected by " + who
	}
	p.Version = index
	return Result{Build: b.Number}
}

func (s *state) setProjectHook(c *gv1.SetProjectHookCommand) Result {
	p, err := s.project(c.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	p.HookId = c.GetHookId()
	return Result{}
}

// resealWebhook replaces a project's (or an application's) sealed webhook
// secret with the same value sealed under another key.
func (s *state) resealWebhook(c *gv1.ResealWebhookCommand) Result {
	if len(c.GetWebhookSecret()) == 0 || c.GetWebhookKeyId() == "" {
		return Result{Err: fmt.Errorf("reseal webhook secret: no sealed secret or key id: %w", ErrInvalid)}
	}
	if c.GetApp() != "" {
		a, ok := s.apps[c.GetApp()]
		if !ok || len(a.GetWebhookSecret()) == 0 {
			return Result{Err: fmt.Errorf("application %q with a webhook secret: %w", c.GetApp(), ErrNotFound)}
		}
		a.WebhookSecret, a.WebhookKeyId = c.GetWebhookSecret(), c.GetWebhookKeyId()
		return Result{}
	}
	p, err := s.project(c.GetProject())
	if err != nil {
		return Result{Err: err}
	}
	p.WebhookSecret, p.WebhookKeyId = c.GetWebhookSecret(), c.GetWebhookKeyId()
	return Result{}
}

// AppsNotSealedWith lists the applications whose webhook secret is sealed
// with another key than keyID.
func (f *FSM) AppsNotSealedWith(keyID string) []*gv1.App {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*gv1.App
	for _, a := range f.state.apps {
		if len(a.GetWebhookSecret()) > 0 && a.GetWebhookKeyId() != keyID {
			out = append(out, &gv1.App{Spec: proto.Clone(a.GetSpec()).(*gv1.AppSpec), WebhookSecret: slices.Clone(a.GetWebhookSecret()), WebhookKeyId: a.GetWebhookKeyId()})
		}
	}
	return out
}

// ProjectsNotSealedWith lists the projects whose webhook secret is sealed
// with another key than keyID (re-encryption after a key rotation).
func (f *FSM) ProjectsNotSealedWith(keyID string) []*gv1.Project {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*gv1.Project
	for _, p := range f.state.projects {
		if len(p.GetWebhookSecret()) > 0 && p.GetWebhookKeyId() != keyID {
			out = append(out, &gv1.Project{Spec: proto.Clone(p.GetSpec()).(*gv1.ProjectSpec), WebhookSecret: slices.Clone(p.GetWebhookSecret()), WebhookKeyId: p.GetWebhookKeyId()})
		}
	}
	return out
}

// applyTrigger skips, at submit, the tasks of a project's build that its
// trigger rules out: those whose when condition does not hold, and for an
// untrusted change those that would get secrets, push an image or deploy.
// Tasks needing a skipped task are skipped too. Such skips do not fail the
// job.
func applyTrigger(j *gv1.Job, at *timestamppb.Timestamp) {
	tr := j.GetSpec().GetTrigger()
	if tr == nil {
		return
	}
	skipped := map[string]string{}
	for _, t := range j.Tasks {
		if reason := ruledOut(t.GetSpec(), tr); reason != "" {
			skipped[t.Name] = reason
		}
	}
	for changed := len(skipped) > 0; changed; {
		changed = false
		for _, t := range j.Tasks {
			if _, ok := skipped[t.Name]; ok {
				continue
			}
			for _, n := range t.GetSpec().GetNeeds() {
				if _, ok := skipped[n]; ok {
					skipped[t.Name] = "needs " + n + ", which is skipped"
					changed = true
					break
				}
			}
		}
	}
	for _, t := range j.Tasks {
		if reason, ok := skipped[t.Name]; ok {
			t.State = gv1.TaskState_TASK_STATE_SKIPPED
			t.SkipReason = reason
			t.FinishedAt = at
			t.QueuedAt, t.RunnableAt = nil, nil
		}
	}
}

// ruledOut says why trigger tr rules task t out, or "".
func ruledOut(t *gv1.TaskSpec, tr *gv1.Trigger) string {
	if tr.GetUntrusted() {
		switch {
		case t.GetDeploy() != nil:
			return "untrusted change: deploys do not run"
		case t.GetPromote() != nil:
			return "untrusted change: promotions do not run"
		case t.GetBuild().GetPush() != "":
			return "untrusted change: images are not pushed"
		case len(spec.SecretRefs(t)) > 0:
			return "untrusted change: secrets are not given"
		}
	}
	w := t.GetWhen()
	if w == nil {
		return ""
	}
	if len(w.GetEvents()) > 0 && !contains(w.GetEvents(), tr.GetEvent()) {
		return fmt.Sprintf("when.events %s: this build's event is %s", strings.Join(w.GetEvents(), ","), tr.GetEvent())
	}
	if len(w.GetBranches()) > 0 && !MatchBranch(w.GetBranches(), tr.GetBranch()) {
		b := tr.GetBranch()
		if b == "" {
			b = "none (" + tr.GetEvent() + ")"
		}
		return fmt.Sprintf("when.branches %s: this build's branch is %s", strings.Join(w.GetBranches(), ","), b)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// MatchBranch reports whether branch matches one of the globs (path.Match
// syntax: "release/*"; "**" alone matches any). An empty branch matches
// nothing.
func MatchBranch(globs []string, branch string) bool {
	if branch == "" {
		return false
	}
	for _, g := range globs {
		if g == "**" || g == branch {
			return true
		}
		if ok, _ := path.Match(g, branch); ok {
			return true
		}
	}
	return false
}

// Projects returns copies of every project, by name.
func (f *FSM) Projects() []*gv1.Project {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*gv1.Project, 0, len(f.state.projects))
	for _, p := range f.state.projects {
		out = append(out, proto.Clone(p).(*gv1.Project))
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Spec.GetName() < out[k].Spec.GetName() })
	return out
}

// Project returns a copy of one project.
func (f *FSM) Project(name string) (*gv1.Project, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.state.projects[name]
	if !ok {
		return nil, false
	}
	return proto.Clone(p).(*gv1.Project), true
}

// ProjectVersions returns each project's version (the index of the last
// entry that changed it), for callers that redo work only on change.
func (f *FSM) ProjectVersions() map[string]uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]uint64, len(f.state.projects))
	for n, p := range f.state.projects {
		out[n] = p.Version
	}
	return out
}

func (s *state) sortedProjects() []*gv1.Project {
	names := make([]string, 0, len(s.projects))
	for n := range s.projects {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*gv1.Project, len(names))
	for i, n := range names {
		out[i] = s.projects[n]
	}
	return out
}

// JobUntrusted reports whether a job is the build of an untrusted change.
func (f *FSM) JobUntrusted(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.state.job(id)
	return ok && j.GetSpec().GetTrigger().GetUntrusted()
}

// BuildView is a build with what the leader needs to act on it.
type BuildView struct {
	Project *gv1.ProjectSpec
	Build   *gv1.Build
	// JobState is unspecified while the build has no job.
	JobState gv1.JobState
	// Tasks are the job's tasks' states by name (only when the project
	// reports per-task statuses).
	Tasks map[string]gv1.TaskState
	// JobName is the job's spec name.
	JobName string
}

// BuildsToStart returns the builds that have neither a job nor a reason
// to have none, and are not held for approval.
func (f *FSM) BuildsToStart() []BuildView {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []BuildView
	for _, p := range f.state.sortedProjects() {
		for _, b := range p.Builds {
			if b.JobId == "" && b.Error == "" && !b.AwaitingApproval {
				out = append(out, BuildView{Project: p.Spec, Build: proto.Clone(b).(*gv1.Build)})
			}
		}
	}
	return out
}

// BuildsToReport returns the builds of projects that report statuses
// (a forge and a credential) whose status, or one of whose tasks', the
// forge has not acknowledged in a final state yet.
func (f *FSM) BuildsToReport() []BuildView {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []BuildView
	for _, p := range f.state.sortedProjects() {
		if p.Spec.GetForge() == "" || p.Spec.GetForge() == "none" || p.Spec.GetCredential() == "" {
			continue
		}
		for _, b := range p.Builds {
			open := StatusRank(b.StatusSent) < StatusRank(StatusSuccess)
			v := BuildView{Project: p.Spec, Build: b}
			if j, ok := f.state.job(b.JobId); ok {
				v.JobState = j.State
				v.JobName = j.GetSpec().GetName()
				if p.Spec.GetTaskStatuses() {
					v.Tasks = make(map[string]gv1.TaskState, len(j.Tasks))
					for _, t := range j.Tasks {
						v.Tasks[t.Name] = t.State
						if StatusRank(b.TaskStatusSent[t.Name]) < StatusRank(StatusSuccess) {
							open = true
						}
					}
				}
			}
			if open {
				v.Build = proto.Clone(b).(*gv1.Build)
				out = append(out, v)
			}
		}
	}
	return out
}

// ProjectHeads returns copies of every project without their builds, by
// name: what polls and cron need.
func (f *FSM) ProjectHeads() []*gv1.Project {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*gv1.Project, 0, len(f.state.projects))
	for _, p := range f.state.sortedProjects() {
		head := &gv1.Project{
			Spec: p.Spec, CreatedAt: p.CreatedAt, Refs: p.Refs, NextBuild: p.NextBuild, LastCron: p.LastCron,
			HookId: p.HookId, Baseline: p.Baseline, Version: p.Version,
		}
		out = append(out, proto.Clone(head).(*gv1.Project))
	}
	return out
}

// JobState returns the state of a job.
func (f *FSM) JobState(id string) (gv1.JobState, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if sj, ok := f.state.sealed[id]; ok {
		return sj.state, true
	}
	j, ok := f.state.jobs[id]
	if !ok {
		return gv1.JobState_JOB_STATE_UNSPECIFIED, false
	}
	return j.State, true
}

// decideTask ends a waiting approval task: approved, it succeeds and what
// needs it may run; rejected, it fails and what needs it is skipped. Who
// decided is the command's actor, recorded in the task's outputs.
func (s *state) decideTask(index uint64, at *timestamppb.Timestamp, c *gv1.Command) Result {
	d := c.GetDecideTask()
	j, t, err := s.lookup(&gv1.TaskRef{JobId: d.GetJobId(), Task: d.GetTask()})
	if err != nil {
		return Result{Err: err}
	}
	res := Result{JobID: j.Id}
	if t.GetSpec().GetApproval() == nil {
		res.Err = fmt.Errorf("task %s/%s is not an approval: %w", j.Id, t.Name, ErrInvalid)
		return res
	}
	if t.State != gv1.TaskState_TASK_STATE_WAITING {
		res.Err = fmt.Errorf("task %s/%s is %s, not waiting for a decision: %w", j.Id, t.Name, t.State, ErrConflict)
		return res
	}
	who := c.GetActor().GetName()
	if who == "" {
		who = c.GetActor().GetTokenId()
	}
	if who == "" {
		who = "unknown"
	}
	t.StartedAt, t.FinishedAt = at, at
	t.Outputs = map[string]string{"decided_by": who}
	if d.GetComment() != "" {
		t.Outputs["comment"] = d.GetComment()
	}
	j.Version = index
	if j.State == gv1.JobState_JOB_STATE_PENDING {
		j.State = gv1.JobState_JOB_STATE_RUNNING
	}
	if d.GetReject() {
		t.Error = "rejected by " + who
		t.Failure = gv1.FailureClass_FAILURE_CLASS_JOB
		s.setState(j, t, gv1.TaskState_TASK_STATE_FAILED)
		s.skipDependents(j, at)
	} else {
		t.Outputs["approved_by"] = who
		s.setState(j, t, gv1.TaskState_TASK_STATE_SUCCEEDED)
		s.unblock(j, at)
	}
	s.settle(j, at)
	return res
}
