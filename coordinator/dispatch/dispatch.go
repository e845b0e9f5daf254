// Package dispatch is the leader's side of the data plane: it places
// pending tasks on agents, sends assignments over NATS, watches leases,
// commits agent reports and tells agents to stop work that is no longer
// theirs. Every node runs the heartbeat side (HandleHeartbeat, feeding the
// fleet view); only the leader runs Lead.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/metrics"
	"github.com/gantryci/gantry/coordinator/scheduler"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/coordinator/spec"
	"github.com/gantryci/gantry/internal/capability"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/subject"
	"github.com/gantryci/gantry/internal/vt"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Config tunes the dispatcher.
type Config struct {
	// LeaseTTL: an attempt whose agent has not listed it in a heartbeat for
	// this long is requeued on another agent.
	LeaseTTL time.Duration
	// AssignTimeout bounds the wait for an agent to accept an assignment.
	AssignTimeout time.Duration
	// Tick is the longest pause between scheduling passes.
	Tick time.Duration
}

// DefaultConfig re-dispatches a lost agent's work within about 2.5 s (agents
// heartbeat every 500 ms).
func DefaultConfig() Config {
	return Config{LeaseTTL: 2 * time.Second, AssignTimeout: 2 * time.Second, Tick: 100 * time.Millisecond}
}

// passRestFrom: a scheduling pass longer than this is followed by a rest
// as long as itself.
const passRestFrom = 500 * time.Microsecond

// spareEvery bounds how often an idle queue's free slots are counted.
// Between counts, a committed report gives its agent's slot back to the
// spare (credit); the count catches what frees slots otherwise (requeues,
// cancels, agents that join or change their slots).
const spareEvery = 100 * time.Millisecond

// Dispatcher schedules and supervises tasks while its node leads.
type Dispatcher struct {
	cfg     Config
	log     *zap.Logger
	nc      *nats.Conn
	ns      subject.Namespace
	fsm     *fsm.FSM
	prop    *consensus.Proposer
	fleet   *fleet.View
	metrics *metrics.Metrics

	leading atomic.Bool
	keyring atomic.Pointer[secret.Keyring]

	// quiet logs dropped heartbeats now and then, not each one.
	quiet             *zap.Logger
	droppedHeartbeats atomic.Int64

	mu sync.Mutex
	// plan is the last scheduling pass's, for why tasks wait (Reason).
	plan scheduler.Plan

	// lead is the leadership's context while Lead runs.
	lead atomic.Pointer[context.Context]
	// placeMu orders the placements of scheduling passes and of Submit.
	// reserved are the assignments proposed and not known to be applied
	// (the FSM's load does not count them yet), by attempt, with their
	// agents; spare is the last pass, holding the slots it left free,
	// where Submit places new tasks; spareIndex the applied index its
	// count of the agents' load saw.
	placeMu    sync.Mutex
	reserved   map[attemptKey]string
	spare      *scheduler.Pass
	spareAt    time.Time
	spareIndex uint64
}

// New returns a dispatcher.
func New(cfg Config, log *zap.Logger, nc *nats.Conn, ns subject.Namespace, f *fsm.FSM, prop *consensus.Proposer, fl *fleet.View, m *metrics.Metrics) *Dispatcher {
	return &Dispatcher{
		cfg: cfg, log: log.Named("dispatch"), nc: nc, ns: ns, fsm: f, prop: prop, fleet: fl, metrics: m,
		quiet: quiet(log.Named("dispatch")), reserved: map[attemptKey]string{},
	}
}

// Fleet is the node's view of the agents.
func (d *Dispatcher) Fleet() *fleet.View { return d.fleet }

// SchedulePass is one scheduling pass over f's queue: the queue is read in
// order, only as far as there are free slots, skipping the classes that
// cannot be placed this pass, so its cost follows what it places and the
// number of classes, not the depth of the queue.
func SchedulePass(f *fsm.FSM, cands []scheduler.Candidate, now time.Time) scheduler.Plan {
	_, plan := schedulePass(f, cands, now)
	return plan
}

// schedulePass is SchedulePass, also returning the pass (the slots it
// left free).
func schedulePass(f *fsm.FSM, cands []scheduler.Candidate, now time.Time) (*scheduler.Pass, scheduler.Plan) {
	pass := scheduler.NewPass(cands, f.BusyConcurrency(), now.UnixNano())
	f.EachPendingByClass(func(class string, task func() fsm.PendingTask) (more, classDone bool) {
		if pass.Full() {
			return false, false
		}
		if _, blocked := pass.Blocked(class); blocked {
			return true, true
		}
		pass.Offer(task(), class)
		_, blocked := pass.Blocked(class)
		return true, blocked
	})
	return pass, pass.Plan()
}

