package fsm

import (
	"fmt"
	"time"

	"github.com/google/btree"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// MaxInfraRetries is how many infrastructure failures (lost agent, executor
// that cannot start) a task survives before it fails.
const MaxInfraRetries = 5

// state is the replicated data plus indexes derived from it. Indexes are
// rebuilt on Restore, never stored.
type state struct {
	// jobs are the jobs that have not ended; sealed the ended ones,
	// encoded (sealed.go). order and byKey cover both.
	jobs   map[string]*gv1.Job
	sealed map[string]sealedJob
	// ended are the jobs that ended in the command being applied, sealed
	// once it is.
	ended []*gv1.Job
	order *jobOrder // every job in submit order (order.go)
	// endedBy counts the sealed jobs by state (their state is final), so
	// a listing's total is not a walk of every job.
	endedBy map[gv1.JobState]int
	// oldestEnd is the earliest end (unix nanoseconds) of a sealed job
	// that has one, 0 when none has: whether a prune would remove
	// anything, without a walk.
	oldestEnd int64
	byKey     map[string]string // idempotency key -> job ID
	// pending are the PENDING tasks; queue orders them as the scheduler
	// takes them (queueLess), so a pass reads only the head it can
	// place; depth counts them by label set.
	pending map[TaskKey]queueEntry
	// deploys are the pending, assigned and running deploy tasks (a
	// subset of pending and active, for ActiveDeploys).
	deploys map[TaskKey]struct{}
	queue   *btree.BTreeG[queueEntry]
	// classes holds the same entries by class (labels, capability,
	// concurrency key), each in queue order: a scheduling pass drops a
	// class it cannot place without walking the rest of it.
	classes  map[string]*btree.BTreeG[queueEntry]
	depth    map[string]int
	active   map[TaskKey]struct{}
	load     map[string]int     // agent -> leased tasks
	busy     map[string]TaskKey // concurrency key -> holder
	applied  uint64
	apps     map[string]*gv1.App
	fence    uint64 // last fencing token given to a deploy attempt
	secrets  map[string]*gv1.Secret
	tokens   map[string]*gv1.Token // by id, hashed
	audit    []*gv1.AuditEvent     // oldest first; see record
	projects map[string]*gv1.Project
	// joinTokens by id (hashed), enrollments by agent name.
	joinTokens  map[string]*gv1.JoinToken
	enrollments map[string]*gv1.Enrollment
}

func newState() *state {
	return &state{
		jobs:     map[string]*gv1.Job{},
		sealed:   map[string]sealedJob{},
		order:    newJobOrder(),
		endedBy:  map[gv1.JobState]int{},
		byKey:    map[string]string{},
		pending:  map[TaskKey]queueEntry{},
		deploys:  map[TaskKey]struct{}{},
		queue:    btree.NewG(32, queueLess),
		classes:  map[string]*btree.BTreeG[queueEntry]{},
		depth:    map[string]int{},
		active:   map[TaskKey]struct{}{},
		load:     map[string]int{},
		busy:     map[string]TaskKey{},
		apps:     map[string]*gv1.App{},
		secrets:  map[string]*gv1.Secret{},
		tokens:   map[string]*gv1.Token{},
		projects: map[string]*gv1.Project{},

		joinTokens:  map[string]*gv1.JoinToken{},
		enrollments: map[string]*gv1.Enrollment{},
	}
}

// insert adds a job as it is (used by submit and restore) and indexes it.
func (s *state) insert(j *gv1.Job) {
	s.jobs[j.Id] = j
	s.order.push(j.Id, nil)
	if j.IdempotencyKey != "" {
		s.byKey[j.IdempotencyKey] = j.Id
	}
	for _, t := range j.Tasks {
		s.index(j.Id, t)
	}
}

func (s *state) index(jobID string, t *gv1.Task) {
	k := TaskKey{jobID, t.Name}
	delete(s.deploys, k)
	if q, ok := s.pending[k]; ok {
		s.queue.Delete(q)
		if c := s.classes[q.class]; c != nil {
			if c.Delete(q); c.Len() == 0 {
				delete(s.classes, q.class)
			}
		}
		delete(s.pending, k)
		if s.depth[q.labels]--; s.depth[q.labels] <= 0 {
			delete(s.depth, q.labels)
		}
	}
	if _, ok := s.active[k]; ok {
		delete(s.active, k)
		s.load[t.Agent]--
		if s.load[t.Agent] <= 0 {
			delete(s.load, t.Agent)
		}
	}
	if c := t.Spec.GetConcurrency(); c != "" && s.busy[c] == k {
		delete(s.busy, c)
	}
	switch t.State {
	case gv1.TaskState_TASK_STATE_PENDING:
		q := queueEntry{
			priority: s.jobs[jobID].GetSpec().GetPriority(),
			runnable: t.GetRunnableAt().AsTime().UnixNano(),
			key:      k,
			labels:   LabelKey(t.GetSpec().GetLabels()),
		}
		q.class = classOf(q.labels, t.GetSpec())
		s.pending[k] = q
		s.queue.ReplaceOrInsert(q)
		c := s.classes[q.class]
		if c == nil {
			c = btree.NewG(16, queueLess)
			s.classes[q.class] = c
		}
		c.ReplaceOrInsert(q)
		s.depth[q.labels]++
		if t.GetSpec().GetDeploy() != nil {
			s.deploys[k] = struct{}{}
		}
	case gv1.TaskState_TASK_STATE_ASSIGNED, gv1.TaskState_TASK_STATE_RUNNING:
		s.active[k] = struct{}{}
		if t.GetSpec().GetDeploy() != nil {
			s.deploys[k] = struct{}{}
		}
		s.load[t.Agent]++
		if c := t.Spec.GetConcurrency(); c != "" {
			s.busy[c] = k
		}
	}
}

func (s *state) task(j *gv1.Job, name string) *gv1.Task {
	for _, t := range j.Tasks {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// lookup finds ref's job and task; a sealed (ended) job comes decoded, a
// copy: commands refuse or change nothing on an ended job's tasks.
func (s *state) lookup(ref *gv1.TaskRef) (*gv1.Job, *gv1.Task, error) {
	j, ok := s.job(ref.GetJobId())
	if !ok {
		return nil, nil, fmt.Errorf("job %q: %w", ref.GetJobId(), ErrNotFound)
	}
	t := s.task(j, ref.GetTask())
	if t == nil {
		return nil, nil, fmt.Errorf("task %q of job %q: %w", ref.GetTask(), j.Id, ErrNotFound)
	}
	return j, t, nil
}

// setState moves a task to a new state and keeps the indexes right.
func (s *state) setState(j *gv1.Job, t *gv1.Task, st gv1.TaskState) {
	t.State = st
	s.index(j.Id, t)
}

func (s *state) apply(index uint64, c *gv1.Command) Result {
	res := s.applyCmd(index, c)
	s.audited(index, c, res)
	s.sealEnded()
	return res
}

func (s *state) applyCmd(index uint64, c *gv1.Command) Result {
	at := c.GetAt()
	if at == nil {
		return Result{Err: fmt.Errorf("command without time: %w", ErrInvalid)}
	}
	switch x := c.Cmd.(type) {
	case *gv1.Command_SubmitJob:
		return s.submit(index, at, x.SubmitJob)
	case *gv1.Command_AssignTask:
		return s.assign(index, at, x.AssignTask)
	case *gv1.Command_StartTask:
		return s.start(index, at, x.StartTask)
	case *gv1.Command_FinishTask:
		return s.finish(index, at, x.FinishTask.GetReport())
	case *gv1.Command_RequeueTask:
		r := x.RequeueTask
		return s.finish(index, at, &gv1.Report{
			Ref:     r.GetRef(),
			Failure: gv1.FailureClass_FAILURE_CLASS_INFRA,
			Error:   r.GetReason(),
		})
	case *gv1.Command_CancelJob:
		return s.cancel(index, at, x.CancelJob)
	case *gv1.Command_CreateApp:
		return s.createApp(at, x.CreateApp)
	case *gv1.Command_DeleteApp:
		return s.deleteApp(x.DeleteApp)
	case *gv1.Command_PinApp:
		return s.pinApp(x.PinApp)
	case *gv1.Command_ObserveRevision:
		return s.observeRevision(x.ObserveRevision)
	case *gv1.Command_PruneJobs:
		return s.pruneJobs(x.PruneJobs)
	case *gv1.Command_SetSecret:
		return s.setSecret(index, at, x.SetSecret)
	case *gv1.Command_DeleteSecret:
		return s.deleteSecret(x.DeleteSecret)
	case *gv1.Command_CreateToken:
		return s.createToken(index, at, x.CreateToken)
	case *gv1.Command_RevokeToken:
		return s.revokeToken(x.RevokeToken)
	case *gv1.Command_CreateProject:
		return s.createProject(index, at, x.CreateProject)
	case *gv1.Command_DeleteProject:
		return s.deleteProject(x.DeleteProject)
	case *gv1.Command_TriggerBuild:
		return s.triggerBuild(index, at, x.TriggerBuild)
	case *gv1.Command_StartBuild:
		return s.startBuild(index, at, x.StartBuild)
	case *gv1.Command_ObserveRefs:
		return s.observeRefs(index, x.ObserveRefs)
	case *gv1.Command_BuildStatus:
		return s.buildStatus(index, x.BuildStatus)
	case *gv1.Command_ApproveBuild:
		return s.approveBuild(index, c)
	case *gv1.Command_SetProjectHook:
		return s.setProjectHook(x.SetProjectHook)
	case *gv1.Command_DecideTask:
		return s.decideTask(index, at, c)
	case *gv1.Command_ResealWebhook:
		return s.resealWebhook(x.ResealWebhook)
	case *gv1.Command_CreateJoinToken:
		return s.createJoinToken(index, at, x.CreateJoinToken)
	case *gv1.Command_RevokeJoinToken:
		return s.revokeJoinToken(at, x.RevokeJoinToken)
	case *gv1.Command_EnrollAgent:
		return s.enrollAgent(at, x.EnrollAgent)
	case *gv1.Command_RecordAudit:
		// The event is the command: the API decided its result.
		e := proto.Clone(x.RecordAudit.GetEvent()).(*gv1.AuditEvent)
		e.At = at
		s.record(index, e)
		return Result{}
	default:
		// No command at all (Apply stops at a command type this version
		// does not know before it gets here).
		return Result{Err: fmt.Errorf("no command: %w", ErrInvalid)}
	}
}

func (s *state) submit(index uint64, at *timestamppb.Timestamp, c *gv1.SubmitJobCommand) Result {
	j := c.GetJob()
	if j.GetId() == "" || len(j.GetTasks()) == 0 {
		return Result{Err: fmt.Errorf("submit without id or tasks: %w", ErrInvalid)}
	}
	if j.IdempotencyKey != "" {
		if id, ok := s.byKey[j.IdempotencyKey]; ok {
			return Result{JobID: id, Existing: true}
		}
	}
	if s.hasJob(j.Id) {
		return Result{Err: fmt.Errorf("job %q exists: %w", j.Id, ErrConflict)}
	}
	j.State = gv1.JobState_JOB_STATE_PENDING
	j.CreatedAt = at
	j.Version = index
	for _, t := range j.Tasks {
		t.Attempt = 0
		if len(t.Spec.GetNeeds()) == 0 {
			t.State = gv1.TaskState_TASK_STATE_PENDING
			queued(t, at, 0)
			if t.Spec.GetApproval() != nil {
				t.State = gv1.TaskState_TASK_STATE_WAITING
			}
		} else {
			t.State = gv1.TaskState_TASK_STATE_BLOCKED
		}
	}
	applyTrigger(j, at)
	s.insert(j)
	s.settle(j, at)
	return Result{JobID: j.Id}
}

func (s *state) assign(index uint64, at *timestamppb.Timestamp, c *gv1.AssignTaskCommand) Result {
	if s.jobEnded(c.GetRef()) {
		return Result{JobID: c.GetRef().GetJobId(), Err: fmt.Errorf("assign task %s/%s: the job has ended: %w", c.GetRef().GetJobId(), c.GetRef().GetTask(), ErrConflict)}
	}
	j, t, err := s.lookup(c.GetRef())
	if err != nil {
		return Result{Err: err}
	}
	res := Result{JobID: j.Id}
	if t.State != gv1.TaskState_TASK_STATE_PENDING {
		res.Err = fmt.Errorf("assign task %s/%s in state %s: %w", j.Id, t.Name, t.State, ErrConflict)
		return res
	}
	if c.GetRef().GetAttempt() != t.Attempt+1 {
		res.Err = fmt.Errorf("assign task %s/%s attempt %d, next is %d: %w", j.Id, t.Name, c.GetRef().GetAttempt(), t.Attempt+1, ErrStaleAttempt)
		return res
	}
	if c.GetAgent() == "" {
		res.Err = fmt.Errorf("assign task %s/%s to no agent: %w", j.Id, t.Name, ErrInvalid)
		return res
	}
	if k := t.Spec.GetConcurrency(); k != "" {
		if _, held := s.busy[k]; held {
			res.Err = fmt.Errorf("assign task %s/%s: concurrency key %q is held: %w", j.Id, t.Name, k, ErrConflict)
			return res
		}
	}
	t.Attempt++
	t.Agent = c.GetAgent()
	t.NotBefore = nil
	t.Attempts = append(t.Attempts, &gv1.Attempt{Number: t.Attempt, Agent: t.Agent, AssignedAt: at, RunnableAt: t.RunnableAt})
	s.setState(j, t, gv1.TaskState_TASK_STATE_ASSIGNED)
	s.recordAssign(j, t, at)
	if j.State == gv1.JobState_JOB_STATE_PENDING {
		j.State = gv1.JobState_JOB_STATE_RUNNING
	}
	j.Version = index
	return res
}

func (s *state) start(index uint64, at *timestamppb.Timestamp, c *gv1.StartTaskCommand) Result {
	// Common under short tasks: the start rides with a later entry than
	// the report that ended the job (Proposer.Later).
	if s.jobEnded(c.GetRef()) {
		return Result{JobID: c.GetRef().GetJobId(), Err: fmt.Errorf("start task %s/%s: the job has ended: %w", c.GetRef().GetJobId(), c.GetRef().GetTask(), ErrStaleAttempt)}
	}
	j, t, err := s.lookup(c.GetRef())
	if err != nil {
		return Result{Err: err}
	}
	res := Result{JobID: j.Id}
	if c.GetRef().GetAttempt() != t.Attempt {
		res.Err = fmt.Errorf("start task %s/%s attempt %d, current is %d: %w", j.Id, t.Name, c.GetRef().GetAttempt(), t.Attempt, ErrStaleAttempt)
		return res
	}
	switch t.State {
	case gv1.TaskState_TASK_STATE_RUNNING:
		return res // already started: idempotent
	case gv1.TaskState_TASK_STATE_ASSIGNED:
	default:
		res.Err = fmt.Errorf("start task %s/%s in state %s: %w", j.Id, t.Name, t.State, ErrStaleAttempt)
		return res
	}
	t.StartedAt = at
	t.Attempts[len(t.Attempts)-1].StartedAt = at
	s.setState(j, t, gv1.TaskState_TASK_STATE_RUNNING)
	j.Version = index
	return res
}

// finish ends the current attempt of a task with a report; requeue is a
// finish with an infrastructure failure.
func (s *state) finish(index uint64, at *timestamppb.Timestamp, r *gv1.Report) Result {
	j, t, err := s.lookup(r.GetRef())
	if err != nil {
		return Result{Err: err}
	}
	res := Result{JobID: j.Id}
	attempt := r.GetRef().GetAttempt()
	if attempt != t.Attempt {
		res.Err = fmt.Errorf("report for task %s/%s attempt %d, current is %d: %w", j.Id, t.Name, attempt, t.Attempt, ErrStaleAttempt)
		return res
	}
	if t.State != gv1.TaskState_TASK_STATE_ASSIGNED && t.State != gv1.TaskState_TASK_STATE_RUNNING {
		// The same result delivered again (its acknowledgement was lost) is
		// a duplicate; any other report for an ended attempt is stale.
		if n := len(t.Attempts); n > 0 && sameResult(t.Attempts[n-1], r) {
			res.Err = fmt.Errorf("report for task %s/%s attempt %d: %w", j.Id, t.Name, attempt, ErrDuplicate)
			return res
		}
		res.Err = fmt.Errorf("report for task %s/%s in state %s: %w", j.Id, t.Name, t.State, ErrStaleAttempt)
		return res
	}
	if r.GetAgent() != "" && r.GetAgent() != t.Agent {
		res.Err = fmt.Errorf("report from agent %q for task %s/%s attempt %d held by %q: %w", r.GetAgent(), j.Id, t.Name, attempt, t.Agent, ErrStaleAttempt)
		return res
	}
	rec := t.Attempts[len(t.Attempts)-1]
	rec.FinishedAt = at
	rec.ExitCode = r.GetExitCode()
	rec.Error = r.GetError()
	t.ExitCode = r.GetExitCode()
	t.Error = r.GetError()
	t.FinishedAt = at
	j.Version = index
	s.recordEnd(j, t, attempt, at, deployResult(r), r.GetError(), r.GetOutputs())
	if r.GetSuccess() {
		rec.Result = gv1.TaskState_TASK_STATE_SUCCEEDED
		t.Failure = gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED
		t.Outputs = r.GetOutputs()
		s.setState(j, t, gv1.TaskState_TASK_STATE_SUCCEEDED)
		s.unblock(j, at)
		s.settle(j, at)
		return res
	}
	class := r.GetFailure()
	if class != gv1.FailureClass_FAILURE_CLASS_INFRA {
		class = gv1.FailureClass_FAILURE_CLASS_JOB
	}
	rec.Failure = class
	rec.Result = gv1.TaskState_TASK_STATE_FAILED
	t.Failure = class
	var retry bool
	var delay time.Duration
	if class == gv1.FailureClass_FAILURE_CLASS_INFRA {
		t.InfraFailures++
		retry = t.InfraFailures <= MaxInfraRetries
		delay = InfraBackoff(t.InfraFailures)
	} else {
		t.JobFailures++
		retry = t.JobFailures <= t.Spec.GetRetries()
		delay = JobBackoff(t.JobFailures)
	}
	if retry {
		queued(t, at, delay)
		s.setState(j, t, gv1.TaskState_TASK_STATE_PENDING)
		t.Agent = ""
		return res
	}
	s.setState(j, t, gv1.TaskState_TASK_STATE_FAILED)
	s.skipDependents(j, at)
	s.settle(j, at)
	return res
}

// sameResult reports whether rec, an ended attempt, was ended by report r.
func sameResult(rec *gv1.Attempt, r *gv1.Report) bool {
	if rec.Number != r.GetRef().GetAttempt() || rec.FinishedAt == nil || r.GetAgent() == "" || rec.Agent != r.GetAgent() {
		return false
	}
	if r.GetSuccess() {
		return rec.Result == gv1.TaskState_TASK_STATE_SUCCEEDED
	}
	return rec.Result == gv1.TaskState_TASK_STATE_FAILED && rec.ExitCode == r.GetExitCode() && rec.Error == r.GetError()
}

// JobBackoff is the wait before retry n (1-based) of a job failure.
func JobBackoff(n int32) time.Duration {
	d := time.Second << min(n-1, 6)
	return min(d, time.Minute)
}

// InfraBackoff is the wait before retry n (1-based) of an infrastructure
// failure: the first retry is immediate (on another agent).
func InfraBackoff(n int32) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 500 * time.Millisecond << min(n-2, 6)
	return min(d, 30*time.Second)
}

// queued records when a task that becomes pending at the command's time
// at is runnable: after delay (a retry's backoff). It is the one place that
// decides it; the scheduler, the queue view and the start latencies read
// what it stored.
func queued(t *gv1.Task, at *timestamppb.Timestamp, delay time.Duration) {
	t.QueuedAt = at
	t.NotBefore = nil
	t.RunnableAt = at
	if delay > 0 {
		t.NotBefore = timestamppb.New(at.AsTime().Add(delay))
		t.RunnableAt = t.NotBefore
	}
}

// unblock makes blocked tasks whose needs all succeeded pending.
func (s *state) unblock(j *gv1.Job, at *timestamppb.Timestamp) {
	done := map[string]bool{}
	for _, t := range j.Tasks {
		if t.State == gv1.TaskState_TASK_STATE_SUCCEEDED {
			done[t.Name] = true
		}
	}
	for _, t := range j.Tasks {
		if t.State != gv1.TaskState_TASK_STATE_BLOCKED {
			continue
		}
		ready := true
		for _, n := range t.Spec.GetNeeds() {
			ready = ready && done[n]
		}
		if ready {
			queued(t, at, 0)
			if t.Spec.GetApproval() != nil {
				// A gate waits for a person, not for an agent.
				s.setState(j, t, gv1.TaskState_TASK_STATE_WAITING)
				continue
			}
			s.setState(j, t, gv1.TaskState_TASK_STATE_PENDING)
		}
	}
}

// skipDependents marks blocked tasks that can no longer run as skipped.
func (s *state) skipDependents(j *gv1.Job, at *timestamppb.Timestamp) {
	for changed := true; changed; {
		changed = false
		dead := map[string]bool{}
		for _, t := range j.Tasks {
			switch t.State {
			case gv1.TaskState_TASK_STATE_FAILED, gv1.TaskState_TASK_STATE_CANCELED, gv1.TaskState_TASK_STATE_SKIPPED:
				dead[t.Name] = true
			}
		}
		for _, t := range j.Tasks {
			if t.State != gv1.TaskState_TASK_STATE_BLOCKED {
				continue
			}
			for _, n := range t.Spec.GetNeeds() {
				if dead[n] {
					t.FinishedAt = at
					s.setState(j, t, gv1.TaskState_TASK_STATE_SKIPPED)
					changed = true
					break
				}
			}
		}
	}
}

// settle ends the job when every task is final.
func (s *state) settle(j *gv1.Job, at *timestamppb.Timestamp) {
	failed := false
	for _, t := range j.Tasks {
		switch t.State {
		case gv1.TaskState_TASK_STATE_SUCCEEDED:
		case gv1.TaskState_TASK_STATE_SKIPPED:
			// Skipped by the build's trigger (when, untrusted) is no failure.
			failed = failed || t.SkipReason == ""
		case gv1.TaskState_TASK_STATE_FAILED, gv1.TaskState_TASK_STATE_CANCELED:
			failed = true
		default:
			return
		}
	}
	j.FinishedAt = at
	if failed {
		j.State = gv1.JobState_JOB_STATE_FAILED
	} else {
		j.State = gv1.JobState_JOB_STATE_SUCCEEDED
	}
	s.ended = append(s.ended, j)
}

func (s *state) cancel(index uint64, at *timestamppb.Timestamp, c *gv1.CancelJobCommand) Result {
	j, ok := s.jobs[c.GetJobId()]
	if !ok {
		if _, ended := s.sealed[c.GetJobId()]; ended {
			return Result{JobID: c.GetJobId()} // canceling a finished job changes nothing
		}
		return Result{Err: fmt.Errorf("job %q: %w", c.GetJobId(), ErrNotFound)}
	}
	res := Result{JobID: j.Id}
	if JobFinal(j.State) {
		return res
	}
	for _, t := range j.Tasks {
		switch t.State {
		case gv1.TaskState_TASK_STATE_ASSIGNED, gv1.TaskState_TASK_STATE_RUNNING:
			res.Canceled = append(res.Canceled, &gv1.TaskRef{JobId: j.Id, Task: t.Name, Attempt: t.Attempt})
			rec := t.Attempts[len(t.Attempts)-1]
			rec.FinishedAt = at
			rec.Result = gv1.TaskState_TASK_STATE_CANCELED
			rec.Error = c.GetReason()
			s.recordEnd(j, t, t.Attempt, at, gv1.DeployResult_DEPLOY_RESULT_CANCELED, "canceled: "+c.GetReason(), nil)
		case gv1.TaskState_TASK_STATE_PENDING, gv1.TaskState_TASK_STATE_BLOCKED, gv1.TaskState_TASK_STATE_WAITING:
		default:
			continue
		}
		t.FinishedAt = at
		t.Error = "canceled: " + c.GetReason()
		if c.GetReason() == "" {
			t.Error = "canceled"
		}
		agent := t.Agent
		s.setState(j, t, gv1.TaskState_TASK_STATE_CANCELED)
		t.Agent = agent
	}
	j.State = gv1.JobState_JOB_STATE_CANCELED
	j.FinishedAt = at
	j.Version = index
	s.ended = append(s.ended, j)
	return res
}

// JobFinal reports whether a job state is final.
func JobFinal(s gv1.JobState) bool {
	return s == gv1.JobState_JOB_STATE_SUCCEEDED || s == gv1.JobState_JOB_STATE_FAILED || s == gv1.JobState_JOB_STATE_CANCELED
}

// TaskFinal reports whether a task state is final.
func TaskFinal(s gv1.TaskState) bool {
	switch s {
	case gv1.TaskState_TASK_STATE_SUCCEEDED, gv1.TaskState_TASK_STATE_FAILED, gv1.TaskState_TASK_STATE_CANCELED, gv1.TaskState_TASK_STATE_SKIPPED:
		return true
	}
	return false
}
