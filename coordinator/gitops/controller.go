// Package gitops is the coordinator's GitOps controller. On the leader it
// follows the branch of every application (polling, and at once when a push
// is announced), turns each new commit into a deploy job, supersedes a
// deploy that a newer commit overtook, hands the watching of live objects
// to agents that reach the application's cluster, and heals drift when an
// application asks for it. Every node keeps the drift reports agents send,
// so any node can answer status calls.
package gitops

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/dispatch"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/scheduler"
	"github.com/gantryci/gantry/internal/gitsrc"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// DefaultPoll is how often a repository is polled when its application
// names no interval.
const DefaultPoll = time.Minute

// Deps are what the controller works with.
type Deps struct {
	Log       *zap.Logger
	FSM       *fsm.FSM
	Proposer  *consensus.Proposer
	NATS      *nats.Conn
	Namespace subject.Namespace
	Fleet     *dispatch.Fleet
	// NewJobID makes the id of a deploy job.
	NewJobID func() string
	// Resolve asks a remote which commit a branch points to; nil means
	// gitsrc.Resolve.
	Resolve func(ctx context.Context, url, revision string) (string, error)
	// Tick is how often the leader reconciles; zero means 200ms.
	Tick time.Duration
}

// Controller is the GitOps controller of one coordinator.
type Controller struct {
	d   Deps
	log *zap.Logger

	mu      sync.Mutex
	drift   driftTable
	pushed  map[string]bool // repository URLs announced since the last look
	wake    chan struct{}
	polls   map[string]time.Time // branch (pollKey) -> last poll started
	polling map[string]bool      // branch -> poll in flight
	heals   map[string]*healState
}

type healState struct {
	next    time.Time
	backoff time.Duration
}

// New returns a controller; Lead runs it on the leader.
func New(d Deps) *Controller {
	if d.Resolve == nil {
		d.Resolve = gitsrc.Resolve
	}
	if d.Tick <= 0 {
		d.Tick = 200 * time.Millisecond
	}
	return &Controller{
		d:       d,
		log:     d.Log.Named("gitops"),
		pushed:  map[string]bool{},
		wake:    make(chan struct{}, 1),
		polls:   map[string]time.Time{},
		polling: map[string]bool{},
		heals:   map[string]*healState{},
	}
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// HandlePush takes a push announced to any coordinator's /hooks/git. Only
// repositories some application follows are remembered, so the set is
// bounded by the applications, whatever is announced.
func (c *Controller) HandlePush(m *nats.Msg) {
	follow := map[string]bool{}
	for _, a := range c.d.FSM.AppViews() {
		if r := a.Spec.GetRepo(); r != "" {
			follow[NormalizeURL(r)] = true
		}
	}
	c.mu.Lock()
	for _, u := range strings.Split(string(m.Data), "\n") {
		if u = NormalizeURL(u); follow[u] {
			c.pushed[u] = true
		}
	}
	c.mu.Unlock()
	c.poke()
}

// NormalizeURL makes the URLs of one repository compare equal whatever
// their spelling: no trailing slash or ".git", lower-case host.
func NormalizeURL(u string) string {
	u = strings.TrimSpace(u)
	u = strings.TrimSuffix(u, "/")
	u = strings.TrimSuffix(u, ".git")
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		host, path, _ := strings.Cut(rest, "/")
		u = strings.ToLower(scheme) + "://" + strings.ToLower(host) + "/" + path
		u = strings.TrimSuffix(u, "/")
	}
	return u
}

// Matching returns the applications following a repository URL.
func (c *Controller) Matching(urls []string) []string {
	want := map[string]bool{}
	for _, u := range urls {
		if n := NormalizeURL(u); n != "" {
			want[n] = true
		}
	}
	var out []string
	for _, a := range c.d.FSM.AppViews() {
		if r := a.Spec.GetRepo(); r != "" && want[NormalizeURL(r)] {
			out = append(out, a.Spec.GetName())
		}
	}
	return out
}

// Lead runs the controller while this node leads.
func (c *Controller) Lead(ctx context.Context) {
	tick := time.NewTicker(c.d.Tick)
	defer tick.Stop()
	watchTick := time.NewTicker(time.Second)
	defer watchTick.Stop()
	results := make(chan resolved, 16)
	var sent map[string]string // agent -> encoded watch set last sent
	for {
		c.reconcile(ctx, results)
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			c.observe(ctx, r)
		case <-c.wake:
		case <-tick.C:
		case <-watchTick.C:
			sent = nil // resend: an agent may have restarted
		case <-c.d.Fleet.Changed():
		}
		sent = c.sendWatchSets(sent)
	}
}

