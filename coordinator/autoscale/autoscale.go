// Package autoscale sizes agent pools on Kubernetes by the work waiting for
// them: the leader sets the replica count of each pool's Deployment from the
// tasks queued for the pool's labels and the tasks its agents run, within the
// pool's bounds, and shrinks a pool only by agents that run nothing.
//
// A pool is a Deployment in the coordinators' namespace labelled
// gantry.dev/autoscale=true. Its agents are its pods (the agent's --name is
// the pod's name, as deploy/kubernetes and the Helm chart set it); its
// labels are the --label arguments of its agent container (or the
// annotation gantry.dev/labels); its bounds are the annotations
// gantry.dev/min-replicas and gantry.dev/max-replicas; gantry.dev/slots
// (else the agents' own heartbeat, else 4) is how many tasks one agent runs;
// gantry.dev/scale-down-after (default 5m) is how long the pool must have
// had more agents than it needs before it shrinks.
//
// Scaling down never kills a running task: only pods whose agents run
// nothing (or never connected) are given a negative
// controller.kubernetes.io/pod-deletion-cost, the pods running tasks a
// positive one, and the count drops by no more than the idle pods; a pod
// that takes a task in between drains on SIGTERM (it finishes the task and
// reports before it exits, within the pod's termination grace period).
package autoscale

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/gantryci/gantry/coordinator/fleet"
)

// The Deployment label and annotations a pool is configured by.
const (
	LabelPool          = "gantry.dev/autoscale"
	AnnoMin            = "gantry.dev/min-replicas"
	AnnoMax            = "gantry.dev/max-replicas"
	AnnoSlots          = "gantry.dev/slots"
	AnnoLabels         = "gantry.dev/labels"
	AnnoScaleDownAfter = "gantry.dev/scale-down-after"
	// AnnoDeletionCost is Kubernetes' hint to the ReplicaSet controller:
	// pods with a lower cost are removed first when it scales down.
	AnnoDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

	defaultSlots          = 4
	defaultScaleDownAfter = 5 * time.Minute
)

// State is what the controller reads of the replicated state.
type State interface {
	// PendingDepth counts the tasks waiting for an agent by label set
	// (fsm.LabelKey: "k=v,k2=v2", sorted; "" for none).
	PendingDepth() map[string]int
	// AgentLoad counts the leased tasks by agent.
	AgentLoad() map[string]int
}

// Fleet is the agents heard from.
type Fleet interface {
	Agents(now time.Time, forget time.Duration) []fleet.Agent
}

// Config wires a Controller.
type Config struct {
	Kube      kubernetes.Interface
	Namespace string
	State     State
	Fleet     Fleet
	Log       *zap.Logger
	// Interval between passes; default 1 s.
	Interval time.Duration
	// Observe, when set, is told each pool's decision (metrics).
	Observe func(pool string, demand, replicas int)
}

// Controller scales the pools while its Lead runs (on the leader).
type Controller struct {
	cfg Config

	mu sync.Mutex
	// over is when each pool was first seen with more replicas than it
	// needs, since then without a break; forgotten when leadership ends.
	over map[string]time.Time
}

// New returns a controller; it does nothing until Lead.
func New(cfg Config) *Controller {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	cfg.Log = cfg.Log.Named("autoscale")
	return &Controller{cfg: cfg, over: map[string]time.Time{}}
}

