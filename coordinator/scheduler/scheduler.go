// Package scheduler places pending tasks on agents. It is a pure function of
// its inputs: the leader gathers the pending tasks, the live agents and the
// busy concurrency keys, and commits the placements it returns.
package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/buildkey"
	"github.com/gantryci/gantry/internal/capability"
)

// Candidate is an agent that could take work.
type Candidate struct {
	Name   string
	Labels map[string]string
	// Free is the number of slots not holding a task.
	Free int
	// Capabilities are what the agent offers (package capability).
	Capabilities []string
	// Warm are the build cache keys the agent's BuildKit holds
	// (internal/buildkey); a build prefers an agent that has its key.
	Warm []string
}

// Placement assigns the next attempt of a task to an agent.
type Placement struct {
	Task    fsm.PendingTask
	Attempt int32
	Agent   string
}

// Plan is what one scheduling pass decided.
type Plan struct {
	Placements []Placement
	// Waiting says why each unplaced task waits, keyed by "job/task".
	Waiting map[string]string
	// WaitingClass says why the tasks of a class (fsm.PendingTask.Class)
	// wait, for the tasks a Pass skipped once their class could not be
	// placed.
	WaitingClass map[string]string
	// Full: the pass ended with no free slot on any agent; the tasks it
	// did not look at wait for one.
	Full bool
}

// Schedule places tasks, in the order given (fsm.Pending: by priority,
// then runnable time), on agents. now is unix nanoseconds; a task not yet
// runnable (RunnableAt after now: its retry backoff has not passed) waits.
func Schedule(tasks []fsm.PendingTask, agents []Candidate, busy map[string]bool, now int64) Plan {
	p := NewPass(agents, busy, now)
	for _, t := range tasks {
		p.Offer(t, "")
	}
	return p.Plan()
}

// Pass is one scheduling pass fed task by task, in queue order
// (fsm.EachPending). Once a task of a class cannot be placed, no later task
// of that class can in the same pass (free slots only shrink, held
// concurrency keys only grow): Blocked says so before the task is even
// built, so a pass over a deep queue costs what it places plus a look at
// each class, not a sort of the whole queue.
type Pass struct {
	// free points into the pass's copy of its agents: moving an agent
	// down the order after a placement copies pointers, not the
	// candidates (with a thousand agents of equal free slots that copy
	// was 80 KB per placement).
	free      []*Candidate
	freeSlots int
	held      map[string]bool
	now       int64
	plan      Plan
	// labels counts the agents having each label, built when a task first
	// asks for labels: a task asking for a label no agent has is told so
	// without matching it against every agent.
	labels map[label]int
	// byName finds an agent's candidate, built at the first Credit.
	byName map[string]*Candidate
}

type label struct{ k, v string }

// NewPass starts a pass over agents (copied) with the busy concurrency
// keys; now is unix nanoseconds.
func NewPass(agents []Candidate, busy map[string]bool, now int64) *Pass {
	p := &Pass{held: map[string]bool{}, now: now,
		plan: Plan{Waiting: map[string]string{}, WaitingClass: map[string]string{}}}
	cs := slices.Clone(agents)
	// Spread load: agents with more free slots first, then by name. Agents
	// come by name (the fleet view keeps them so): a stable counting sort
	// by free slots orders them in linear time, every pass.
	if !slices.IsSortedFunc(cs, func(a, b Candidate) int { return strings.Compare(a.Name, b.Name) }) {
		slices.SortFunc(cs, func(a, b Candidate) int { return strings.Compare(a.Name, b.Name) })
	}
	p.free = make([]*Candidate, len(cs))
	for i := range cs {
		p.free[i] = &cs[i]
	}
	p.free = byFreeDesc(p.free)
	for _, a := range agents {
		p.freeSlots += max(a.Free, 0)
	}
	for k := range busy {
		p.held[k] = true
	}
	return p
}

