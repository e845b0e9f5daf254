package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestInventoryRoundTrip(t *testing.T) {
	t.Parallel()
	objs, err := parseDocuments("inline", []byte(deploymentYAML+"---\n"+"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzipObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	inv := &inventory{fence: 7, revision: "abc", job: "j", task: "t", manifests: gz, lastGood: gz, lastGoodRevision: "abc",
		objects: []objRef{refOf(objs[0]), refOf(objs[1])}}
	cm := &corev1.ConfigMap{}
	if err := inv.store(cm, "demo"); err != nil {
		t.Fatal(err)
	}
	back, err := parseInventory(cm)
	if err != nil {
		t.Fatal(err)
	}
	if back.fence != 7 || back.revision != "abc" || len(back.objects) != 2 || back.objects[1].Namespace != "d" {
		t.Fatalf("inventory after a round trip: %+v", back)
	}
	decoded, err := gunzipObjects(back.lastGood)
	if err != nil || len(decoded) != 2 || decoded[0].GetName() != "web" {
		t.Fatalf("manifests after a round trip: %v %v", decoded, err)
	}
	if cm.Data[invObjects] != `[{"group":"apps","version":"v1","kind":"Deployment","name":"web"},{"group":"","version":"v1","kind":"ConfigMap","namespace":"d","name":"c"}]` {
		t.Fatalf("objects = %s", cm.Data[invObjects])
	}
	cm.Data[invFence] = "x"
	if _, err := parseInventory(cm); err == nil {
		t.Fatal("a malformed fence was accepted")
	}
}

func TestCRDMappings(t *testing.T) {
	t.Parallel()
	objs, err := parseDocuments("inline", []byte(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {kind: Widget, plural: widgets}
  versions: [{name: v1, served: true, storage: true}]
`))
	if err != nil {
		t.Fatal(err)
	}
	m := crdMappings(objs)[schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}]
	if m == nil || m.Resource.Resource != "widgets" || m.Scope.Name() != "root" {
		t.Fatalf("mapping = %+v", m)
	}
}
