package agent

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/agent/kube"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// KubeCluster is a Kubernetes cluster the agent deploys to.
type KubeCluster struct {
	// Name is how deploy tasks and applications name the cluster; the
	// agent advertises capability.Cluster(Name), "cluster:NAME".
	Name string
	// Kubeconfig is a kubeconfig file; empty means the in-cluster config of
	// an agent running in a Pod.
	Kubeconfig string
}

// ParseKubeCluster reads NAME=KUBECONFIG (or NAME=in-cluster).
func ParseKubeCluster(s string) (KubeCluster, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return KubeCluster{}, fmt.Errorf("kube cluster %q: want NAME=KUBECONFIG or NAME=in-cluster", s)
	}
	if path == "in-cluster" {
		path = ""
	}
	return KubeCluster{Name: name, Kubeconfig: path}, nil
}

func openClusters(cfg []KubeCluster, log *zap.Logger) (map[string]*kube.Cluster, error) {
	out := map[string]*kube.Cluster{}
	for _, c := range cfg {
		if _, dup := out[c.Name]; dup {
			return nil, fmt.Errorf("kube cluster %q: named twice", c.Name)
		}
		if c.Kubeconfig != "" {
			if _, err := os.Stat(c.Kubeconfig); err != nil {
				return nil, fmt.Errorf("kube cluster %q: %w", c.Name, err)
			}
		}
		kc, err := kube.Open(c.Name, c.Kubeconfig, log)
		if err != nil {
			return nil, fmt.Errorf("kube cluster %q: %w", c.Name, err)
		}
		out[c.Name] = kc
	}
	return out, nil
}

// watcher is one application whose live objects this agent watches.
type watcher struct {
	w      *gv1.AppWatch
	cancel context.CancelFunc
}

// handleWatch applies a watch set from the leader: it starts watching the
// applications that are new and stops those no longer listed.
func (a *Agent) handleWatch(m *nats.Msg) {
	var set gv1.WatchSet
	if err := proto.Unmarshal(m.Data, &set); err != nil {
		a.log.Warn("malformed watch set", zap.Error(err))
		return
	}
	want := map[string]*gv1.AppWatch{}
	for _, w := range set.GetApps() {
		if err := name.Check(w.GetApp()); err != nil {
			a.log.Warn("watch of an invalid application name ignored", zap.Error(err))
			continue
		}
		if a.clusters[w.GetCluster()] != nil {
			want[w.GetApp()] = w
		}
	}
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	if a.watchCtx == nil || a.watchCtx.Err() != nil {
		return
	}
	for app, cur := range a.watchers {
		if w, ok := want[app]; !ok || !proto.Equal(w, cur.w) {
			cur.cancel()
			delete(a.watchers, app)
		}
	}
	for app, w := range want {
		if _, ok := a.watchers[app]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(a.watchCtx)
		a.watchers[app] = &watcher{w: w, cancel: cancel}
		c := a.clusters[w.GetCluster()]
		a.watchWG.Add(1)
		go func() {
			defer a.watchWG.Done()
			c.Watch(ctx, w.GetApp(), w.GetNamespace(), func(r *gv1.DriftReport) { a.publishDrift(r) })
		}()
		a.log.Info("watching application", zap.String("app", app), zap.String("cluster", w.GetCluster()))
	}
}

func (a *Agent) publishDrift(r *gv1.DriftReport) {
	r.Agent = a.cfg.Name
	data, err := proto.Marshal(r)
	if err != nil {
		return
	}
	a.mu.Lock()
	nc := a.nc
	a.mu.Unlock()
	if nc == nil {
		return
	}
	if err := nc.Publish(a.ns.Drift(a.cfg.Name), data); err != nil {
		a.log.Debug("publish drift report", zap.Error(err))
	}
}

// stopWatches ends every watch and waits for them.
func (a *Agent) stopWatches() {
	a.watchMu.Lock()
	if a.watchStop != nil {
		a.watchStop()
	}
	a.watchers = map[string]*watcher{}
	a.watchMu.Unlock()
	a.watchWG.Wait()
}
