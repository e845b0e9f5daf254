package dispatch

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// dropLogEvery is how often at most a dropped heartbeat is logged: a
// broken or hostile agent sends two a second.
const dropLogEvery = 10 * time.Second

// quiet returns log sampled to one entry per message and level every
// dropLogEvery.
func quiet(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, dropLogEvery, 1, 0)
	}))
}

// HandleHeartbeat records a heartbeat; every node subscribes it. On the
// leader it also tells the agent to stop attempts that are no longer its.
// A malformed heartbeat is dropped (and logged now and then).
func (d *Dispatcher) HandleHeartbeat(m *nats.Msg) {
	hb, err := d.heartbeat(m.Subject, m.Data, time.Now())
	if err != nil {
		n := d.droppedHeartbeats.Add(1)
		d.quiet.Warn("heartbeat dropped", zap.String("subject", limit.Clip(m.Subject, 256)),
			zap.Int64("dropped_total", n), zap.Error(err))
		return
	}
	if !d.leading.Load() {
		return
	}
	agent := hb.GetAgent().GetName()
	for _, ref := range hb.Running {
		holder, held := d.fsm.Holder(ref)
		current := held && d.fsm.IsCurrent(ref)
		switch {
		case current && holder == agent:
		case d.inFlight(ref):
			// Sent before its commit: not current yet.
		case current:
			// The same attempt on another agent: this one's assignment
			// never committed (its report would be refused).
			d.sendCancel(agent, ref, "attempt is held by another agent")
		case !d.fsm.AttemptEnded(ref):
			d.sendCancel(agent, ref, "attempt is no longer current")
		}
	}
}

// heartbeat checks a heartbeat received on subj and records it in the
// fleet; a heartbeat it refuses changes nothing.
func (d *Dispatcher) heartbeat(subj string, data []byte, now time.Time) (*gv1.Heartbeat, error) {
	if len(data) > limit.Message {
		return nil, fmt.Errorf("heartbeat: %d bytes, more than the limit of %d", len(data), limit.Message)
	}
	var hb gv1.Heartbeat
	if err := proto.Unmarshal(data, &hb); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	if err := checkHeartbeat(&hb); err != nil {
		return nil, err
	}
	// An agent speaks only for itself: the subject it was allowed to
	// publish on names it.
	if agent := hb.GetAgent().GetName(); subj != d.ns.Heartbeat(agent) {
		return nil, fmt.Errorf("heartbeat.agent.name: %q is not the agent of subject %q", agent, limit.Clip(subj, 256))
	}
	// An enrolled agent claims only what its join token allowed.
	if e, ok := d.fsm.Enrollment(hb.GetAgent().GetName()); ok {
		if err := EnrollmentBounds(e, hb.GetAgent()); err != nil {
			return nil, err
		}
	}
	if _, err := d.fleet.Observe(&hb, now); err != nil {
		return nil, err
	}
	return &hb, nil
}

// checkHeartbeat checks a heartbeat against the grammar of names and the
// bounds of package limit; the error names the field and the bound.
func checkHeartbeat(hb *gv1.Heartbeat) error {
	info := hb.GetAgent()
	if info == nil {
		return fmt.Errorf("heartbeat.agent: required")
	}
	if err := name.Token(info.GetName()); err != nil {
		return fmt.Errorf("heartbeat.agent.name: %w", err)
	}
	if err := checkLabels("heartbeat.agent.labels", info.GetLabels()); err != nil {
		return err
	}
	if info.GetSlots() < 0 {
		return fmt.Errorf("heartbeat.agent.slots: %d is negative", info.GetSlots())
	}
	for _, f := range []struct{ field, value string }{{"version", info.GetVersion()}, {"session", info.GetSession()}} {
		if len(f.value) > limit.LabelValue {
			return fmt.Errorf("heartbeat.agent.%s: %d bytes, longer than the limit of %d", f.field, len(f.value), limit.LabelValue)
		}
	}
	if n := len(info.GetCapabilities()); n > limit.Capabilities {
		return fmt.Errorf("heartbeat.agent.capabilities: %d capabilities, more than the limit of %d", n, limit.Capabilities)
	}
	for i, c := range info.GetCapabilities() {
		if err := checkCapability(c); err != nil {
			return fmt.Errorf("heartbeat.agent.capabilities[%d]: %w", i, err)
		}
	}
	if n := len(info.GetWarmCache()); n > limit.WarmCache {
		return fmt.Errorf("heartbeat.agent.warm_cache: %d keys, more than the limit of %d", n, limit.WarmCache)
	}
	for i, k := range info.GetWarmCache() {
		if len(k) > limit.WarmCacheKey {
			return fmt.Errorf("heartbeat.agent.warm_cache[%d]: %d bytes, longer than the limit of %d", i, len(k), limit.WarmCacheKey)
		}
	}
	if n := len(hb.GetRunning()); n > limit.HeartbeatRunning {
		return fmt.Errorf("heartbeat.running: %d attempts, more than the limit of %d", n, limit.HeartbeatRunning)
	}
	for i, ref := range hb.GetRunning() {
		if err := checkRef(ref); err != nil {
			return fmt.Errorf("heartbeat.running[%d]: %w", i, err)
		}
	}
	return nil
}

