package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
      - name: init
        image: registry:5000/app:old
      containers:
      - name: web
        image: registry:5000/app:1
      - name: sidecar
        image: busybox@sha256:0123
`

func TestLoadPlainDirectory(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"b-deploy.yaml": deploymentYAML,
		"a-config.yml": `# leading comment
---
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
data: {k: v}
---
---
apiVersion: v1
kind: ConfigMap
metadata: {name: two}
`,
		"c-list.json":      `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"}},{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}]}`,
		"README.md":        "not a manifest",
		"sub/ignored.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n",
	})
	objs, err := loadDir(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(names(objs), " ")
	want := "ConfigMap/one ConfigMap/two Deployment/web Service/svc Secret/s"
	if got != want {
		t.Fatalf("objects = %s, want %s", got, want)
	}
	if r, _, _ := unstructured.NestedInt64(objs[2].Object, "spec", "replicas"); r != 2 {
		t.Fatalf("replicas decoded as %v, want int64 2", objs[2].Object["spec"])
	}
}

func TestLoadKustomizeDirectory(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"kustomization.yaml": `resources: [deploy.yaml]
namePrefix: prod-
images:
- name: registry:5000/app
  newTag: "2"
`,
		"deploy.yaml": deploymentYAML,
		"other.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-listed}\n",
	})
	objs, err := loadDir(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(objs), " "); got != "Deployment/prod-web" {
		t.Fatalf("objects = %s, want only Deployment/prod-web", got)
	}
	if img := deployedImages(objs)["registry:5000/app"]; img != "registry:5000/app:2" {
		t.Fatalf("image after kustomize = %q, want registry:5000/app:2", img)
	}
}

func TestLoadMalformedNamesFileAndDocument(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad\n",
	})
	_, err := loadDir(dir, dir)
	if err == nil || !strings.Contains(err.Error(), "app.yaml: document 2") {
		t.Fatalf("err = %v, want it to name app.yaml: document 2", err)
	}
	if classify(err) != 1 { // FAILURE_CLASS_JOB
		t.Fatalf("class = %v, want a job failure", classify(err))
	}
	for doc, wantErr := range map[string]string{
		"kind: ConfigMap\nmetadata: {name: x}\n":      "apiVersion is missing",
		"apiVersion: v1\nkind: ConfigMap\n":           "no metadata.name",
		"- a\n- b\n":                                  "expected a mapping",
		"apiVersion: v1\nmetadata: {name: x}\n":       "Kind",
		"apiVersion: v1\nkind: List\nitems: [{a: 1}]": "item 0",
	} {
		_, err := parseDocuments("inline", []byte("# c\n---\n"+doc))
		if err == nil || !strings.Contains(err.Error(), "inline: document 2") || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("parse %q: err = %v, want document 2 and %q", doc, err, wantErr)
		}
	}
}

func TestSubdirStaysInside(t *testing.T) {
	t.Parallel()
	if _, err := subdir("/repo", "../etc"); err == nil {
		t.Fatal("../etc accepted")
	}
	if p, err := subdir("/repo", "deploy/prod"); err != nil || p != "/repo/deploy/prod" {
		t.Fatalf("subdir = %q, %v", p, err)
	}
}

func TestImageSubstitution(t *testing.T) {
	t.Parallel()
	objs, err := parseDocuments("inline", []byte(deploymentYAML+`---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: job, image: "app"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {image: "app"}
`))
	if err != nil {
		t.Fatal(err)
	}
	substituteImages(objs, map[string]string{
		"registry:5000/app": "registry:5000/app@sha256:abc",
		"app":               "app:7",
		"busybox":           "busybox:1.36",
	})
	got := deployedImages(objs)
	want := map[string]string{
		"registry:5000/app": "registry:5000/app@sha256:abc",
		"app":               "app:7",
		"busybox":           "busybox:1.36",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("images[%s] = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("images = %v, want %v", got, want)
	}
	inits, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "template", "spec", "initContainers")
	if img := inits[0].(map[string]any)["image"]; img != "registry:5000/app@sha256:abc" {
		t.Errorf("init container image = %v", img)
	}
	if v, _, _ := unstructured.NestedString(objs[2].Object, "data", "image"); v != "app" {
		t.Errorf("ConfigMap data changed: %q", v)
	}
}

func TestImageRepository(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"app":                           "app",
		"app:1":                         "app",
		"registry:5000/app":             "registry:5000/app",
		"registry:5000/app:1":           "registry:5000/app",
		"registry:5000/app@sha256:abcd": "registry:5000/app",
		"r/app:1@sha256:abcd":           "r/app",
	} {
		if got := imageRepository(in); got != want {
			t.Errorf("imageRepository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLabelSafe(t *testing.T) {
	t.Parallel()
	if got := labelSafe("demo"); got != "demo" {
		t.Errorf("labelSafe(demo) = %q", got)
	}
	a, b := labelSafe("Job_1.build"), labelSafe("job-1.build")
	if a == b || len(a) > 63 {
		t.Errorf("labelSafe collides or is too long: %q %q", a, b)
	}
	if long := labelSafe(strings.Repeat("x", 100)); len(long) > 63 {
		t.Errorf("labelSafe(long) has %d characters", len(long))
	}
}