// Reason says why a pending task waits, as of the last scheduling pass;
// "" while it is being scheduled.
func (d *Dispatcher) Reason(t fsm.PendingTask) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.plan.Waiting[t.Key.JobID+"/"+t.Key.Task]; r != "" {
		return r
	}
	if r := d.plan.WaitingClass[t.Class]; r != "" {
		return r
	}
	if d.plan.Full {
		return "no free slot on any agent"
	}
	return ""
}

// Lead runs the leader's loops until ctx ends.
func (d *Dispatcher) Lead(ctx context.Context) error {
	d.leading.Store(true)
	d.lead.Store(&ctx)
	defer func() {
		d.lead.Store(nil)
		d.leading.Store(false)
		d.placeMu.Lock()
		d.spare = nil
		d.placeMu.Unlock()
	}()
	slots := make(chan struct{}, reportSlots)
	sub, err := d.nc.Subscribe(d.ns.AllReports(), func(m *nats.Msg) {
		select {
		case slots <- struct{}{}:
		default:
			d.quiet.Warn("report dropped: too many in flight", zap.Int("in_flight", reportSlots))
			return // unanswered: the agent sends it again
		}
		go func() {
			defer func() { <-slots }()
			d.handleReport(ctx, m)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe reports: %w", err)
	}
	defer sub.Unsubscribe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.leaseLoop(ctx)
	}()
	d.scheduleLoop(ctx)
	wg.Wait()
	return nil
}

func (d *Dispatcher) scheduleLoop(ctx context.Context) {
	tick := time.NewTicker(d.cfg.Tick)
	defer tick.Stop()
	for {
		fsmCh, fleetCh := d.fsm.Changed(), d.fleet.Changed()
		// Passes are triggered by every applied entry and fleet change:
		// with thousands of agents back-to-back passes would take a core.
		// Rest as long as the pass took (at most half the time in passes);
		// what arrives meanwhile is placed by Submit or the next pass.
		if took := d.scheduleOnce(ctx); took > passRestFrom {
			select {
			case <-ctx.Done():
				return
			case <-time.After(took):
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-fsmCh:
		case <-fleetCh:
		case <-tick.C:
		}
	}
}

// scheduleOnce runs a pass and commits its placements; it returns how long
// the pass itself took.
func (d *Dispatcher) scheduleOnce(ctx context.Context) time.Duration {
	depth := d.fsm.PendingDepth()
	d.metrics.QueueDepth.Reset()
	for k, v := range depth {
		d.metrics.QueueDepth.WithLabelValues(k).Set(float64(v))
	}
	now := time.Now()
	d.placeMu.Lock()
	if len(depth) == 0 {
		// Nothing to place: keep the free slots for Submit, counted
		// afresh at most every spareEvery (tasks end often under load,
		// and with many agents nearly every heartbeat changes the
		// fleet: recounting on each would walk the fleet per
		// heartbeat: a count walks every agent, 0.6 ms for a thousand).
		// Meanwhile reports give their slots back (credit), the spare
		// misses only slots freed otherwise, and an agent that drained
		// or went silent is caught by Submit's check of each agent it
		// places on.
		if d.spare == nil || now.Sub(d.spareAt) >= spareEvery {
			cands, index := d.candidates(now)
			d.spare, d.spareAt, d.spareIndex = scheduler.NewPass(cands, d.fsm.BusyConcurrency(), now.UnixNano()), now, index
		}
		d.placeMu.Unlock()
		d.mu.Lock()
		d.plan = scheduler.Plan{}
		d.mu.Unlock()
		return time.Since(now)
	}
	cands, index := d.candidates(now)
	pass, plan := schedulePass(d.fsm, cands, now)
	d.spare, d.spareAt, d.spareIndex = pass, now, index
	d.reserve(plan.Placements)
	d.placeMu.Unlock()
	took := time.Since(now)
	d.metrics.SchedulePass.Observe(took.Seconds())
	d.mu.Lock()
	d.plan = scheduler.Plan{Waiting: plan.Waiting, WaitingClass: plan.WaitingClass, Full: plan.Full}
	d.mu.Unlock()
	if len(plan.Placements) == 0 {
		return took
	}
	at := timestamppb.New(now)
	cmds := make([]*gv1.Command, len(plan.Placements))
	for i, p := range plan.Placements {
		cmds[i] = assignCommand(at, p)
	}
	if _, err := d.assign(ctx, cmds, plan.Placements); err != nil && ctx.Err() == nil {
		d.log.Warn("commit assignments", zap.Int("tasks", len(cmds)), zap.Error(err))
	}
	return took
}

// assign commits cmds, whose last len(ps) commands assign ps (reserved),
// and delivers each assignment to its agent. An exec task that needs no
// secret is sent while its entry commits: the attempt number and the agent
// fence it (a report names both; an attempt Raft never assigned is refused,
// and its agent told to stop), and the agent starts it a commit sooner.
// Others (deploys, secrets, templates read from the state) are sent once
// committed.
//
// An early assignment leaves once its command has its place in the log:
// its task may end at once, and its report, proposed after it, must not be
// applied before it (it would be refused as stale, and the attempt left to
// its lease, 2 s).
func (d *Dispatcher) assign(lead context.Context, cmds []*gv1.Command, ps []scheduler.Placement) ([]fsm.Result, error) {
	off := len(cmds) - len(ps)
	early := make([]chan commitOutcome, len(ps))
	for i, p := range ps {
		if sendEarly(p.Task.Spec) {
			early[i] = make(chan commitOutcome, 1)
		}
	}
	results, err := d.prop.ProposeQueued(lead, func() {
		for i, p := range ps {
			if early[i] != nil {
				go d.deliver(lead, p, cmds[off+i].GetAssignTask().GetRef(), early[i])
			}
		}
	}, cmds...)
	d.placeMu.Lock()
	d.release(ps)
	d.placeMu.Unlock()
	for i, p := range ps {
		outcome := commitApplied
		switch {
		case err != nil:
			outcome = commitUnknown
		case results[off+i].Err != nil:
			outcome = commitRefused
		}
		switch {
		case early[i] != nil:
			early[i] <- outcome
		case outcome == commitApplied:
			go d.deliver(lead, p, cmds[off+i].GetAssignTask().GetRef(), nil)
		case outcome == commitRefused:
			d.log.Debug("assignment refused", zap.Error(results[off+i].Err))
		}
	}
	return results, err
}

// commitOutcome tells an assignment sent before its commit what became of
// its command.
type commitOutcome int

const (
	// commitApplied: committed, and Apply assigned the attempt.
	commitApplied commitOutcome = iota
	// commitRefused: committed, and Apply refused the assignment: the
	// attempt is not the agent's, which is told to stop it.
	commitRefused
	// commitUnknown: the proposal failed (leadership lost, most often).
	// The entry may still be committed by the next leader, so the agent is
	// not told to stop: if the attempt did not commit, the next leader's
	// heartbeat check stops it as not current; if it did, it runs on.
	// (Stopping it would end a committed attempt as a job failure.)
	commitUnknown
)

// sendEarly: t's assignment can go to its agent before it commits.
func sendEarly(t *gv1.TaskSpec) bool {
	x := t.GetExec()
	return x != nil && x.GetCheckout() == nil && len(spec.SecretRefs(t)) == 0
}

// inFlight reports whether ref's assignment is proposed and not applied.
func (d *Dispatcher) inFlight(ref *gv1.TaskRef) bool {
	d.placeMu.Lock()
	defer d.placeMu.Unlock()
	_, ok := d.reserved[attemptOf(ref)]
	return ok
}

func assignCommand(at *timestamppb.Timestamp, p scheduler.Placement) *gv1.Command {
	return &gv1.Command{At: at, Cmd: &gv1.Command_AssignTask{AssignTask: &gv1.AssignTaskCommand{
		Ref:   &gv1.TaskRef{JobId: p.Task.Key.JobID, Task: p.Task.Key.Task, Attempt: p.Attempt},
		Agent: p.Agent,
	}}}
}

// candidates are the active agents with their free slots: their slots less
// the attempts the FSM has on them and those proposed but not applied,
// and the applied index of that load: an attempt that ended in a later
// entry is still counted (credit gives its slot back). Called with
// placeMu held.
func (d *Dispatcher) candidates(now time.Time) ([]scheduler.Candidate, uint64) {
	load, index := d.fsm.AgentLoadAt()
	// An assignment applied already is in the load: counted once.
	for k, agent := range d.reserved {
		if !d.fsm.Settled(&gv1.TaskRef{JobId: k.job, Task: k.task, Attempt: k.attempt}) {
			load[agent]++
		}
	}
	cands := make([]scheduler.Candidate, 0, d.fleet.Len())
	d.fleet.EachActive(now, func(a *gv1.AgentInfo) {
		cands = append(cands, scheduler.Candidate{
			Name:         a.Name,
			Labels:       a.Labels,
			Free:         int(a.Slots) - load[a.Name],
			Capabilities: a.Capabilities,
			Warm:         a.WarmCache,
		})
	})
	return cands, index
}

// credit gives agent back, in the spare, the slot of an attempt whose end
// was applied at index, unless the spare was counted after it.
func (d *Dispatcher) credit(agent string, index uint64) {
	d.placeMu.Lock()
	if d.spare != nil && index > d.spareIndex {
		d.spare.Credit(agent)
	}
	d.placeMu.Unlock()
}

// reserve records ps as proposed; release forgets them once applied or
// refused. Both with placeMu held.
func (d *Dispatcher) reserve(ps []scheduler.Placement) {
	for _, p := range ps {
		d.reserved[attemptKey{p.Task.Key.JobID, p.Task.Key.Task, p.Attempt}] = p.Agent
	}
}

func (d *Dispatcher) release(ps []scheduler.Placement) {
	for _, p := range ps {
		delete(d.reserved, attemptKey{p.Task.Key.JobID, p.Task.Key.Task, p.Attempt})
	}
}

// Submit commits a SubmitJob command. On the leader, the job's tasks that
// are runnable at once and fit a slot the last scheduling pass left free
// are assigned in the same Raft entry, so an agent hears of such a task
// after one commit, not two (submit, then a pass's assignment). A task
// whose class has tasks queued is left to the pass, which takes the queue
// in order. Apply checks each assignment as it checks a pass's: one the
// submit did not leave pending (an idempotent resubmit, a task Apply
// queued differently) is refused and the task waits for a pass.
func (d *Dispatcher) Submit(ctx context.Context, cmd *gv1.Command) (fsm.Result, error) {
	lead := d.lead.Load()
	job := cmd.GetSubmitJob().GetJob()
	// A resubmit with a known key commits nothing new: nothing to place
	// (and nothing to send early to an agent).
	if lead == nil || job == nil || (job.GetIdempotencyKey() != "" && d.fsm.KeyUsed(job.GetIdempotencyKey())) {
		return d.prop.ProposeOne(ctx, cmd)
	}
	at := cmd.GetAt()
	if at == nil {
		at = timestamppb.Now()
	}
	var placed []scheduler.Placement
	d.placeMu.Lock()
	if d.spare != nil {
		for _, t := range job.GetTasks() {
			sp := t.GetSpec()
			if len(sp.GetNeeds()) > 0 || sp.GetApproval() != nil || sp.GetConcurrency() != "" {
				continue
			}
			class := fsm.ClassOf(sp)
			if d.fsm.ClassPending(class) {
				continue
			}
			pt := fsm.PendingTask{
				Key: fsm.TaskKey{JobID: job.GetId(), Task: t.GetName()}, JobName: job.GetSpec().GetName(),
				Priority: job.GetSpec().GetPriority(), Spec: sp, QueuedAt: at.AsTime().UnixNano(),
				RunnableAt: at.AsTime().UnixNano(), Class: class,
			}
			p, ok := d.spare.Place(pt)
			if !ok {
				continue
			}
			if !d.fleet.Schedulable(p.Agent, time.Now()) {
				// The agent drained or went silent since the spare
				// was counted: count afresh at the next pass.
				d.spare = nil
				break
			}
			placed = append(placed, p)
		}
		d.reserve(placed)
	}
	d.placeMu.Unlock()
	if len(placed) == 0 {
		return d.prop.ProposeOne(ctx, cmd)
	}
	cmds := []*gv1.Command{cmd}
	for _, p := range placed {
		cmds = append(cmds, assignCommand(at, p))
	}
	// The commit and the deliveries belong to the leadership, not to the
	// caller: a caller that leaves must not strand assigned tasks.
	type outcome struct {
		res fsm.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		results, err := d.assign(*lead, cmds, placed)
		if err != nil {
			done <- outcome{err: err}
			return
		}
		done <- outcome{res: results[0], err: results[0].Err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		return fsm.Result{}, ctx.Err()
	}
}

// deliver sends one assignment to its agent. Accepted, the attempt starts;
// refused or unanswered, it goes back to the queue. With committed, it is
// sent before its commit, which committed then tells: an assignment Apply
// refused is taken back from its agent (see commitOutcome).
func (d *Dispatcher) deliver(ctx context.Context, p scheduler.Placement, ref *gv1.TaskRef, committed <-chan commitOutcome) {
	spec, err := d.render(p.Task.Spec, ref)
	if err != nil {
		d.failTemplate(ctx, p.Agent, ref, err)
		return
	}
	secrets, err := d.secrets(spec, ref, p.Task.JobName, p.Agent)
	if err != nil {
		d.failAttempt(ctx, p.Agent, ref, "resolve secrets: "+err.Error())
		return
	}
	as := &gv1.Assignment{Ref: ref, JobName: p.Task.JobName, Spec: spec, Secrets: secrets}
	if spec.GetDeploy() != nil {
		app, fence, ok := d.fsm.DeployAttempt(ref)
		if !ok {
			return // the attempt ended meanwhile
		}
		as.Fence = fence
		if spec.GetDeploy().GetApp() == "" {
			spec = proto.Clone(spec).(*gv1.TaskSpec)
			spec.GetDeploy().App = app
			as.Spec = spec
		}
	}
	data, err := vt.Marshal(as)
	if err != nil {
		d.log.Error("encode assignment", zap.Error(err))
		return
	}
	if d.fleet.Protocol(p.Agent) >= capability.QuietAssignments {
		d.deliverQuiet(ctx, p, ref, data, committed)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.AssignTimeout)
	msg, err := d.nc.RequestWithContext(rctx, d.ns.Assign(p.Agent), data)
	cancel()
	if ctx.Err() != nil {
		return // leadership ended; the next leader's lease check takes over
	}
	var reply gv1.AssignmentReply
	if err == nil {
		err = proto.Unmarshal(msg.Data, &reply)
	}
	if !d.awaitCommit(ctx, committed, p.Agent, ref, err == nil && reply.Accepted) {
		return
	}
	if err != nil || !reply.Accepted {
		reason := reply.Reason
		if err != nil {
			reason = err.Error()
		}
		d.requeue(ctx, ref, fmt.Sprintf("agent %s did not take the task: %s", p.Agent, reason), "not_accepted")
		return
	}
	d.started(ctx, p, ref)
}

// deliverQuiet publishes an assignment to an agent that takes assignments
// silently (capability.QuietAssignments): no answer to wait for, so the
// start is proposed as soon as the assignment is sent (and committed). An
// agent that does not take it says so in a report (refused, see
// refusal); an assignment lost on the way is requeued when its lease runs
// out, as an unanswered request is after AssignTimeout (the same two
// seconds by default).
func (d *Dispatcher) deliverQuiet(ctx context.Context, p scheduler.Placement, ref *gv1.TaskRef, data []byte, committed <-chan commitOutcome) {
	err := d.nc.Publish(d.ns.Assign(p.Agent), data)
	if !d.awaitCommit(ctx, committed, p.Agent, ref, err == nil) {
		return
	}
	if err != nil {
		d.requeue(ctx, ref, fmt.Sprintf("send the assignment to agent %s: %v", p.Agent, err), "not_accepted")
		return
	}
	d.started(ctx, p, ref)
}

// awaitCommit waits, for an assignment sent before its commit (committed
// not nil), for what became of its command, and reports whether the
// delivery goes on. One Apply refused is taken back from its agent if the
// agent holds it (held); see commitOutcome.
func (d *Dispatcher) awaitCommit(ctx context.Context, committed <-chan commitOutcome, agent string, ref *gv1.TaskRef, held bool) bool {
	if committed == nil {
		return true
	}
	select {
	case o := <-committed:
		if o == commitRefused && held {
			d.sendCancel(agent, ref, "assignment refused by the state")
		}
		return o == commitApplied
	case <-ctx.Done():
		return false
	}
}

// started records an attempt its agent took (or was sent, quietly): the
// dispatch latency, and the start.
func (d *Dispatcher) started(ctx context.Context, p scheduler.Placement, ref *gv1.TaskRef) {
	if r := p.Task.RunnableAt; r > 0 {
		d.metrics.DispatchLatency.WithLabelValues(scheduler.FormatLabels(p.Task.Spec.GetLabels())).
			Observe(time.Since(time.Unix(0, r)).Seconds())
	}
	// Nobody waits for the start: it rides with the next entry (usually
	// a submit or a report), and a start never committed leaves the
	// attempt assigned, which its report ends all the same.
	d.prop.Later(&gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_StartTask{StartTask: &gv1.StartTaskCommand{Ref: ref}}}, func(_ fsm.Result, err error) {
		if err != nil && !errors.Is(err, fsm.ErrStaleAttempt) && ctx.Err() == nil {
			d.log.Warn("commit start", zap.String("job", ref.JobId), zap.String("task", ref.Task), zap.Error(err))
		}
	})
}

func (d *Dispatcher) requeue(ctx context.Context, ref *gv1.TaskRef, reason, metric string) {
	reason = limit.Clip(reason, limit.ReportError) // it may quote an agent's answer
	_, err := d.prop.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_RequeueTask{RequeueTask: &gv1.RequeueTaskCommand{Ref: ref, Reason: reason}}})
	switch {
	case err == nil:
		d.metrics.Requeues.WithLabelValues(metric).Inc()
		d.log.Info("attempt requeued", zap.String("job", ref.JobId), zap.String("task", ref.Task),
			zap.Int32("attempt", ref.Attempt), zap.String("reason", reason))
	case errors.Is(err, fsm.ErrStaleAttempt), errors.Is(err, fsm.ErrDuplicate), ctx.Err() != nil:
	default:
		d.log.Warn("commit requeue", zap.String("job", ref.JobId), zap.String("task", ref.Task), zap.Error(err))
	}
}

