package kube

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The values of a Secret are applied and nowhere else: the inventory keeps
// every value as a hash (hashPrefix and the hex SHA-256 of the object's
// namespace, name and key, a NUL and the value, so that equal values of
// different Secrets differ), drift says which key differs and never what
// it holds, and a rollback leaves live Secrets as they are (see
// DESIGN.md).
const hashPrefix = "sha256:"

// Placeholders of drift reports for Secret values.
const (
	hiddenValue    = `"(hidden)"`
	hiddenDiffers  = `"(hidden, differs)"`
	lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"
)

// isSecret reports whether o is a core/v1 Secret.
func isSecret(o *unstructured.Unstructured) bool {
	return o.GroupVersionKind().Group == "" && o.GetKind() == "Secret"
}

// hashValue is the hash the inventory keeps of one value of a Secret.
func hashValue(ref objRef, key string, v []byte) string {
	h := sha256.New()
	h.Write([]byte(ref.Namespace + "/" + ref.Name + "/" + key + "\x00"))
	h.Write(v)
	return hashPrefix + hex.EncodeToString(h.Sum(nil))
}

// secretData returns the values of a Secret by key, as the API server
// stores them: data, base64-encoded, merged with stringData (which wins).
// A value already hashed (an inventory's) stays as it is; a value that is
// not base64 is kept as its text, to be reported as differing.
func secretData(o *unstructured.Unstructured) map[string]any {
	out := map[string]any{}
	data, _ := o.Object["data"].(map[string]any)
	for k, v := range data {
		out[k] = v
	}
	sd, _ := o.Object["stringData"].(map[string]any)
	for k, v := range sd {
		if s, ok := v.(string); ok {
			out[k] = base64.StdEncoding.EncodeToString([]byte(s))
		}
	}
	return out
}

// redactSecrets returns objs with every Secret replaced by a copy whose
// values are hashed (data only, no stringData) and without the
// last-applied annotation, which may quote them. Other objects are
// returned as they are.
func redactSecrets(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		if !isSecret(o) {
			out[i] = o
			continue
		}
		ref := refOf(o)
		c := o.DeepCopy()
		hashed := map[string]any{}
		for k, v := range secretData(o) {
			s, _ := v.(string)
			if strings.HasPrefix(s, hashPrefix) {
				hashed[k] = s
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				raw = []byte(s)
			}
			hashed[k] = hashValue(ref, k, raw)
		}
		delete(c.Object, "stringData")
		if len(hashed) > 0 {
			c.Object["data"] = hashed
		} else {
			delete(c.Object, "data")
		}
		if ann := c.GetAnnotations(); ann[lastAppliedKey] != "" {
			delete(ann, lastAppliedKey)
			c.SetAnnotations(ann)
		}
		out[i] = c
	}
	return out
}

// sameSecretValue compares a desired value (a hash, or base64 data) with a
// live one (base64 data) of key.
func sameSecretValue(ref objRef, key string, want, live any) bool {
	ls, ok := live.(string)
	if !ok {
		return false
	}
	lraw, err := base64.StdEncoding.DecodeString(ls)
	if err != nil {
		return false
	}
	ws, _ := want.(string)
	if strings.HasPrefix(ws, hashPrefix) {
		return ws == hashValue(ref, key, lraw)
	}
	wraw, err := base64.StdEncoding.DecodeString(ws)
	return err == nil && bytes.Equal(wraw, lraw)
}

// compareSecretData returns one item per key of the desired data whose live
// value is missing or differs, without either value.
func compareSecretData(name string, ref objRef, want, live *unstructured.Unstructured) []*gv1.DriftItem {
	desired := secretData(want)
	current, _ := live.Object["data"].(map[string]any)
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var items []*gv1.DriftItem
	for _, k := range keys {
		it := &gv1.DriftItem{Object: name, Field: fieldPath("data", k), Want: hiddenValue}
		lv, ok := current[k]
		switch {
		case !ok:
		case sameSecretValue(ref, k, desired[k], lv):
			continue
		default:
			it.Live = hiddenDiffers
		}
		items = append(items, it)
	}
	return items
}

// hiddenSecret is a Secret for a drift report: its values replaced by a
// placeholder.
func hiddenSecret(o *unstructured.Unstructured) map[string]any {
	c := redactSecrets([]*unstructured.Unstructured{o})[0].DeepCopy()
	if data, ok := c.Object["data"].(map[string]any); ok {
		for k := range data {
			data[k] = "(hidden)"
		}
	}
	return c.Object
}
