package kube

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// sharedSelector is the label selector of the shared informers: every
// object Gantry applies and every inventory ConfigMap carries LabelApp
// (LabelManagedBy too, but the per-application watches this cache replaced
// selected on LabelApp: an object whose managed-by label someone changed
// is still reported as drift rather than as missing).
const sharedSelector = LabelApp

// sharedCache is the live state the drift watches of one cluster read: one
// informer per resource, across all namespaces, filtered by
// sharedSelector, whatever the number of applications watched. A resource
// whose cluster-wide list is Forbidden (an agent with namespace rights
// only) is watched with one informer per namespace instead. Informers
// start with their first subscriber and stop with their last.
type sharedCache struct {
	dyn dynamic.Interface
	log *zap.Logger

	mu        sync.RWMutex
	informers map[liveKey]*sharedInformer
	// perNamespace are the resources whose cluster-wide list was refused;
	// it is kept for the life of the Cluster.
	perNamespace map[schema.GroupVersionResource]bool
	byLabel      map[string]map[*subscription]struct{}

	started atomic.Int64 // informers ever started, for tests and benchmarks
}

func newSharedCache(dyn dynamic.Interface, log *zap.Logger) *sharedCache {
	return &sharedCache{
		dyn:          dyn,
		log:          log,
		informers:    map[liveKey]*sharedInformer{},
		perNamespace: map[schema.GroupVersionResource]bool{},
		byLabel:      map[string]map[*subscription]struct{}{},
	}
}

// sharedInformer is one list and watch: key.namespace "" is all namespaces
// (clusterWide, for a namespaced resource) or a cluster-scoped resource.
type sharedInformer struct {
	key         liveKey
	clusterWide bool
	inf         cache.SharedIndexInformer
	cancel      context.CancelFunc
	done        chan struct{}
	subs        map[*subscription]struct{}
}

// subscription is one watcher's use of the cache: the collections it reads
// and the application label whose events wake it.
type subscription struct {
	sc       *sharedCache
	label    string
	onChange func()
	onError  func(error)
	// Guarded by sc.mu.
	scopes   []liveKey
	attached map[liveKey]*sharedInformer
}

// subscribe registers an application's watcher: onChange is called after
// every event on an object labelled label (from the informers' goroutines),
// onError with the list and watch errors of the informers it reads.
// close must be called.
func (sc *sharedCache) subscribe(label string, onChange func(), onError func(error)) *subscription {
	s := &subscription{sc: sc, label: label, onChange: onChange, onError: onError, attached: map[liveKey]*sharedInformer{}}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.byLabel[label] == nil {
		sc.byLabel[label] = map[*subscription]struct{}{}
	}
	sc.byLabel[label][s] = struct{}{}
	return s
}

// watch sets the collections s reads, starting the informers missing and
// stopping those nobody reads any more.
func (s *subscription) watch(scopes []liveKey) {
	sc := s.sc
	sc.mu.Lock()
	s.scopes = append([]liveKey(nil), scopes...)
	stop := sc.attachLocked(s)
	sc.mu.Unlock()
	stopAll(stop)
}

// close ends the subscription and stops the informers only it read.
func (s *subscription) close() {
	sc := s.sc
	sc.mu.Lock()
	s.scopes = nil
	stop := sc.attachLocked(s)
	if subs := sc.byLabel[s.label]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(sc.byLabel, s.label)
		}
	}
	sc.mu.Unlock()
	stopAll(stop)
}

// synced reports whether every informer s reads has listed its collection.
func (s *subscription) synced() bool {
	s.sc.mu.RLock()
	defer s.sc.mu.RUnlock()
	for _, si := range s.attached {
		if !si.inf.HasSynced() {
			return false
		}
	}
	return true
}

// get returns the live object ref of collection k, if it carries s's
// application label.
func (s *subscription) get(k liveKey, ref objRef) (*unstructured.Unstructured, bool) {
	s.sc.mu.RLock()
	si := s.attached[s.sc.resolveLocked(k)]
	s.sc.mu.RUnlock()
	if si == nil {
		return nil, false
	}
	key := ref.Name
	if k.namespace != "" {
		key = k.namespace + "/" + ref.Name
	}
	v, ok, err := si.inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	u, ok := v.(*unstructured.Unstructured)
	if !ok || u.GetLabels()[LabelApp] != s.label {
		return nil, false
	}
	return u, true
}

// resolveLocked is the informer that holds collection k.
func (sc *sharedCache) resolveLocked(k liveKey) liveKey {
	if k.namespace == "" || sc.perNamespace[k.gvr] {
		return k
	}
	return liveKey{gvr: k.gvr}
}

