// Package gitops is the coordinator's GitOps controller. On the leader it
// follows the branch of every application (through a follow.Follower),
// records each new commit, decides which deploy each application needs
// (its target, or its current commit again when drift is to be healed) and
// hands the watching of live objects to agents that reach the
// application's cluster. Every node keeps the drift reports agents send,
// so any node can answer status calls.
//
// By concern: following repositories (follow.go), deciding deploys
// (deploy.go), drift and self-heal (drift.go), watch assignment
// (watch.go), status for the API (status.go).
package gitops

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/follow"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/gitsrc"
	"github.com/gantryci/gantry/internal/subject"
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
	Fleet     *fleet.View
	// NewJobID makes the id of a deploy job.
	NewJobID func() string
	// Resolve asks a remote which commit a branch points to, with the
	// credential's value (nil: none); nil means gitsrc.ResolveAuth.
	Resolve func(ctx context.Context, url, revision string, credential []byte) (string, error)
	// Credential opens the secret an application names to read its
	// repository; nil refuses credentials.
	Credential func(name string) ([]byte, error)
	// Follower follows the applications' branches. Nil means the
	// controller makes its own (polling with Resolve) and runs it while
	// leading; a follower shared with other consumers is run by its owner.
	Follower *follow.Follower
	// Tick is how often the leader reconciles; zero means 200ms.
	Tick time.Duration
}

// Controller is the GitOps controller of one coordinator.
type Controller struct {
	d   Deps
	log *zap.Logger

	follower    *follow.Follower
	ownFollower bool
	// following is each followed application's subscription; only the
	// leader's loop (reconcile) touches it.
	following map[string]*appFollow
	pass      uint64 // reconcile passes, to find applications gone

	seenMu sync.Mutex
	seen   map[string]follow.Revision // application -> newest poll answer not yet recorded

	wake  chan struct{}
	drift driftTable

	mu    sync.Mutex
	heals map[string]*healState
}

// New returns a controller; Lead runs it on the leader.
func New(d Deps) *Controller {
	if d.Resolve == nil {
		d.Resolve = gitsrc.ResolveAuth
	}
	if d.Tick <= 0 {
		d.Tick = 200 * time.Millisecond
	}
	c := &Controller{
		d:         d,
		log:       d.Log.Named("gitops"),
		follower:  d.Follower,
		following: map[string]*appFollow{},
		seen:      map[string]follow.Revision{},
		wake:      make(chan struct{}, 1),
		heals:     map[string]*healState{},
	}
	if c.follower == nil {
		c.follower = follow.New(follow.Config{Log: d.Log, Resolve: c.resolveBranch, Tick: d.Tick})
		c.ownFollower = true
	}
	return c
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Lead runs the controller while this node leads.
func (c *Controller) Lead(ctx context.Context) {
	if c.ownFollower {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.follower.Run(ctx)
		}()
		defer func() { <-done }()
	}
	defer c.unfollowAll()
	c.forgetSeen() // what an earlier term found is polled again
	tick := time.NewTicker(c.d.Tick)
	defer tick.Stop()
	watchTick := time.NewTicker(time.Second)
	defer watchTick.Stop()
	var sent map[string]string // agent -> encoded watch set last sent
	full := true               // record and reconcile, not only the watch sets
	for {
		if full {
			c.record(ctx)
			c.reconcile(ctx)
		}
		full = true
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-tick.C:
		case <-watchTick.C:
			sent = nil // resend: an agent may have restarted
		case <-c.d.Fleet.Roster():
			// An agent came, went or changed what it reaches: only the
			// watch sets depend on that. (Not Changed: under load that
			// closes on nearly every heartbeat, and reconciling then
			// walked every application a thousand times a second.)
			full = false
		}
		sent = c.sendWatchSets(sent)
	}
}

// reconcile follows every application's branch and starts the deploys
// applications need.
func (c *Controller) reconcile(ctx context.Context) {
	now := time.Now()
	active := c.d.FSM.ActiveDeploys()
	c.pass++
	followed := 0
	for _, a := range c.d.FSM.AppViews() {
		if a.Spec.GetRepo() == "" {
			continue // known from pipeline deploys only
		}
		c.follow(a.Spec)
		followed++
		act, ok := active[a.Spec.GetName()]
		c.reconcileApp(ctx, a, act, ok, now)
	}
	if followed < len(c.following) {
		c.unfollowGone()
	}
}
