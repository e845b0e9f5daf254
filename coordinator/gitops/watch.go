package gitops

import (
	"hash/fnv"
	"sort"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

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
			if name, ok := capability.ClusterName(cp); ok {
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