// resolved is the answer of one poll of a branch.
type resolved struct {
	key      string
	apps     []string // applications following the branch
	url      string
	revision string
	err      error
}

// pollKey names a branch of a repository: applications following the same
// branch share one poll.
func pollKey(spec *gv1.AppSpec) string {
	return NormalizeURL(spec.GetRepo()) + "\x00" + spec.GetRevision()
}

// branch is a branch polled for the applications following it.
type branch struct {
	url, rev string
	interval time.Duration // the shortest of its applications'
	pushed   bool
	apps     []string
}

// reconcile polls what is due and deploys what should be deployed.
func (c *Controller) reconcile(ctx context.Context, results chan<- resolved) {
	now := time.Now()
	c.mu.Lock()
	pushed := c.pushed
	c.pushed = map[string]bool{}
	c.mu.Unlock()
	active := c.d.FSM.ActiveDeploys()
	branches := map[string]*branch{}
	for _, a := range c.d.FSM.AppViews() {
		spec := a.Spec
		if spec.GetRepo() == "" {
			continue // known from pipeline deploys only
		}
		name := spec.GetName()
		interval := spec.GetPollInterval().AsDuration()
		if interval <= 0 {
			interval = DefaultPoll
		}
		key := pollKey(spec)
		b := branches[key]
		if b == nil {
			b = &branch{url: spec.GetRepo(), rev: spec.GetRevision(), interval: interval}
			branches[key] = b
		}
		b.interval = min(b.interval, interval)
		b.pushed = b.pushed || pushed[NormalizeURL(spec.GetRepo())]
		b.apps = append(b.apps, name)
		act, ok := active[name]
		c.deployIfNeeded(ctx, a, act, ok, now)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, b := range branches {
		if c.polling[key] || !(b.pushed || now.Sub(c.polls[key]) >= b.interval) {
			continue
		}
		c.polling[key] = true
		c.polls[key] = now
		go c.resolve(ctx, key, b, results)
	}
}

func (c *Controller) resolve(ctx context.Context, key string, b *branch, results chan<- resolved) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sha, err := c.d.Resolve(rctx, b.url, b.rev)
	cancel()
	select {
	case results <- resolved{key: key, apps: b.apps, url: b.url, revision: sha, err: err}:
	case <-ctx.Done():
	}
}

// observe records a polled revision for the applications following it.
func (c *Controller) observe(ctx context.Context, r resolved) {
	c.mu.Lock()
	delete(c.polling, r.key)
	c.mu.Unlock()
	if r.err != nil {
		c.log.Warn("poll repository", zap.String("repo", r.url), zap.Strings("apps", r.apps), zap.Error(r.err))
		return
	}
	var cmds []*gv1.Command
	at := timestamppb.Now()
	for _, name := range r.apps {
		if a, ok := c.d.FSM.App(name); ok && a.GetLatestRevision() != r.revision {
			cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_ObserveRevision{
				ObserveRevision: &gv1.ObserveRevisionCommand{Name: name, Revision: r.revision},
			}})
		}
	}
	if len(cmds) == 0 {
		return
	}
	if _, err := c.d.Proposer.Propose(ctx, cmds...); err != nil {
		if ctx.Err() == nil {
			c.log.Warn("record new revision", zap.String("repo", r.url), zap.Error(err))
		}
		return
	}
	c.log.Info("new revision", zap.String("repo", r.url), zap.String("revision", r.revision), zap.Int("apps", len(cmds)))
}

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