// attachLocked makes s read the informers of its scopes and only those; it
// returns the informers left without subscribers, removed from the cache,
// for the caller to stop once it released sc.mu.
func (sc *sharedCache) attachLocked(s *subscription) []*sharedInformer {
	need := map[liveKey]bool{} // informer -> it lists a namespaced resource in all namespaces
	for _, k := range s.scopes {
		r := sc.resolveLocked(k)
		need[r] = need[r] || r.namespace != k.namespace
	}
	for k, clusterWide := range need {
		if _, ok := s.attached[k]; ok {
			continue
		}
		si := sc.informers[k]
		if si == nil {
			si = sc.startLocked(k, clusterWide)
		}
		si.subs[s] = struct{}{}
		s.attached[k] = si
	}
	var stop []*sharedInformer
	for k, si := range s.attached {
		if _, ok := need[k]; ok {
			continue
		}
		delete(s.attached, k)
		delete(si.subs, s)
		if len(si.subs) == 0 && sc.informers[k] == si {
			delete(sc.informers, k)
			stop = append(stop, si)
		}
	}
	return stop
}

// startLocked starts the informer of key.
func (sc *sharedCache) startLocked(key liveKey, clusterWide bool) *sharedInformer {
	ctx, cancel := context.WithCancel(context.Background())
	si := &sharedInformer{
		key:         key,
		clusterWide: clusterWide,
		cancel:      cancel,
		done:        make(chan struct{}),
		subs:        map[*subscription]struct{}{},
		inf: dynamicinformer.NewFilteredDynamicInformer(sc.dyn, key.gvr, key.namespace, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = sharedSelector }).Informer(),
	}
	// Drift ignores metadata other than labels and annotations: the
	// managed fields are most of an object's size.
	_ = si.inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return obj, nil
	})
	_ = si.inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		if !routineWatchEnd(err) {
			sc.fail(si, err)
		}
	})
	_, _ = si.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { sc.dispatch(obj) },
		UpdateFunc: func(old, obj any) { sc.dispatch(old, obj) },
		DeleteFunc: func(obj any) { sc.dispatch(obj) },
	})
	sc.informers[key] = si
	sc.started.Add(1)
	go func() {
		defer close(si.done)
		si.inf.RunWithContext(ctx)
	}()
	return si
}

// dispatch wakes the subscribers of the applications objs are labelled
// for (an update wakes those of the old and the new object).
func (sc *sharedCache) dispatch(objs ...any) {
	var labels []string
	for _, obj := range objs {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			continue
		}
		if l := m.GetLabels()[LabelApp]; l != "" && !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	var wake []func()
	sc.mu.RLock()
	for _, l := range labels {
		for s := range sc.byLabel[l] {
			wake = append(wake, s.onChange)
		}
	}
	sc.mu.RUnlock()
	for _, f := range wake {
		f()
	}
}

// fail handles a list or watch error of si: a cluster-wide list refused
// moves its resource to per-namespace informers; any other error goes to
// si's subscribers, whose sessions end and retry.
func (sc *sharedCache) fail(si *sharedInformer, err error) {
	var notify []func(error)
	var stop []*sharedInformer
	sc.mu.Lock()
	switch {
	case sc.informers[si.key] != si:
		// Already stopped or replaced.
	case si.clusterWide && apierrors.IsForbidden(err):
		sc.log.Info("cluster-wide watch refused: watching per namespace",
			zap.String("resource", si.key.gvr.String()), zap.Error(err))
		sc.perNamespace[si.key.gvr] = true
		for s := range si.subs {
			stop = append(stop, sc.attachLocked(s)...)
		}
		if sc.informers[si.key] == si { // no subscriber: cannot happen, but stop it
			delete(sc.informers, si.key)
			stop = append(stop, si)
		}
	default:
		for s := range si.subs {
			notify = append(notify, s.onError)
		}
	}
	sc.mu.Unlock()
	for _, si := range stop {
		si.cancel() // called from si's own goroutine: do not wait for it
	}
	for _, f := range notify {
		f(err)
	}
}

// stopAll stops informers and waits for them to end.
func stopAll(sis []*sharedInformer) {
	for _, si := range sis {
		si.cancel()
	}
	for _, si := range sis {
		<-si.done
	}
}

// open reports the informers running (each one list and watch on the API
// server) and how many were ever started.
func (sc *sharedCache) open() (running int, started int64) {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return len(sc.informers), sc.started.Load()
}
