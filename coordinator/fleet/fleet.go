// Package fleet is every coordinator's in-memory view of the agents, fed by
// their heartbeats. Heartbeats never enter Raft; each node keeps its own
// view, so a new leader starts with a warm one. The dispatcher reads it to
// place tasks and renew leases, the GitOps controller to hand out watches,
// the API and the console to list agents.
package fleet

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// View is the agents heard from, with what each holds. It is bounded: it
// holds at most a maximum of agents (limit.Agents) and forgets those silent
// for the forget time (limit.AgentForget).
type View struct {
	ttl    time.Duration
	max    int
	forget time.Duration

	mu     sync.RWMutex
	agents map[string]*agentView
	// order is the agents' views sorted by name, kept as agents come, go
	// and send heartbeats, so that a scheduling pass walks the view in
	// name order without sorting it or looking each name up (a map lookup
	// per agent was most of the walk with a thousand agents).
	order   []*agentView
	changed chan struct{}
	// roster is closed when the set of agents or what they offer
	// changes, not when an agent only takes or frees a slot.
	roster  chan struct{}
	swept   time.Time // last sweep of forgotten agents
	evicted time.Time // last sweep of lost agents in a full view
}

type agentView struct {
	info     *gv1.AgentInfo
	running  map[refKey]bool
	refs     []*gv1.TaskRef
	lastSeen time.Time
}

type refKey struct {
	job     string
	task    string
	attempt int32
}

func keyOf(r *gv1.TaskRef) refKey { return refKey{r.GetJobId(), r.GetTask(), r.GetAttempt()} }

// ErrFull: the view holds its maximum of agents and none of them is lost.
var ErrFull = errors.New("fleet view full")

// sweepEvery is how often at most Observe looks for agents to forget.
const sweepEvery = time.Second

// New returns an empty view bounded by package limit; an agent silent for
// ttl is lost.
func New(ttl time.Duration) *View { return NewBounded(ttl, limit.Agents, limit.AgentForget) }

// NewBounded returns an empty view of at most maxAgents agents that forgets
// an agent silent for forget; an agent silent for ttl is lost.
func NewBounded(ttl time.Duration, maxAgents int, forget time.Duration) *View {
	return &View{ttl: ttl, max: maxAgents, forget: forget, agents: map[string]*agentView{}, changed: make(chan struct{}), roster: make(chan struct{})}
}

// Observe records a heartbeat received at now. It reports whether the agent
// is new, restarted or changed state, i.e. whether scheduling should rerun.
// A new agent is refused (ErrFull) while the view is full of agents
// that are not lost; lost ones make room.
func (f *View) Observe(hb *gv1.Heartbeat, now time.Time) (bool, error) {
	info := hb.GetAgent()
	if info.GetName() == "" {
		return false, nil
	}
	v := &agentView{info: info, running: make(map[refKey]bool, len(hb.Running)), refs: hb.Running, lastSeen: now}
	for _, r := range hb.Running {
		v.running[keyOf(r)] = true
	}
	f.mu.Lock()
	f.sweepLocked(now)
	old := f.agents[info.Name]
	if old == nil && !f.roomLocked(now) {
		f.mu.Unlock()
		return false, fmt.Errorf("agent %s: %d agents known: %w", info.Name, f.max, ErrFull)
	}
	f.agents[info.Name] = v
	i, found := slices.BinarySearchFunc(f.order, info.Name, func(a *agentView, name string) int { return strings.Compare(a.info.GetName(), name) })
	if found {
		f.order[i] = v
	} else {
		f.order = slices.Insert(f.order, i, v)
	}
	joined := old == nil || now.Sub(old.lastSeen) > f.ttl || old.info.GetSession() != info.GetSession() ||
		old.info.GetDraining() != info.GetDraining() || !slices.Equal(old.info.GetCapabilities(), info.GetCapabilities())
	notable := joined || old.info.GetSlots() != info.GetSlots() || len(old.refs) != len(hb.Running)
	var ch, rch chan struct{}
	if notable {
		ch = f.changed
		f.changed = make(chan struct{})
	}
	if joined {
		rch = f.roster
		f.roster = make(chan struct{})
	}
	f.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	if rch != nil {
		close(rch)
	}
	return notable, nil
}

// sweepLocked forgets agents silent for f.forget, at most once per
// sweepEvery.
func (f *View) sweepLocked(now time.Time) {
	if now.Sub(f.swept) < sweepEvery {
		return
	}
	f.swept = now
	for name, v := range f.agents {
		if now.Sub(v.lastSeen) > f.forget {
			delete(f.agents, name)
		}
	}
	f.reorderLocked()
}

