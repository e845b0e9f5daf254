// Package project runs projects on the leader: repositories whose pipeline
// file is built on every change. It turns webhooks, polls, manual runs and
// cron slots into one kind of command (TriggerBuild, once per project,
// event, ref and commit), reads the pipeline file at the exact commit of
// each new build from a bare mirror of the repository and starts its job
// (StartBuild), and reports each build's progress back to the forge as
// commit statuses from an outbox in the replicated state (BuildStatus:
// forward only, retried with back-off, carried across leader changes).
//
// By concern: triggers (trigger.go: webhooks, manual runs), reading
// pipelines and starting builds (start.go), the fallback poll and cron
// (poll.go), statuses (status.go), the forge and its webhook (forge.go).
package project

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/internal/forge"
	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Defaults.
const (
	DefaultPipeline = ".gantry/pipeline.yaml"
	DefaultPoll     = time.Minute
	// MaxPipeline is the largest pipeline file read.
	MaxPipeline = 512 << 10
	// MaxChanged bounds the changed files path filters look at.
	MaxChanged = 10_000
)

// Deps are what the controller works with.
type Deps struct {
	Log      *zap.Logger
	FSM      *fsm.FSM
	Proposer *consensus.Proposer
	// Keyring opens the projects' credentials and webhook secrets.
	Keyring func() *secret.Keyring
	// Cancel stops attempts a superseding trigger took from agents.
	Cancel func(refs []*gv1.TaskRef, agents []string, reason string)
	// NewJobID makes the id of a build's job.
	NewJobID func() string
	// Dir holds the repositories' mirrors (the leader's data directory).
	Dir string
	// ExternalURL returns where users and forges reach the coordinators'
	// HTTP listener: the console's links in statuses, the webhook URL.
	ExternalURL func() string
	// Forge returns the client of a forge; nil means forge.New.
	Forge func(kind forge.Kind, baseURL, token string) (forge.Client, error)
	// Tick is how often the leader looks for work; zero means 200ms.
	Tick time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Controller runs the projects of one coordinator.
type Controller struct {
	d   Deps
	log *zap.Logger

	mirrorsMu sync.Mutex
	mirrors   map[string]*gitsrc.Mirror // by repository URL

	wake chan struct{}

	// Leader-loop state (touched by Lead's goroutines only, each its own).
	starting map[buildID]time.Time // builds whose start failed: retry after
	outbox   map[statusKey]*retry
	polls    map[string]time.Time // project -> next poll
}

// buildID names a build.
type buildID struct {
	project string
	number  uint64
}

// New returns a controller; Lead runs it on the leader.
func New(d Deps) *Controller {
	if d.Forge == nil {
		d.Forge = func(kind forge.Kind, baseURL, token string) (forge.Client, error) {
			return forge.New(kind, baseURL, token, nil)
		}
	}
	if d.Tick == 0 {
		d.Tick = 200 * time.Millisecond
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	return &Controller{
		d: d, log: d.Log.Named("project"),
		mirrors: map[string]*gitsrc.Mirror{}, wake: make(chan struct{}, 1),
	}
}

// Lead runs the leader's work until ctx ends: starting builds, reporting
// statuses, polling and cron. Each concern runs in its own loop, so a slow
// forge does not hold builds back.
func (c *Controller) Lead(ctx context.Context) {
	c.starting = map[buildID]time.Time{}
	c.outbox = map[statusKey]*retry{}
	c.polls = map[string]time.Time{}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.loop(ctx, c.startBuilds) }()
	go func() { defer wg.Done(); c.loop(ctx, c.sendStatuses) }()
	go func() { defer wg.Done(); c.loop(ctx, c.pollAndCron) }()
	wg.Wait()
}

// loop runs pass at every change of the state, every tick and when woken.
func (c *Controller) loop(ctx context.Context, pass func(context.Context)) {
	tick := time.NewTicker(c.d.Tick)
	defer tick.Stop()
	for {
		changed := c.d.FSM.Changed()
		pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		case <-c.wake:
		}
	}
}

// poke wakes the loops (a new trigger).
func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// mirror returns the mirror of a repository, opening it the first time.
func (c *Controller) mirror(repo string) (*gitsrc.Mirror, error) {
	c.mirrorsMu.Lock()
	defer c.mirrorsMu.Unlock()
	if m, ok := c.mirrors[repo]; ok {
		return m, nil
	}
	sum := sha256.Sum256([]byte(repo))
	m, err := gitsrc.OpenMirror(filepath.Join(c.d.Dir, "mirrors", hex.EncodeToString(sum[:12])), repo)
	if err != nil {
		return nil, err
	}
	c.mirrors[repo] = m
	return m, nil
}

// ErrSecret: a project's credential or webhook secret cannot be used.
var ErrSecret = errors.New("project secret")

// credential returns the value of a project's credential secret, nil when
// it names none.
func (c *Controller) credential(p *gv1.Project) ([]byte, error) {
	if p.GetSpec().GetCredential() == "" {
		return nil, nil
	}
	return c.Secret(p.GetSpec().GetCredential())
}

// Secret opens the secret named name (a credential) with this node's
// keyring.
func (c *Controller) Secret(name string) ([]byte, error) {
	sec, ok := c.d.FSM.Secret(name)
	if !ok {
		return nil, fmt.Errorf("%w: credential %q does not exist", ErrSecret, name)
	}
	k := c.d.Keyring()
	if k == nil {
		return nil, fmt.Errorf("%w: no keyring to open credential %q", ErrSecret, name)
	}
	v, err := k.Open(sec.GetName(), sec.GetKeyId(), sec.GetCiphertext())
	if err != nil {
		return nil, fmt.Errorf("%w: credential %q: %w", ErrSecret, name, err)
	}
	return v, nil
}

// WebhookSecretName is the name a project's webhook secret is sealed
// under (the keyring binds a value to its name).
func WebhookSecretName(project string) string { return "project/" + project + "/webhook" }

// webhookSecret opens a project's webhook secret.
func (c *Controller) webhookSecret(p *gv1.Project) ([]byte, error) {
	k := c.d.Keyring()
	if k == nil || len(p.GetWebhookSecret()) == 0 {
		return nil, fmt.Errorf("%w: project %q has no webhook secret this coordinator can open", ErrSecret, p.GetSpec().GetName())
	}
	v, err := k.Open(WebhookSecretName(p.GetSpec().GetName()), p.GetWebhookKeyId(), p.GetWebhookSecret())
	if err != nil {
		return nil, fmt.Errorf("%w: webhook secret of project %q: %w", ErrSecret, p.GetSpec().GetName(), err)
	}
	return v, nil
}

// propose commits one command.
func (c *Controller) propose(ctx context.Context, cmd *gv1.Command) (fsm.Result, error) {
	return c.d.Proposer.ProposeOne(ctx, cmd)
}

// cancelAttempts tells the agents of attempts a trigger superseded to stop.
func (c *Controller) cancelAttempts(refs []*gv1.TaskRef, reason string) {
	if len(refs) == 0 || c.d.Cancel == nil {
		return
	}
	agents := make([]string, len(refs))
	for i, ref := range refs {
		if j, ok := c.d.FSM.Job(ref.GetJobId()); ok {
			for _, t := range j.GetTasks() {
				if t.GetName() == ref.GetTask() {
					agents[i] = t.GetAgent()
				}
			}
		}
	}
	c.d.Cancel(refs, agents, reason)
}

func (c *Controller) externalURL() string {
	if c.d.ExternalURL == nil {
		return ""
	}
	return c.d.ExternalURL()
}
