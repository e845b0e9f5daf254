package kube

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Timings of Watch.
const (
	// debounce coalesces the events of one change (a rollout updates its
	// objects several times in a few milliseconds) into one report.
	debounce = 50 * time.Millisecond
	// minBackoff and maxBackoff bound the wait before watching again after
	// an error.
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// Watch follows the live objects of one application until ctx ends and
// calls report each time the drift report changes (and once at start).
// Errors (e.g. cluster unreachable) are reported in DriftReport.Error and
// retried with backoff, never returned. report is called from one goroutine.
func (c *Cluster) Watch(ctx context.Context, app, namespace string, report func(*gv1.DriftReport)) {
	if namespace == "" {
		namespace = "default"
	}
	w := &watcher{c: c, app: app, ns: namespace, report: report,
		log: c.log.With(zap.String("app", app), zap.String("namespace", namespace))}
	backoff := minBackoff
	for {
		started := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > maxBackoff {
			backoff = minBackoff // the last session worked for a while
		}
		w.log.Info("watch failed", zap.Error(err), zap.Duration("retry_in", backoff))
		w.emit(&gv1.DriftReport{App: app, Revision: w.revision, Fence: w.fence, Error: err.Error()})
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// watcher is the state of one Watch call.
type watcher struct {
	c      *Cluster
	app    string
	ns     string
	report func(*gv1.DriftReport)
	log    *zap.Logger

	last     *gv1.DriftReport // last report emitted
	revision string
	fence    uint64
	// desired state, from the inventory's manifests
	manifests []byte
	desired   []*object
	// sub reads the live objects from the cluster's shared cache; loaded
	// says desired and liveKeys were set in this session.
	sub      *subscription
	loaded   bool
	liveKeys []liveKey
}

// emit reports r unless it says the same as the last report.
func (w *watcher) emit(r *gv1.DriftReport) {
	if w.last != nil && proto.Equal(w.last, r) {
		return
	}
	w.last = r
	out := proto.Clone(r).(*gv1.DriftReport)
	out.ObservedAt = timestamppb.Now()
	w.report(out)
}

// session watches until ctx ends or a watch fails.
func (w *watcher) session(ctx context.Context) error {
	// A direct read first, so that an unreachable cluster is an error at
	// once rather than an informer retrying on its own.
	if _, err := w.c.readInventory(ctx, w.ns, w.app); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	failed := make(chan error, 1)
	onChange := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	onError := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	w.sub = w.c.shared.subscribe(labelSafe(w.app), onChange, onError)
	w.loaded, w.liveKeys = false, nil
	w.sub.watch([]liveKey{w.inventoryKey()})
	defer func() {
		w.sub.close()
		w.sub = nil
	}()

	var fire <-chan time.Time // the debounce timer, armed by an event
	// The first look does not wait for an event: an application never
	// deployed has no inventory, and an empty list makes none.
	recheck := time.After(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-changed:
			if fire == nil {
				fire = time.After(debounce)
			}
			continue
		case <-fire:
		case <-recheck:
		}
		fire, recheck = nil, nil
		synced, err := w.recompute(ctx)
		if err != nil {
			return err
		}
		if !synced {
			recheck = time.After(syncCheckEvery)
		}
	}
}

func (w *watcher) inventoryKey() liveKey { return liveKey{gvr: configMaps, namespace: w.ns} }

// recompute reloads the desired state when the inventory changed and
// reports the drift once every informer has listed its objects.
func (w *watcher) recompute(ctx context.Context) (bool, error) {
	if !w.sub.synced() {
		return false, nil
	}
	cm, ok := w.sub.get(w.inventoryKey(), objRef{Name: inventoryName(w.app)})
	if !ok {
		w.setDesired(nil, nil)
		w.revision, w.fence = "", 0
		// Never deployed (or its namespace was deleted): nothing to compare.
		w.emit(&gv1.DriftReport{App: w.app, Sync: gv1.SyncStatus_SYNC_STATUS_UNSPECIFIED, Health: gv1.HealthStatus_HEALTH_STATUS_MISSING})
		return true, nil
	}
	var typed corev1.ConfigMap
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cm.Object, &typed); err != nil {
		return true, fmt.Errorf("inventory %s/%s: %w", w.ns, cm.GetName(), err)
	}
	state, err := parseInventory(&typed)
	if err != nil {
		w.emit(&gv1.DriftReport{App: w.app, Error: err.Error()})
		return true, nil
	}
	w.revision, w.fence = state.revision, state.fence
	if !w.loaded || !bytes.Equal(state.manifests, w.manifests) {
		if err := w.load(ctx, state.manifests); err != nil {
			if classify(err) == gv1.FailureClass_FAILURE_CLASS_INFRA {
				return true, err
			}
			w.emit(&gv1.DriftReport{App: w.app, Revision: w.revision, Fence: w.fence, Error: err.Error()})
			return true, nil
		}
	}
	if !w.sub.synced() {
		return false, nil
	}
	w.emit(w.compute())
	return true, nil
}

// load decodes and resolves the inventory's manifests and watches their
// collections.
func (w *watcher) load(ctx context.Context, manifests []byte) error {
	var objs []*unstructured.Unstructured
	if len(manifests) > 0 {
		var err error
		if objs, err = gunzipObjects(manifests); err != nil {
			return content(fmt.Errorf("inventory %s/%s: %w", w.ns, inventoryName(w.app), err))
		}
	}
	desired, err := w.c.resolve(ctx, objs, w.ns)
	if err != nil {
		return err
	}
	w.setDesired(manifests, desired)
	return nil
}

// setDesired replaces the desired objects and subscribes to the
// collections they are in (besides the inventory's).
func (w *watcher) setDesired(manifests []byte, desired []*object) {
	var keys []liveKey
	for _, o := range desired {
		if k := keyOf(o); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	w.manifests, w.desired = manifests, desired
	if w.loaded && slices.Equal(keys, w.liveKeys) {
		return
	}
	w.loaded, w.liveKeys = true, keys
	w.sub.watch(append([]liveKey{w.inventoryKey()}, keys...))
}

// compute builds the report of the desired objects against the live ones.
func (w *watcher) compute() *gv1.DriftReport {
	r := &gv1.DriftReport{App: w.app, Revision: w.revision, Fence: w.fence}
	missing, degraded, waiting := false, false, false
	for _, o := range w.desired {
		live, ok := w.sub.get(keyOf(o), o.ref)
		if !ok {
			missing = true
			r.Items = append(r.Items, compareObject(o.u, nil)...)
			continue
		}
		r.Items = append(r.Items, compareObject(o.u, live)...)
		if isWorkload(o.ref) {
			switch h, _ := workloadHealth(live, 0); h {
			case failed:
				degraded = true
			case progressing:
				waiting = true
			}
		}
	}
	sortItems(r.Items)
	r.Sync = gv1.SyncStatus_SYNC_STATUS_SYNCED
	if len(r.Items) > 0 {
		r.Sync = gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
	}
	switch {
	case degraded:
		r.Health = gv1.HealthStatus_HEALTH_STATUS_DEGRADED
	case missing:
		r.Health = gv1.HealthStatus_HEALTH_STATUS_MISSING
	case waiting:
		r.Health = gv1.HealthStatus_HEALTH_STATUS_PROGRESSING
	default:
		r.Health = gv1.HealthStatus_HEALTH_STATUS_HEALTHY
	}
	return r
}