// EnrollmentBounds checks what an enrolled agent claims against its
// enrollment: not revoked, and, when its join token named labels, every
// label it claims among them and every cluster it reaches named by the
// label cluster.NAME=true.
func EnrollmentBounds(e *gv1.Enrollment, info *gv1.AgentInfo) error {
	if e.GetRevoked() {
		return fmt.Errorf("heartbeat.agent.name: agent %s was revoked (its join token %s is)", e.GetAgent(), e.GetTokenId())
	}
	allowed := e.GetLabels()
	if len(allowed) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(info.GetLabels()))
	for _, k := range keys {
		if v, ok := allowed[k]; !ok || v != info.GetLabels()[k] {
			return fmt.Errorf("heartbeat.agent.labels[%q]: %s=%s is not allowed by join token %s", k, k, info.GetLabels()[k], e.GetTokenId())
		}
	}
	for i, c := range info.GetCapabilities() {
		if cluster, ok := strings.CutPrefix(c, "cluster:"); ok && allowed["cluster."+cluster] != "true" {
			return fmt.Errorf("heartbeat.agent.capabilities[%d]: %s needs cluster.%s=true in join token %s", i, c, cluster, e.GetTokenId())
		}
	}
	return nil
}

// checkLabels checks a label set: at most limit.Labels, keys are names,
// values at most limit.LabelValue bytes.
func checkLabels(field string, labels map[string]string) error {
	if len(labels) > limit.Labels {
		return fmt.Errorf("%s: %d labels, more than the limit of %d", field, len(labels), limit.Labels)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := name.Check(k); err != nil {
			return fmt.Errorf("%s: key: %w", field, err)
		}
		if v := labels[k]; len(v) > limit.LabelValue {
			return fmt.Errorf("%s[%q]: value is %d bytes, longer than the limit of %d", field, k, len(v), limit.LabelValue)
		}
	}
	return nil
}

// checkCapability checks one capability: a name, or a kind and a name
// ("cluster:prod"), at most limit.Capability bytes.
func checkCapability(c string) error {
	if len(c) > limit.Capability {
		return fmt.Errorf("%d bytes, longer than the limit of %d", len(c), limit.Capability)
	}
	kind, rest, scoped := strings.Cut(c, ":")
	if err := name.Check(kind); err != nil {
		return err
	}
	if scoped {
		return name.Check(rest)
	}
	return nil
}

// checkRef checks an attempt reference: a job id and a task that are
// subject tokens, and a positive attempt.
func checkRef(ref *gv1.TaskRef) error {
	if err := name.Token(ref.GetJobId()); err != nil {
		return fmt.Errorf("job_id: %w", err)
	}
	if err := name.Token(ref.GetTask()); err != nil {
		return fmt.Errorf("task: %w", err)
	}
	if ref.GetAttempt() <= 0 {
		return fmt.Errorf("attempt: %d is not positive", ref.GetAttempt())
	}
	return nil
}