// attemptKey names one attempt of a task.
type attemptKey struct {
	job     string
	task    string
	attempt int32
}

func attemptOf(r *gv1.TaskRef) attemptKey {
	return attemptKey{r.GetJobId(), r.GetTask(), r.GetAttempt()}
}

// leaseLoop requeues attempts whose agents stopped renewing them. A lease
// starts when the leader first sees the attempt, so a new leader gives every
// agent one full TTL to be heard from.
func (d *Dispatcher) leaseLoop(ctx context.Context) {
	every := max(d.cfg.LeaseTTL/5, 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	leases := map[attemptKey]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		seen := map[attemptKey]bool{}
		for _, a := range d.fsm.Active() {
			k := attemptOf(a.Ref)
			seen[k] = true
			last, ok := leases[k]
			if !ok {
				last = now
			}
			// A heartbeat renews the lease as of when it arrived, so a
			// dead agent's last heartbeat does not keep renewing it.
			if at, held := d.fleet.HeldAt(a.Agent, a.Ref); held && at.After(last) {
				last = at
			}
			leases[k] = last
			if now.Sub(last) <= d.cfg.LeaseTTL {
				continue
			}
			leases[k] = now // do not propose again before another TTL
			reason, metric := fmt.Sprintf("agent %s no longer holds the task", a.Agent), "not_held"
			if seenAt, ok := d.fleet.LastSeen(a.Agent); !ok || now.Sub(seenAt) > d.cfg.LeaseTTL {
				reason, metric = fmt.Sprintf("agent %s lost: no heartbeat for %s", a.Agent, now.Sub(last).Round(time.Millisecond)), "agent_lost"
			}
			go d.requeue(ctx, a.Ref, reason, metric)
		}
		for k := range leases {
			if !seen[k] {
				delete(leases, k)
			}
		}
	}
}

