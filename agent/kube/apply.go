package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// crdEstablishTimeout bounds the wait for a CustomResourceDefinition to be
// served before the custom resources it defines are applied.
const crdEstablishTimeout = 30 * time.Second

// pollEvery is the period of the few waits that poll one object.
const pollEvery = 200 * time.Millisecond

func (c *Cluster) resource(o *object) dynamic.ResourceInterface {
	if o.namespaced {
		return c.dyn.Resource(o.gvr).Namespace(o.ref.Namespace)
	}
	return c.dyn.Resource(o.gvr)
}

// ensureNamespace creates namespace ns when it is missing.
func (d *deploy) ensureNamespace(ctx context.Context, ns string) error {
	nss := d.c.core.CoreV1().Namespaces()
	_, err := nss.Get(ctx, ns, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read namespace %s: %w", ns, err)
	}
	if err := d.c.checkFence(ctx, d.ns, d.app, d.req.Fence); err != nil {
		return err
	}
	_, err = nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	d.logf("created namespace %s", ns)
	return nil
}

// applyAll creates the missing namespaces and applies objs in apply order,
// waiting for CustomResourceDefinitions to be served before the rest.
func (d *deploy) applyAll(ctx context.Context, objs []*object) error {
	objs = slices.Clone(objs)
	sortForApply(objs)
	created := map[string]bool{d.ns: true}
	for _, o := range objs {
		if ns := o.ref.Namespace; ns != "" && !created[ns] {
			if err := d.ensureNamespace(ctx, ns); err != nil {
				return err
			}
			created[ns] = true
		}
	}
	crds := false
	for _, o := range objs {
		if crds && applyOrder(o) > 1 {
			// Kinds defined just now are unknown to the cached discovery.
			d.c.mapper.Reset()
			crds = false
		}
		if err := d.apply(ctx, o); err != nil {
			return err
		}
		if o.ref.Kind == "CustomResourceDefinition" {
			if err := d.waitEstablished(ctx, o); err != nil {
				return err
			}
			crds = true
		}
	}
	return nil
}

// maxConditionalRetries bounds the re-reads of an object that changed
// between its read and a write conditional on that read (controllers
// update status often during a rollout, and each update is a new version).
const maxConditionalRetries = 20

// apply writes one object with server-side apply, taking the fields Gantry
// manages from other managers (Force).
//
// The write is fenced: it reads the object's resourceVersion, then checks
// the fence, then applies with that resourceVersion as a precondition. A
// newer deploy that took the application after the check writes this
// object after taking it (every deploy applies every object, and its own
// fence annotation makes each of its writes a change), so either its write
// comes after ours and wins, or it comes before ours and ours fails on the
// precondition; the re-check then finds the newer fence and refuses. Only
// an object that does not exist yet has no version to be conditional on:
// for it, two deploys creating it in the same instant remain a window.
func (d *deploy) apply(ctx context.Context, o *object) error {
	ri := d.c.resource(o)
	force := true
	for attempt := 0; ; attempt++ {
		rv := ""
		cur, err := ri.Get(ctx, o.ref.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			rv = cur.GetResourceVersion()
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("read %s: %w", o.ref, err)
		}
		if err := d.c.checkFence(ctx, d.ns, d.app, d.req.Fence); err != nil {
			return err
		}
		if d.c.beforeWrite != nil {
			d.c.beforeWrite(o.ref)
		}
		body := o.u
		if rv != "" {
			body = o.u.DeepCopy()
			body.SetResourceVersion(rv)
		}
		data, err := json.Marshal(body.Object)
		if err != nil {
			return content(fmt.Errorf("encode %s: %w", o.ref, err))
		}
		live, err := ri.Patch(ctx, o.ref.Name, types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
		if rv != "" && apierrors.IsConflict(err) && attempt < maxConditionalRetries {
			continue // changed since read: check the fence again
		}
		if err != nil {
			return fmt.Errorf("apply %s: %w", o.ref, err)
		}
		o.generation = live.GetGeneration()
		d.logf("applied %s", o.ref)
		return nil
	}
}

// waitEstablished polls a CustomResourceDefinition until it is served.
func (d *deploy) waitEstablished(ctx context.Context, o *object) error {
	ctx, cancel := context.WithTimeout(ctx, crdEstablishTimeout)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		live, err := d.c.resource(o).Get(ctx, o.ref.Name, metav1.GetOptions{})
		if err == nil {
			if s, _ := condition(live, "Established"); s == "True" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("%s not established within %s: %w", o.ref, crdEstablishTimeout, err)
		case <-t.C:
		}
	}
}

// pruneStale deletes, when the spec asks for pruning, the objects of before
// that are not in objs, and returns what the inventory keeps: objs, plus
// the objects of before that were not pruned (when pruning is off).
func (d *deploy) pruneStale(ctx context.Context, before []objRef, objs []*object) ([]objRef, error) {
	now := make([]objRef, len(objs))
	for i, o := range objs {
		now[i] = o.ref
	}
	var stale []objRef
	for _, r := range before {
		if !slices.Contains(now, r) {
			stale = append(stale, r)
		}
	}
	if !d.spec.GetPrune() {
		d.outputs[OutputPruned] = "0"
		return unionRefs(now, stale), nil
	}
	// Dependents first: the reverse of the apply order.
	slices.SortStableFunc(stale, func(a, b objRef) int { return refOrder(b) - refOrder(a) })
	pruned := 0
	for _, r := range stale {
		ok, err := d.prune(ctx, r)
		if err != nil {
			return nil, err
		}
		if ok {
			pruned++
		}
	}
	d.outputs[OutputPruned] = fmt.Sprint(pruned)
	return now, nil
}

func refOrder(r objRef) int { return applyOrder(&object{ref: r}) }

// prune deletes one object that left the manifests, if it is still there
// and still belongs to the application.
func (d *deploy) prune(ctx context.Context, r objRef) (bool, error) {
	if r.Kind == "Namespace" && r.Group == "" && r.Name == d.ns {
		d.logf("kept %s: it holds the application's inventory", r)
		return false, nil
	}
	m, err := d.c.mapping(r.gvk())
	if meta.IsNoMatchError(err) {
		d.logf("skipped pruning %s: the kind is no longer served", r)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("prune %s: %w", r, err)
	}
	o := &object{ref: r, gvr: m.Resource, namespaced: m.Scope.Name() == meta.RESTScopeNameNamespace}
	ri := d.c.resource(o)
	live, err := ri.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("prune %s: %w", r, err)
	}
	if live.GetLabels()[LabelApp] != labelSafe(d.app) {
		d.logf("kept %s: it no longer carries %s=%s", r, LabelApp, labelSafe(d.app))
		return false, nil
	}
	if err := d.c.checkFence(ctx, d.ns, d.app, d.req.Fence); err != nil {
		return false, err
	}
	// Conditional on what was read, like apply: a newer deploy that
	// re-created or changed the object meanwhile makes the delete fail.
	uid, rv := live.GetUID(), live.GetResourceVersion()
	bg := metav1.DeletePropagationBackground
	err = ri.Delete(ctx, r.Name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	switch {
	case apierrors.IsConflict(err):
		// Changed since read: leave it unless the fence still holds, and
		// then look at it again on the next deploy.
		if err := d.c.checkFence(ctx, d.ns, d.app, d.req.Fence); err != nil {
			return false, err
		}
		d.logf("kept %s: it changed while being pruned", r)
		return false, nil
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("prune %s: %w", r, err)
	}
	d.logf("pruned %s", r)
	d.log.Debug("pruned", zap.Stringer("object", r))
	return true, nil
}
