package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Labels and annotations Gantry puts on every object it applies.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	LabelApp            = "gantry.dev/app"
	AnnotationApp       = "gantry.dev/app"
	AnnotationRevision  = "gantry.dev/revision"
	AnnotationFence     = "gantry.dev/fence"
	managedByGantry     = "gantry"
	inventoryNamePrefix = "gantry-app-"
)

// objRef names an object; it is what the inventory records.
type objRef struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func refOf(o *unstructured.Unstructured) objRef {
	gvk := o.GroupVersionKind()
	return objRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}
}

func (r objRef) gvk() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
}

// String is how objects are named in logs and reports: "apps/v1 Deployment
// demo/web", "v1 Namespace demo".
func (r objRef) String() string {
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + r.Name
	}
	return r.gvk().GroupVersion().String() + " " + r.Kind + " " + name
}

// kindName is the short form used in health messages: "Deployment demo/web".
func (r objRef) kindName() string {
	if r.Namespace != "" {
		return r.Kind + " " + r.Namespace + "/" + r.Name
	}
	return r.Kind + " " + r.Name
}

// object is a manifest ready to be applied: resolved to its resource.
type object struct {
	u          *unstructured.Unstructured
	ref        objRef
	gvr        schema.GroupVersionResource
	namespaced bool
	// generation is what applying it produced; the health wait ignores
	// older copies of the object.
	generation int64
}

// labelSafe turns an application name into a label value and a name
// suffix: lower case, [a-z0-9.-], alphanumeric at both ends, at most 63
// characters. A name that had to change keeps a hash of the original.
func labelSafe(app string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(app) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), ".-")
	if s == app && len(s) <= 63 {
		return s
	}
	// Lossy: keep a hash of the name so that "a_b" and "a-b" stay apart.
	sum := sha256.Sum256([]byte(app))
	if len(s) > 54 {
		s = strings.TrimRight(s[:54], ".-")
	}
	if s == "" {
		s = "app"
	}
	return s + "-" + hex.EncodeToString(sum[:])[:8]
}

// inventoryName is the name of the application's inventory ConfigMap.
func inventoryName(app string) string { return inventoryNamePrefix + labelSafe(app) }

// appSelector selects the live objects of app.
func appSelector(app string) string { return LabelApp + "=" + labelSafe(app) }

// stamp adds Gantry's labels and annotations to o.
func stamp(o *unstructured.Unstructured, app, revision string, fence uint64) {
	labels := o.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = managedByGantry
	labels[LabelApp] = labelSafe(app)
	o.SetLabels(labels)
	ann := o.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationApp] = app
	ann[AnnotationRevision] = revision
	ann[AnnotationFence] = strconv.FormatUint(fence, 10)
	o.SetAnnotations(ann)
}

// resolve maps every manifest to its resource, gives namespaced objects
// without a namespace the default one and stamps them. Kinds defined by a
// CustomResourceDefinition among the manifests are resolved from it, since
// the cluster does not serve them before the definition is applied.
func (c *Cluster) resolve(ctx context.Context, objs []*unstructured.Unstructured, namespace string) ([]*object, error) {
	crds := crdMappings(objs)
	out := make([]*object, 0, len(objs))
	seen := map[objRef]bool{}
	for _, u := range objs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		gvk := u.GroupVersionKind()
		m, err := c.mapping(gvk)
		if meta.IsNoMatchError(err) {
			if crd, ok := crds[gvk]; ok {
				m, err = crd, nil
			}
		}
		if meta.IsNoMatchError(err) {
			return nil, content(fmt.Errorf("unknown kind %s (apiVersion %s) of %s: the cluster %s does not serve it",
				gvk.Kind, gvk.GroupVersion(), u.GetName(), c.name))
		}
		if err != nil {
			return nil, fmt.Errorf("discover kind %s %s: %w", gvk.GroupVersion(), gvk.Kind, err)
		}
		o := &object{u: u, gvr: m.Resource, namespaced: m.Scope.Name() == meta.RESTScopeNameNamespace}
		if !o.namespaced {
			u.SetNamespace("")
		} else if u.GetNamespace() == "" {
			u.SetNamespace(namespace)
		}
		o.ref = refOf(u)
		if seen[o.ref] {
			return nil, content(fmt.Errorf("%s is declared twice", o.ref))
		}
		seen[o.ref] = true
		out = append(out, o)
	}
	return out, nil
}

// mapping resolves gvk through discovery, refreshing the cached discovery
// once when the kind is unknown (it may have been installed since).
func (c *Cluster) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return m, err
}

// crdMappings returns the kinds the CustomResourceDefinitions among objs define.
func crdMappings(objs []*unstructured.Unstructured) map[schema.GroupVersionKind]*meta.RESTMapping {
	out := map[schema.GroupVersionKind]*meta.RESTMapping{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" || o.GroupVersionKind().Group != "apiextensions.k8s.io" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		plural, _, _ := unstructured.NestedString(o.Object, "spec", "names", "plural")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		versions, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		s := meta.RESTScopeNamespace
		if scope == "Cluster" {
			s = meta.RESTScopeRoot
		}
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			name, _ := vm["name"].(string)
			if name == "" || kind == "" || plural == "" {
				continue
			}
			gvk := schema.GroupVersionKind{Group: group, Version: name, Kind: kind}
			out[gvk] = &meta.RESTMapping{
				Resource:         schema.GroupVersionResource{Group: group, Version: name, Resource: plural},
				GroupVersionKind: gvk,
				Scope:            s,
			}
		}
	}
	return out
}

// applyOrder is the rank of a kind in the apply order: namespaces and
// definitions first, then what workloads use, then the rest.
func applyOrder(o *object) int {
	switch o.ref.Kind {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PriorityClass", "StorageClass":
		return 2
	case "ConfigMap", "Secret", "PersistentVolume", "PersistentVolumeClaim":
		return 3
	case "Service":
		return 4
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod":
		return 6
	}
	return 5
}

// sortForApply orders objects for applying, keeping the manifests' order
// within a rank.
func sortForApply(objs []*object) {
	slices.SortStableFunc(objs, func(a, b *object) int { return applyOrder(a) - applyOrder(b) })
}