// deployIfNeeded starts the deploy an application needs: its target
// commit when that is not the last one tried, or its current commit again
// when self-heal is on and the live objects drifted.
func (c *Controller) deployIfNeeded(ctx context.Context, a fsm.AppView, act fsm.Active, active bool, now time.Time) {
	name := a.Spec.GetName()
	target := Target(a)
	last := a.Last
	if target != "" {
		switch {
		case active && act.Revision == target:
			return
		case active, last == nil || last.GetRevision() != target:
			// A deploy of another revision still queued or running is
			// overtaken (Deploy cancels it).
			c.submit(ctx, a, target, trigger(a))
			return
		}
	}
	if active || !a.Spec.GetSelfHeal() || last == nil || last.GetResult() != gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED {
		return
	}
	d := c.Drift(name)
	if d == nil || d.GetSync() != gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC || d.GetFence() != last.GetFence() {
		c.mu.Lock()
		if d != nil && d.GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED {
			delete(c.heals, name)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	h := c.heals[name]
	if h == nil {
		h = &healState{backoff: time.Second}
		c.heals[name] = h
	} else if now.Before(h.next) {
		c.mu.Unlock()
		return
	} else {
		h.backoff = min(2*h.backoff, time.Minute)
	}
	h.next = now.Add(h.backoff)
	c.mu.Unlock()
	c.log.Info("healing drift", zap.String("app", name), zap.Int("fields", len(d.GetItems())))
	c.submit(ctx, a, last.GetRevision(), "self-heal")
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

// DeployPriority puts deploys ahead of builds and tests waiting for agents.
const DeployPriority = 100

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
			Source:        &gv1.ManifestSource{Git: &gv1.GitSource{Url: spec.GetRepo(), Revision: revision}, Path: spec.GetPath()},
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

// sendWatchSets gives every application to one live agent that reaches its
// cluster (rendezvous hashing spreads applications and moves few when an
// agent comes or goes) and tells each agent its set when it changed.
func (c *Controller) sendWatchSets(sent map[string]string) map[string]string {
	if sent == nil {
		sent = map[string]string{}
	}
	now := time.Now()
	byCluster := map[string][]string{}
	var agents []string
	for _, ag := range c.d.Fleet.Agents(now, 0) {
		if ag.State != gv1.AgentState_AGENT_STATE_ACTIVE && ag.State != gv1.AgentState_AGENT_STATE_DRAINING {
			continue
		}
		reaches := false
		for _, cp := range ag.Info.GetCapabilities() {
			if name, ok := strings.CutPrefix(cp, scheduler.ClusterCapability("")); ok {
				byCluster[name] = append(byCluster[name], ag.Info.GetName())
				reaches = true
			}
		}
		if reaches {
			agents = append(agents, ag.Info.GetName())
		}
	}
	sets := map[string]*gv1.WatchSet{}
	for _, n := range agents {
		sets[n] = &gv1.WatchSet{}
	}
	for _, a := range c.d.FSM.AppViews() {
		spec := a.Spec
		if spec.GetNamespace() == "" || a.Deployed == 0 {
			continue // nothing deployed yet: nothing to watch
		}
		owner := pick(spec.GetName(), byCluster[spec.GetCluster()])
		if owner == "" {
			continue
		}
		sets[owner].Apps = append(sets[owner].Apps, &gv1.AppWatch{App: spec.GetName(), Cluster: spec.GetCluster(), Namespace: spec.GetNamespace()})
	}
	next := map[string]string{}
	for agent, set := range sets {
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
		if err != nil {
			continue
		}
		next[agent] = string(data)
		if sent[agent] == string(data) {
			continue
		}
		if err := c.d.NATS.Publish(c.d.Namespace.Watch(agent), data); err != nil {
			c.log.Debug("send watch set", zap.String("agent", agent), zap.Error(err))
			delete(next, agent)
		}
	}
	return next
}

// pick chooses the agent with the highest hash of (app, agent).
func pick(app string, agents []string) string {
	sort.Strings(agents)
	best, bestScore := "", uint64(0)
	for _, ag := range agents {
		h := fnv.New64a()
		h.Write([]byte(app))
		h.Write([]byte{0})
		h.Write([]byte(ag))
		if s := h.Sum64(); best == "" || s > bestScore {
			best, bestScore = ag, s
		}
	}
	return best
}

// Summary describes an application's state for the API.
func (c *Controller) Summary(a fsm.AppView) *gv1.AppSummary {
	s := &gv1.AppSummary{
		Spec:             a.Spec,
		DeployedRevision: a.DeployedRevision,
		LatestRevision:   a.Latest,
		PinnedRevision:   a.Pinned,
		LastDeploy:       a.Last,
	}
	d := c.Drift(a.Spec.GetName())
	if d != nil {
		s.Health = d.GetHealth()
	}
	target := a.Pinned
	if target == "" {
		target = a.Latest
	}
	switch {
	case d != nil && d.GetError() != "":
		s.Sync = gv1.SyncStatus_SYNC_STATUS_UNSPECIFIED
		s.Reason = "watch: " + d.GetError()
	case d != nil && d.GetSync() == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC:
		s.Sync = gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		s.Reason = fmt.Sprintf("%d live field(s) differ from Git", len(d.GetItems()))
	case a.Spec.GetRepo() != "" && target != "" && target != s.DeployedRevision:
		s.Sync = gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		s.Reason = fmt.Sprintf("Git is at %s, deployed %s", short(target), orNone(short(s.DeployedRevision)))
	case d != nil:
		s.Sync = d.GetSync()
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// Resolve asks the remote for the newest commit of an application's branch.
func (c *Controller) Resolve(ctx context.Context, a *gv1.App) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.d.Resolve(ctx, a.GetSpec().GetRepo(), a.GetSpec().GetRevision())
}