// byFreeDesc orders cs by free slots, most first, keeping their order
// within equal counts (as less, given cs in name order).
func byFreeDesc(cs []*Candidate) []*Candidate {
	if len(cs) == 0 {
		return cs
	}
	lo, hi := cs[0].Free, cs[0].Free
	for _, c := range cs {
		lo, hi = min(lo, c.Free), max(hi, c.Free)
	}
	if hi-lo > 4096 {
		slices.SortStableFunc(cs, func(a, b *Candidate) int { return cmp.Compare(b.Free, a.Free) })
		return cs
	}
	start := make([]int, hi-lo+2)
	for _, c := range cs {
		start[hi-c.Free+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	out := make([]*Candidate, len(cs))
	for _, c := range cs {
		k := hi - c.Free
		out[start[k]] = c
		start[k]++
	}
	return out
}

// Full reports whether no agent has a free slot left.
func (p *Pass) Full() bool { return p.freeSlots <= 0 }

// Blocked reports whether tasks of class wait in this pass, and why.
func (p *Pass) Blocked(class string) (string, bool) {
	r, ok := p.plan.WaitingClass[class]
	return r, ok
}

// Offer places t if it can. With a class, a task that cannot be placed
// for a reason its whole class shares blocks the class (Blocked).
func (p *Pass) Offer(t fsm.PendingTask, class string) {
	key := t.Key.JobID + "/" + t.Key.Task
	wait := func(reason string) {
		if class != "" {
			p.plan.WaitingClass[class] = reason
			return
		}
		p.plan.Waiting[key] = reason
	}
	if t.RunnableAt > p.now {
		p.plan.Waiting[key] = "retry backoff"
		return
	}
	if c := t.Spec.GetConcurrency(); c != "" && p.held[c] {
		wait(fmt.Sprintf("concurrency group %q busy", c))
		return
	}
	if want := t.Spec.GetLabels(); len(want) > 0 {
		if p.labels == nil {
			p.labels = map[label]int{}
			for _, a := range p.free {
				for k, v := range a.Labels {
					p.labels[label{k, v}]++
				}
			}
		}
		for k, v := range want {
			if p.labels[label{k, v}] == 0 {
				wait("no agent with labels " + FormatLabels(want))
				return
			}
		}
	}
	i, reason := pick(t, p.free)
	if i < 0 {
		wait(reason)
		return
	}
	p.plan.Placements = append(p.plan.Placements, p.take(t, i))
}

// Place gives t a slot the pass left free, if an agent fits it, after the
// pass's plan was made (the plan is not changed): a task that arrives
// between passes can take a free slot at once.
func (p *Pass) Place(t fsm.PendingTask) (Placement, bool) {
	if c := t.Spec.GetConcurrency(); c != "" && p.held[c] {
		return Placement{}, false
	}
	i, _ := pick(t, p.free)
	if i < 0 {
		return Placement{}, false
	}
	return p.take(t, i), true
}

// take places t on the free agent i.
func (p *Pass) take(t fsm.PendingTask, i int) Placement {
	pl := Placement{Task: t, Attempt: t.Attempt + 1, Agent: p.free[i].Name}
	if c := t.Spec.GetConcurrency(); c != "" {
		p.held[c] = true
	}
	p.free[i].Free--
	p.freeSlots--
	// Keep the order (most free first): move the agent back past those
	// that now come before it, found by binary search (the rest is in
	// order) and shifted in one copy: with a thousand agents of equal free
	// slots, a placement would otherwise swap its way past all of them.
	a := p.free[i]
	rest := p.free[i+1:]
	k := sort.Search(len(rest), func(k int) bool { return !less(rest[k], a) })
	copy(p.free[i:i+k], rest[:k])
	p.free[i+k] = a
	return pl
}

// Credit gives agent name back a slot: a task it held when the pass
// counted its free slots, or one the pass placed on it, has ended. It moves
// the agent up the order past those it now has more free slots than, as
// take moves it down. An agent the pass did not count is ignored.
func (p *Pass) Credit(name string) {
	if p.byName == nil {
		p.byName = make(map[string]*Candidate, len(p.free))
		for _, c := range p.free {
			p.byName[c.Name] = c
		}
	}
	a := p.byName[name]
	if a == nil {
		return
	}
	i := sort.Search(len(p.free), func(k int) bool { return !less(p.free[k], a) })
	if i == len(p.free) || p.free[i] != a {
		return // not where the order puts it: never, while the order holds
	}
	p.freeSlots += max(a.Free+1, 0) - max(a.Free, 0)
	a.Free++
	k := sort.Search(i, func(k int) bool { return less(a, p.free[k]) })
	copy(p.free[k+1:i+1], p.free[k:i])
	p.free[k] = a
}

// Plan is what the pass decided.
func (p *Pass) Plan() Plan {
	p.plan.Full = p.Full()
	return p.plan
}

// less orders agents with more free slots first, then by name.
func less(a, b *Candidate) bool {
	if a.Free != b.Free {
		return a.Free > b.Free
	}
	return a.Name < b.Name
}

// pick returns the index of the best agent for t, or -1 and why none fits.
// An agent that failed this task with an infrastructure error is used only
// when no other agent fits.
//
// A build goes to a free agent whose cache is warm for it when there is one.
func pick(t fsm.PendingTask, agents []*Candidate) (int, string) {
	need := capability.For(t.Spec)
	var warmKey string
	if b := t.Spec.GetBuild(); b != nil {
		warmKey = buildkey.For(b)
	}
	matching, fallback, capable, cold := -1, -1, false, -1
	for i, a := range agents {
		if !Matches(t.Spec.GetLabels(), a.Labels) {
			continue
		}
		if matching < 0 {
			matching = i
		}
		if !slices.Contains(a.Capabilities, need) {
			continue
		}
		capable = true
		if a.Free <= 0 {
			continue
		}
		if avoided(t.AvoidAgents, a.Name) {
			if fallback < 0 {
				fallback = i
			}
			continue
		}
		if warmKey == "" {
			return i, ""
		}
		if slices.Contains(a.Warm, warmKey) {
			return i, ""
		}
		if cold < 0 {
			cold = i // the best cold agent, used if no warm one is free
		}
	}
	switch {
	case cold >= 0:
		return cold, ""
	case fallback >= 0:
		return fallback, ""
	case matching < 0 && len(t.Spec.GetLabels()) == 0:
		return -1, "no agent connected"
	case matching < 0:
		return -1, "no agent with labels " + FormatLabels(t.Spec.GetLabels())
	case !capable && len(t.Spec.GetLabels()) == 0:
		return -1, "no agent with capability " + need
	case !capable:
		return -1, "no agent with capability " + need + " and labels " + FormatLabels(t.Spec.GetLabels())
	}
	return -1, "all matching agents busy"
}

func avoided(list []string, name string) bool {
	for _, n := range list {
		if n == name {
			return true
		}
	}
	return false
}

// Matches reports whether an agent's labels satisfy a task's selector.
func Matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// FormatLabels renders labels as sorted k=v pairs.
func FormatLabels(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
