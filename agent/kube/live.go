package kube

import (
	"context"
	"errors"
	"io"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// liveKey is one watched collection: a resource in a namespace ("" for
// cluster-scoped resources).
type liveKey struct {
	gvr       schema.GroupVersionResource
	namespace string
}

func keyOf(o *object) liveKey {
	k := liveKey{gvr: o.gvr}
	if o.namespaced {
		k.namespace = o.ref.Namespace
	}
	return k
}

// liveCache follows the live objects of one application with one informer
// (a list, then a watch) per collection, filtered by a label selector. The
// health wait of a deploy uses it; the drift watches share sharedCache.
type liveCache struct {
	informers map[liveKey]cache.SharedIndexInformer
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// startLive starts informers on keys, listing with tweak; onChange is called after every event
// (from the informers' goroutines) and onError with list and watch errors
// other than the routine ends of a watch. stop must be called.
func (c *Cluster) startLive(ctx context.Context, keys []liveKey, tweak func(*metav1.ListOptions), onChange func(), onError func(error)) *liveCache {
	ctx, cancel := context.WithCancel(ctx)
	l := &liveCache{informers: map[liveKey]cache.SharedIndexInformer{}, cancel: cancel}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	for _, k := range keys {
		if _, ok := l.informers[k]; ok {
			continue
		}
		inf := dynamicinformer.NewFilteredDynamicInformer(c.dyn, k.gvr, k.namespace, 0, cache.Indexers{}, tweak).Informer()
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			if !routineWatchEnd(err) {
				onError(err)
			}
		})
		if _, err := inf.AddEventHandler(handler); err != nil {
			onError(err) // only when the informer already stopped
			continue
		}
		l.informers[k] = inf
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	return l
}

// routineWatchEnd tells the ends of a watch the reflector recovers from at
// once (as client-go's default handler does) from real failures.
func routineWatchEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// synced reports whether every informer has listed its collection.
func (l *liveCache) synced() bool {
	for _, inf := range l.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// get returns the cached live object ref names, if any.
func (l *liveCache) get(k liveKey, ref objRef) (*unstructured.Unstructured, bool) {
	inf, ok := l.informers[k]
	if !ok {
		return nil, false
	}
	key := ref.Name
	if k.namespace != "" {
		key = k.namespace + "/" + ref.Name
	}
	v, ok, err := inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	u, ok := v.(*unstructured.Unstructured)
	return u, ok
}

// stop stops the informers and waits for them to end.
func (l *liveCache) stop() {
	l.cancel()
	l.wg.Wait()
}

// bySelector lists the objects matching a label selector.
func bySelector(selector string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) { o.LabelSelector = selector }
}
