package gitops

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// driftTable keeps the newest drift report of each application. It keeps
// reports only for applications the state knows, so it grows with the
// state, not with what agents send; reports of deleted applications go at
// the next prune.
type driftTable struct {
	mu      sync.Mutex
	reports map[string]*gv1.DriftReport
	pruned  time.Time
}

// driftPruneEvery is how often at most the table drops the reports of
// deleted applications.
const driftPruneEvery = time.Minute

// errUnknownApp: a drift report about an application the state does not
// have.
var errUnknownApp = errors.New("unknown application")

// HandleDrift keeps an agent's drift report (every node subscribes). A
// malformed report, or one about an application the state does not have,
// is dropped.
func (c *Controller) HandleDrift(m *nats.Msg) {
	if err := c.handleDrift(m.Subject, m.Data, time.Now()); err != nil {
		c.log.Debug("drift report dropped", zap.String("subject", limit.Clip(m.Subject, 256)), zap.Error(err))
		return
	}
	c.poke()
}

// handleDrift checks a drift report received on subj and keeps it; a
// report it refuses changes nothing.
func (c *Controller) handleDrift(subj string, data []byte, now time.Time) error {
	if len(data) > limit.Message {
		return fmt.Errorf("drift report: %d bytes, more than the limit of %d", len(data), limit.Message)
	}
	var r gv1.DriftReport
	if err := proto.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("drift report: %w", err)
	}
	// An agent speaks only for itself: the subject it was allowed to
	// publish on names it.
	agent, ok := c.d.Namespace.DriftAgent(subj)
	if !ok || name.Token(agent) != nil {
		return fmt.Errorf("drift report on a subject that names no agent: %s", limit.Clip(subj, 256))
	}
	if r.GetAgent() != agent {
		return fmt.Errorf("drift report.agent: %q, but the report came from agent %s", limit.Clip(r.GetAgent(), 64), agent)
	}
	if err := name.Check(r.GetApp()); err != nil {
		return fmt.Errorf("drift report.app: %w", err)
	}
	if _, ok := c.d.FSM.App(r.GetApp()); !ok {
		return fmt.Errorf("drift report.app: %s: %w", r.GetApp(), errUnknownApp)
	}
	clipDrift(&r)
	t := &c.drift
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reports == nil {
		t.reports = map[string]*gv1.DriftReport{}
	}
	old := t.reports[r.App]
	if old == nil || !old.GetObservedAt().AsTime().After(r.GetObservedAt().AsTime()) {
		t.reports[r.App] = &r
	}
	if now.Sub(t.pruned) >= driftPruneEvery {
		t.pruned = now
		known := map[string]bool{}
		for _, a := range c.d.FSM.AppViews() {
			known[a.Spec.GetName()] = true
		}
		for app := range t.reports {
			if !known[app] {
				delete(t.reports, app)
			}
		}
	}
	return nil
}

// clipDrift cuts a drift report to the bounds of package limit: it is
// shown, never replicated, and its first fields say enough.
func clipDrift(r *gv1.DriftReport) {
	r.Revision = limit.Clip(r.Revision, limit.LabelValue)
	r.Error = limit.Clip(r.Error, limit.ReportError)
	if len(r.Items) > limit.DriftItems {
		r.Items = r.Items[:limit.DriftItems]
	}
	for _, it := range r.Items {
		it.Object = limit.Clip(it.Object, limit.DriftValue)
		it.Field = limit.Clip(it.Field, limit.DriftValue)
		it.Want = limit.Clip(it.Want, limit.DriftValue)
		it.Live = limit.Clip(it.Live, limit.DriftValue)
	}
}

// Drift returns the last drift report of an application, or nil.
func (c *Controller) Drift(app string) *gv1.DriftReport {
	t := &c.drift
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.reports[app]; r != nil {
		return proto.Clone(r).(*gv1.DriftReport)
	}
	return nil
}

// healState is the back-off of healing one application: a heal that
// does not hold (the drift comes back) waits twice as long next time, up to
// a minute, until a report says the application is in sync.
type healState struct {
	next    time.Time
	backoff time.Duration
}

// healDue returns the commit to deploy again to heal an application's
// drift: self-heal is on, its newest deploy succeeded, the newest drift
// report is about that deploy (same fencing token) and says out of sync,
// and the back-off allows it at now.
func (c *Controller) healDue(a fsm.AppView, now time.Time) (string, bool) {
	name, last := a.Spec.GetName(), a.Last
	if !a.Spec.GetSelfHeal() || last == nil || last.GetResult() != gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED {
		return "", false
	}
	d := c.Drift(name)
	if d == nil || d.GetSync() != gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC || d.GetFence() != last.GetFence() {
		if d != nil && d.GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED {
			c.mu.Lock()
			delete(c.heals, name)
			c.mu.Unlock()
		}
		return "", false
	}
	c.mu.Lock()
	h := c.heals[name]
	switch {
	case h == nil:
		h = &healState{backoff: time.Second}
		c.heals[name] = h
	case now.Before(h.next):
		c.mu.Unlock()
		return "", false
	default:
		h.backoff = min(2*h.backoff, time.Minute)
	}
	h.next = now.Add(h.backoff)
	c.mu.Unlock()
	c.log.Info("healing drift", zap.String("app", name), zap.Int("fields", len(d.GetItems())))
	return last.GetRevision(), true
}
