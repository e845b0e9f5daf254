package kube

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const (
	secretValue = "pa55w0rd-value"
	secretB64   = "cGE1NXcwcmQtdmFsdWU=" // base64 of secretValue
	otherB64    = "b3RoZXItdmFsdWU="     // base64 of "other-value"
)

const desiredSecret = `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: demo
  annotations:
    note: keep
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"pa55w0rd-value"}}'
type: Opaque
data: {user: YWRtaW4=}
stringData: {password: pa55w0rd-value}
`

func liveSecret(password string) string {
	return `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: demo
  resourceVersion: "7"
  annotations:
    note: keep
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"changed-by-hand"}}'
type: Opaque
data: {user: YWRtaW4=, password: ` + password + `}
`
}

// leaksSecret reports whether s holds the secret value in any form the
// objects above carry it, or a hash of it.
func leaksSecret(s string) bool {
	return strings.Contains(s, secretValue) || strings.Contains(s, secretB64) || strings.Contains(s, "changed-by-hand") ||
		strings.Contains(s, otherB64) || strings.Contains(s, hashPrefix)
}

func TestRedactSecrets(t *testing.T) {
	t.Parallel()
	want := mustObject(t, desiredSecret)
	cm := mustObject(t, configMapYAML("c"))
	out := redactSecrets([]*unstructured.Unstructured{cm, want})
	if out[0] != cm {
		t.Error("a ConfigMap was changed")
	}
	red := out[1]
	js, _ := json.Marshal(red.Object)
	if strings.Contains(string(js), secretValue) || strings.Contains(string(js), secretB64) || strings.Contains(string(js), "YWRtaW4=") {
		t.Fatalf("redacted Secret holds a value: %s", js)
	}
	if _, ok := red.Object["stringData"]; ok {
		t.Error("stringData kept")
	}
	data, _ := red.Object["data"].(map[string]any)
	ref := refOf(want)
	if data["password"] != hashValue(ref, "password", []byte(secretValue)) || data["user"] != hashValue(ref, "user", []byte("admin")) {
		t.Errorf("data = %v", data)
	}
	if red.GetAnnotations()["note"] != "keep" || red.GetAnnotations()[lastAppliedKey] != "" {
		t.Errorf("annotations = %v", red.GetAnnotations())
	}
	if _, ok := want.Object["stringData"]; !ok || want.GetAnnotations()[lastAppliedKey] == "" {
		t.Error("the manifest itself was changed")
	}
	again := redactSecrets([]*unstructured.Unstructured{red})[0]
	if a, b := toJSON(again.Object), toJSON(red.Object); a != b {
		t.Errorf("redacting twice changed it:\n%s\n%s", a, b)
	}
	// Equal values of different Secrets or keys hash differently.
	if hashValue(ref, "a", []byte("v")) == hashValue(ref, "b", []byte("v")) ||
		hashValue(objRef{Namespace: "x", Name: "db"}, "a", []byte("v")) == hashValue(ref, "a", []byte("v")) {
		t.Error("hashes are not bound to the object and key")
	}
}

func TestInventoryKeepsNoSecretValues(t *testing.T) {
	t.Parallel()
	gz, err := gzipObjects([]*unstructured.Unstructured{mustObject(t, desiredSecret)})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := gunzipObjects(gz)
	if err != nil || len(objs) != 1 {
		t.Fatalf("gunzip: %v (%d objects)", err, len(objs))
	}
	if js := toJSON(objs[0].Object); strings.Contains(js, secretValue) || strings.Contains(js, secretB64) {
		t.Fatalf("inventory holds a value: %s", js)
	}
}

func TestSecretDrift(t *testing.T) {
	t.Parallel()
	for _, desired := range []struct {
		name string
		obj  *unstructured.Unstructured
	}{
		{"manifest", mustObject(t, desiredSecret)},
		{"inventory", redactSecrets([]*unstructured.Unstructured{mustObject(t, desiredSecret)})[0]},
	} {
		if items := compareObject(desired.obj, mustObject(t, liveSecret(secretB64))); len(items) != 0 {
			t.Errorf("%s: drift on an unchanged Secret:\n%s", desired.name, Diff(items))
		}
		items := compareObject(desired.obj, mustObject(t, liveSecret(otherB64)))
		if len(items) != 1 || items[0].Field != "data.password" || items[0].Want != hiddenValue || items[0].Live != hiddenDiffers {
			t.Errorf("%s: changed value: items %v", desired.name, items)
		}
		live := mustObject(t, liveSecret(secretB64))
		unstructured.RemoveNestedField(live.Object, "data", "password")
		unstructured.SetNestedField(live.Object, "other", "metadata", "annotations", "note")
		items = append(items, compareObject(desired.obj, live)...)
		items = append(items, compareObject(desired.obj, nil)...)
		for _, it := range items {
			js, _ := json.Marshal(it)
			if leaksSecret(string(js)) {
				t.Errorf("%s: drift item holds a value or hash: %s", desired.name, js)
			}
		}
		d := Diff(items)
		for _, want := range []string{`data.password: "(hidden)" (git) != <absent> (live)`, `metadata.annotations.note: "keep" (git) != "other" (live)`, "missing (live)"} {
			if !strings.Contains(d, want) {
				t.Errorf("%s: diff lacks %q:\n%s", desired.name, want, d)
			}
		}
	}
}