// Lead scales the pools every Interval until ctx ends.
func (c *Controller) Lead(ctx context.Context) {
	c.mu.Lock()
	c.over = map[string]time.Time{}
	c.mu.Unlock()
	c.cfg.Log.Info("scaling agent pools on queue depth", zap.String("namespace", c.cfg.Namespace))
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		err := c.Pass(ctx, time.Now())
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			c.cfg.Log.Warn("autoscale pass", zap.Error(err))
			failing = true
		case err == nil && failing:
			c.cfg.Log.Info("autoscale pass succeeds again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pool is one Deployment's configuration.
type Pool struct {
	Name           string
	Labels         map[string]string
	Min, Max       int
	Slots          int // 0: from the agents' heartbeats
	ScaleDownAfter time.Duration
}

// PoolOf reads a Deployment's pool configuration, naming the bad
// annotation when one is wrong.
func PoolOf(d *appsv1.Deployment) (Pool, error) {
	p := Pool{Name: d.Name, Min: 0, Max: 10, ScaleDownAfter: defaultScaleDownAfter}
	a := d.Annotations
	num := func(key string, dst *int) error {
		v, ok := a[key]
		if !ok {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 10000 {
			return fmt.Errorf("deployment %s: annotation %s: %q is not a count from 0 to 10000", d.Name, key, v)
		}
		*dst = n
		return nil
	}
	if err := num(AnnoMin, &p.Min); err != nil {
		return p, err
	}
	if err := num(AnnoMax, &p.Max); err != nil {
		return p, err
	}
	if err := num(AnnoSlots, &p.Slots); err != nil {
		return p, err
	}
	if p.Max < p.Min {
		return p, fmt.Errorf("deployment %s: annotation %s: %d is below %s %d", d.Name, AnnoMax, p.Max, AnnoMin, p.Min)
	}
	if v, ok := a[AnnoScaleDownAfter]; ok {
		dur, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || dur < 0 {
			return p, fmt.Errorf("deployment %s: annotation %s: %q is not a duration", d.Name, AnnoScaleDownAfter, v)
		}
		p.ScaleDownAfter = dur
	}
	if v, ok := a[AnnoLabels]; ok {
		l, err := parseLabels(strings.Split(v, ","))
		if err != nil {
			return p, fmt.Errorf("deployment %s: annotation %s: %w", d.Name, AnnoLabels, err)
		}
		p.Labels = l
		return p, nil
	}
	l, slots, err := agentArgs(d.Spec.Template.Spec.Containers)
	if err != nil {
		return p, fmt.Errorf("deployment %s: %w", d.Name, err)
	}
	p.Labels = l
	if p.Slots == 0 {
		p.Slots = slots
	}
	return p, nil
}

// agentArgs reads --label and --slots from the agent container's
// arguments: the first container whose command or arguments start with
// "agent".
func agentArgs(cs []corev1.Container) (map[string]string, int, error) {
	for _, c := range cs {
		args := append(slices.Clone(c.Command), c.Args...)
		i := slices.Index(args, "agent")
		if i < 0 || i > 1 {
			continue
		}
		var ls []string
		slots := 0
		for j := i + 1; j < len(args); j++ {
			name, val, eq := strings.Cut(args[j], "=")
			if name != "--label" && name != "-label" && name != "--slots" && name != "-slots" {
				continue
			}
			if !eq {
				if j+1 >= len(args) {
					return nil, 0, fmt.Errorf("container %s: %s without a value", c.Name, name)
				}
				j++
				val = args[j]
			}
			if strings.HasSuffix(name, "slots") {
				n, err := strconv.Atoi(val)
				if err != nil || n < 1 {
					return nil, 0, fmt.Errorf("container %s: --slots %q", c.Name, val)
				}
				slots = n
				continue
			}
			ls = append(ls, val)
		}
		l, err := parseLabels(ls)
		if err != nil {
			return nil, 0, fmt.Errorf("container %s: --label: %w", c.Name, err)
		}
		return l, slots, nil
	}
	return nil, 0, fmt.Errorf("no container runs `gantry agent`; set annotation %s", AnnoLabels)
}

func parseLabels(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// Serves reports whether an agent with the pool's labels takes tasks that
// ask for the labels of key (fsm.LabelKey).
func (p Pool) Serves(key string) bool {
	if key == "" {
		return true
	}
	for _, kv := range strings.Split(key, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := p.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Member is one pod of a pool and what its agent runs.
type Member struct {
	Pod     string
	Running int  // tasks its agent holds
	Agent   bool // its agent is connected
}

// Decision is one pass's verdict for a pool.
type Decision struct {
	Demand   int // tasks queued for the pool plus tasks its agents run
	Want     int // agents the demand needs, within Min..Max
	Replicas int // the count to set; the current one when unchanged
	// Remove are the idle pods to go first when Replicas is lower.
	Remove []string
	Reason string
}

// Decide sizes a pool: up at once to what the demand needs, down only once
// it has needed fewer for ScaleDownAfter (overSince, zero when it did
// not), and only by idle members.
func Decide(p Pool, queued int, current int, members []Member, slots int, overSince, now time.Time) Decision {
	if slots < 1 {
		slots = defaultSlots
	}
	running := 0
	for _, m := range members {
		running += m.Running
	}
	d := Decision{Demand: queued + running, Replicas: current}
	d.Want = min(max((d.Demand+slots-1)/slots, p.Min), p.Max)
	switch {
	case d.Want > current:
		d.Replicas = d.Want
		d.Reason = fmt.Sprintf("%d tasks queued and %d running need %d agents of %d slots", queued, running, d.Want, slots)
	case d.Want < current:
		if overSince.IsZero() || now.Sub(overSince) < p.ScaleDownAfter {
			return d
		}
		idle := []string{}
		for _, m := range members {
			if m.Running == 0 {
				idle = append(idle, m.Pod)
			}
		}
		// Pods not listed yet (being created) count as idle too: the
		// ReplicaSet removes those first anyway.
		extra := max(current-len(members), 0)
		cut := min(current-d.Want, len(idle)+extra)
		if cut == 0 {
			return d
		}
		d.Replicas = current - cut
		slices.Sort(idle)
		// Prefer pods whose agent never connected, then the rest.
		slices.SortStableFunc(idle, func(a, b string) int {
			return boolInt(connected(members, a)) - boolInt(connected(members, b))
		})
		d.Remove = idle[:min(max(cut-extra, 0), len(idle))]
		d.Reason = fmt.Sprintf("%d tasks queued and %d running need %d agents for %s; removing idle %s", queued, running, d.Want, p.ScaleDownAfter, strings.Join(d.Remove, ","))
	}
	return d
}

func connected(ms []Member, pod string) bool {
	for _, m := range ms {
		if m.Pod == pod {
			return m.Agent
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Pass looks at every pool once and scales those that need it.
func (c *Controller) Pass(ctx context.Context, now time.Time) error {
	deps, err := c.cfg.Kube.AppsV1().Deployments(c.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelPool + "=true"})
	if err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	depth := c.cfg.State.PendingDepth()
	load := c.cfg.State.AgentLoad()
	agents := map[string]fleet.Agent{}
	for _, a := range c.cfg.Fleet.Agents(now, 0) {
		agents[a.Info.GetName()] = a
	}
	var errs []error
	seen := map[string]bool{}
	for i := range deps.Items {
		d := &deps.Items[i]
		seen[d.Name] = true
		if err := c.scale(ctx, d, depth, load, agents, now); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	maps.DeleteFunc(c.over, func(k string, _ time.Time) bool { return !seen[k] })
	c.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, depth, load map[string]int, agents map[string]fleet.Agent, now time.Time) error {
	p, err := PoolOf(d)
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		return fmt.Errorf("deployment %s: selector: %v", d.Name, err)
	}
	pods, err := c.cfg.Kube.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("deployment %s: list pods: %w", d.Name, err)
	}
	var members []Member
	slots := p.Slots
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || !ownedBy(&pod, d) {
			continue
		}
		m := Member{Pod: pod.Name, Running: load[pod.Name]}
		if a, ok := agents[pod.Name]; ok {
			m.Agent = true
			m.Running = max(m.Running, len(a.Running))
			if slots == 0 {
				slots = int(a.Info.GetSlots())
			}
		}
		members = append(members, m)
	}
	queued := 0
	for key, n := range depth {
		if p.Serves(key) {
			queued += n
		}
	}
	current := 1
	if d.Spec.Replicas != nil {
		current = int(*d.Spec.Replicas)
	}
	c.mu.Lock()
	over := c.over[d.Name]
	dec := Decide(p, queued, current, members, slots, over, now)
	switch {
	case dec.Want < current && over.IsZero():
		c.over[d.Name] = now
	case dec.Want >= current || dec.Replicas != current:
		delete(c.over, d.Name)
	}
	c.mu.Unlock()
	if c.cfg.Observe != nil {
		c.cfg.Observe(d.Name, dec.Demand, dec.Replicas)
	}
	if dec.Replicas == current {
		return nil
	}
	if dec.Replicas < current {
		if err := c.markForRemoval(ctx, d.Namespace, members, dec.Remove); err != nil {
			return fmt.Errorf("deployment %s: %w", d.Name, err)
		}
	}
	scale := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, ResourceVersion: d.ResourceVersion},
		Spec:       autoscalingv1.ScaleSpec{Replicas: int32(dec.Replicas)},
	}
	if _, err := c.cfg.Kube.AppsV1().Deployments(d.Namespace).UpdateScale(ctx, d.Name, scale, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("deployment %s: scale to %d: %w", d.Name, dec.Replicas, err)
	}
	c.cfg.Log.Info("scaled agent pool", zap.String("pool", d.Name), zap.Int("from", current), zap.Int("to", dec.Replicas), zap.String("why", dec.Reason))
	return nil
}

// markForRemoval gives the pods to remove the lowest deletion cost and the
// pods running tasks a cost by their load, so that the ReplicaSet removes
// the idle ones.
func (c *Controller) markForRemoval(ctx context.Context, ns string, members []Member, remove []string) error {
	for _, m := range members {
		cost := m.Running
		if slices.Contains(remove, m.Pod) {
			cost = -1000
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnoDeletionCost, strconv.Itoa(cost))
		if _, err := c.cfg.Kube.CoreV1().Pods(ns).Patch(ctx, m.Pod, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("pod %s: deletion cost: %w", m.Pod, err)
		}
	}
	return nil
}

// ownedBy reports whether pod belongs to the Deployment d: its pod
// template's labels, and a ReplicaSet owner named after d.
func ownedBy(pod *corev1.Pod, d *appsv1.Deployment) bool {
	if !labels.SelectorFromSet(d.Spec.Template.Labels).Matches(labels.Set(pod.Labels)) {
		return false
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "ReplicaSet" && strings.HasPrefix(o.Name, d.Name+"-") {
			return true
		}
	}
	return false
}
