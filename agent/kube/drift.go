package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// compareObject returns the fields Gantry manages whose live value differs
// from the applied one. Managed fields are those present in the applied
// manifest; what only the live object has (defaults, status, server-side
// metadata) is ignored. A nil live object is one missing item. The values
// of a Secret are never put in an item: it says which key differs.
func compareObject(want, live *unstructured.Unstructured) []*gv1.DriftItem {
	ref := refOf(want)
	name := ref.String()
	if live == nil {
		w := want.Object
		if isSecret(want) {
			w = hiddenSecret(want)
		}
		return []*gv1.DriftItem{{Object: name, Want: toJSON(w)}}
	}
	var items []*gv1.DriftItem
	if isSecret(want) {
		items = compareSecretData(name, ref, want, live)
	}
	add := func(field string, w, l any, livePresent bool) {
		it := &gv1.DriftItem{Object: name, Field: field, Want: toJSON(w)}
		if livePresent {
			it.Live = toJSON(l)
		}
		items = append(items, it)
	}
	desired := managedFields(want)
	for _, k := range sortedKeys(desired) {
		lv, ok := live.Object[k]
		compareValue(fieldPath("", k), desired[k], lv, ok, add)
	}
	return items
}

// managedFields is the part of an applied object drift is computed on:
// everything but apiVersion, kind, status and server-owned metadata. A
// Secret's data and stringData are left out (compareSecretData compares
// them), and so is its last-applied annotation, which may quote them.
func managedFields(o *unstructured.Unstructured) map[string]any {
	secret := isSecret(o)
	out := map[string]any{}
	for k, v := range o.Object {
		switch k {
		case "apiVersion", "kind", "status":
		case "data", "stringData":
			if !secret {
				out[k] = v
			}
		case "metadata":
			md := map[string]any{}
			m, _ := v.(map[string]any)
			for _, mk := range []string{"labels", "annotations"} {
				if mv, ok := m[mk]; ok {
					md[mk] = mv
				}
			}
			if ann, ok := md["annotations"].(map[string]any); ok && secret {
				if _, ok := ann[lastAppliedKey]; ok {
					c := maps.Clone(ann)
					delete(c, lastAppliedKey)
					md["annotations"] = c
				}
			}
			if len(md) > 0 {
				out[k] = md
			}
		default:
			out[k] = v
		}
	}
	return out
}

// compareValue compares the applied value want at path with the live one
// and calls add for each difference.
func compareValue(path string, want, live any, livePresent bool, add func(field string, w, l any, livePresent bool)) {
	if want == nil {
		return // null in a manifest asks for the field's removal or default
	}
	if !livePresent {
		add(path, want, nil, false)
		return
	}
	switch w := want.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			add(path, want, live, true)
			return
		}
		for _, k := range sortedKeys(w) {
			lv, ok := l[k]
			compareValue(fieldPath(path, k), w[k], lv, ok, add)
		}
	case []any:
		l, ok := live.([]any)
		if !ok {
			add(path, want, live, true)
			return
		}
		compareList(path, w, l, add)
	default:
		if !equalScalar(want, live) {
			add(path, want, live, true)
		}
	}
}

// compareList matches lists of named maps (containers, env, ports,
// volumes) by name, so that an element added by someone else or a change
// of order does not shift the comparison; other lists are compared by
// index and must have the applied length.
func compareList(path string, want, live []any, add func(field string, w, l any, livePresent bool)) {
	if named(want) {
		for _, w := range want {
			name := w.(map[string]any)["name"]
			p := fmt.Sprintf("%s[%v]", path, name)
			i := slices.IndexFunc(live, func(l any) bool {
				m, ok := l.(map[string]any)
				return ok && reflect.DeepEqual(m["name"], name)
			})
			if i < 0 {
				add(p, w, nil, false)
				continue
			}
			compareValue(p, w, live[i], true, add)
		}
		return
	}
	if len(want) != len(live) {
		add(path, want, live, true)
		return
	}
	for i := range want {
		compareValue(fmt.Sprintf("%s[%d]", path, i), want[i], live[i], true, add)
	}
}

// named reports whether every element is a map with a non-empty name.
func named(list []any) bool {
	if len(list) == 0 {
		return false
	}
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if n, _ := m["name"].(string); n == "" {
			return false
		}
	}
	return true
}

// equalScalar compares numbers numerically and quantities ("1000m" and
// "1") by value.
func equalScalar(want, live any) bool {
	if reflect.DeepEqual(want, live) {
		return true
	}
	if a, ok := toNumber(want); ok {
		if b, ok := toNumber(live); ok {
			return a.Cmp(b) == 0
		}
	}
	_, ws := want.(string)
	_, ls := live.(string)
	if ws || ls {
		a, okA := toQuantity(want)
		b, okB := toQuantity(live)
		return okA && okB && a.Cmp(b) == 0
	}
	return false
}

func toNumber(v any) (*big.Float, bool) {
	switch n := v.(type) {
	case int64:
		return new(big.Float).SetInt64(n), true
	case int:
		return new(big.Float).SetInt64(int64(n)), true
	case int32:
		return new(big.Float).SetInt64(int64(n)), true
	case float64:
		return big.NewFloat(n), true
	case json.Number:
		f, ok := new(big.Float).SetString(n.String())
		return f, ok
	}
	return nil, false
}

func toQuantity(v any) (resource.Quantity, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case int64, int, int32, float64, json.Number:
		s = fmt.Sprint(x)
	default:
		return resource.Quantity{}, false
	}
	q, err := resource.ParseQuantity(s)
	return q, err == nil
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// fieldPath appends key to path: ".key", or `["key"]` for keys with dots
// or slashes such as label names.
func fieldPath(path, key string) string {
	if !plainKey.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// sortItems orders drift items by object, then field.
func sortItems(items []*gv1.DriftItem) {
	slices.SortFunc(items, func(a, b *gv1.DriftItem) int {
		if c := strings.Compare(a.GetObject(), b.GetObject()); c != 0 {
			return c
		}
		return strings.Compare(a.GetField(), b.GetField())
	})
}

// Diff renders drift items for people, one block per object:
//
//	apps/v1 Deployment demo/web
//	  spec.replicas: 2 (git) != 1 (live)
func Diff(items []*gv1.DriftItem) string {
	var b strings.Builder
	last := ""
	for _, it := range items {
		if it.GetObject() != last || b.Len() == 0 {
			b.WriteString(it.GetObject() + "\n")
			last = it.GetObject()
		}
		live := it.GetLive()
		if live == "" {
			live = "<absent>"
		}
		if it.GetField() == "" {
			b.WriteString("  missing (live)\n")
			continue
		}
		fmt.Fprintf(&b, "  %s: %s (git) != %s (live)\n", it.GetField(), it.GetWant(), live)
	}
	return b.String()
}