// Cancel tells the agents holding refs to stop them.
func (d *Dispatcher) Cancel(refs []*gv1.TaskRef, agents []string, reason string) {
	for i, ref := range refs {
		d.sendCancel(agents[i], ref, reason)
	}
}

func (d *Dispatcher) sendCancel(agent string, ref *gv1.TaskRef, reason string) {
	data, _ := proto.Marshal(&gv1.AgentControl{Action: &gv1.AgentControl_Cancel{Cancel: &gv1.CancelAction{Ref: ref, Reason: reason}}})
	if err := d.nc.Publish(d.ns.Control(agent), data); err != nil {
		d.log.Warn("send cancel", zap.String("agent", agent), zap.Error(err))
	}
}

// Drain tells an agent to take no new work, finish what it runs and exit.
func (d *Dispatcher) Drain(agent string) error {
	if _, ok := d.fleet.LastSeen(agent); !ok {
		return fmt.Errorf("agent %q: %w", agent, fsm.ErrNotFound)
	}
	data, _ := proto.Marshal(&gv1.AgentControl{Action: &gv1.AgentControl_Drain{Drain: &gv1.DrainAction{}}})
	if err := d.nc.Publish(d.ns.Control(agent), data); err != nil {
		return fmt.Errorf("send drain to %s: %w", agent, err)
	}
	return d.nc.Flush()
}