// reorderLocked makes order the agents' views by name again after some
// were forgotten.
func (f *View) reorderLocked() {
	if len(f.order) == len(f.agents) {
		return
	}
	f.order = f.order[:0]
	for _, v := range f.agents {
		f.order = append(f.order, v)
	}
	slices.SortFunc(f.order, func(a, b *agentView) int { return strings.Compare(a.info.GetName(), b.info.GetName()) })
}

// roomLocked makes room for a new agent in a full view by forgetting every
// lost agent (at most once per sweepEvery, so a flood of new names costs
// one pass a second); it reports whether there is room.
func (f *View) roomLocked(now time.Time) bool {
	if len(f.agents) < f.max {
		return true
	}
	if now.Sub(f.evicted) >= sweepEvery {
		f.evicted = now
		for name, v := range f.agents {
			if now.Sub(v.lastSeen) > f.ttl {
				delete(f.agents, name)
			}
		}
		f.reorderLocked()
	}
	return len(f.agents) < f.max
}

// Changed returns a channel closed when an agent appears, restarts, frees a
// slot or changes state.
func (f *View) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Roster returns a channel closed when an agent appears, restarts, comes
// back from lost, starts or stops draining or changes its capabilities:
// what decides who watches what, without the slot changes that close
// Changed on nearly every heartbeat of a busy fleet.
func (f *View) Roster() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.roster
}

// HeldAt returns when agent's latest heartbeat listing ref arrived; ok is
// false when its latest heartbeat does not list ref.
func (f *View) HeldAt(agent string, ref *gv1.TaskRef) (at time.Time, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, found := f.agents[agent]
	if !found || !v.running[keyOf(ref)] {
		return time.Time{}, false
	}
	return v.lastSeen, true
}

// Alive reports whether agent sent a heartbeat within the TTL.
func (f *View) Alive(agent string, now time.Time) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.agents[agent]
	return ok && now.Sub(v.lastSeen) <= f.ttl
}

// Schedulable reports whether agent may be given a task at now: heard
// from within the TTL and not draining (what EachActive lists).
func (f *View) Schedulable(agent string, now time.Time) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.agents[agent]
	return ok && now.Sub(v.lastSeen) <= f.ttl && !v.info.GetDraining()
}

// LastSeen returns when agent was last heard from.
func (f *View) LastSeen(agent string) (time.Time, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.agents[agent]
	if !ok {
		return time.Time{}, false
	}
	return v.lastSeen, true
}

// Labels returns the labels agent announced in its latest heartbeat.
func (f *View) Labels(agent string) (map[string]string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.agents[agent]
	if !ok {
		return nil, false
	}
	return v.info.GetLabels(), true
}

// Protocol returns the agent protocol revision agent announced in its
// latest heartbeat (0 for an agent not heard from).
func (f *View) Protocol(agent string) int32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if v, ok := f.agents[agent]; ok {
		return v.info.GetProtocol()
	}
	return 0
}

// Agent is a snapshot of one agent.
type Agent struct {
	Info     *gv1.AgentInfo
	Running  []*gv1.TaskRef
	LastSeen time.Time
	State    gv1.AgentState
}

// Len is how many agents the view holds, active or not.
func (f *View) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.order)
}

// EachActive calls fn with the info of every agent heard from within the
// lease TTL and not draining, by name, without copying: what a scheduling
// pass needs (Agents sorts and copies, which with a thousand agents took
// most of a pass).
func (f *View) EachActive(now time.Time, fn func(info *gv1.AgentInfo)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, v := range f.order {
		if now.Sub(v.lastSeen) > f.ttl || v.info.GetDraining() {
			continue
		}
		fn(v.info)
	}
}

// Agents returns every agent heard from, by name. Agents lost for more than
// forget are dropped from the view (zero keeps them). Info is shared, not
// copied: a heartbeat replaces an agent's Info, it never changes one, so
// callers must not modify it.
func (f *View) Agents(now time.Time, forget time.Duration) []Agent {
	if forget > 0 {
		f.mu.Lock()
		for name, v := range f.agents {
			if now.Sub(v.lastSeen) > forget {
				delete(f.agents, name)
			}
		}
		f.reorderLocked()
		f.mu.Unlock()
	}
	f.mu.RLock()
	out := make([]Agent, 0, len(f.order))
	for _, v := range f.order { // by name already: sorting a copy took most of the call
		st := gv1.AgentState_AGENT_STATE_ACTIVE
		switch {
		case now.Sub(v.lastSeen) > f.ttl:
			st = gv1.AgentState_AGENT_STATE_LOST
		case v.info.GetDraining():
			st = gv1.AgentState_AGENT_STATE_DRAINING
		}
		out = append(out, Agent{Info: v.info, Running: v.refs, LastSeen: v.lastSeen, State: st})
	}
	f.mu.RUnlock()
	return out
}
