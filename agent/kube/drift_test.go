package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func mustObject(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	objs, err := parseDocuments("test", []byte(doc))
	if err != nil || len(objs) != 1 {
		t.Fatalf("parse: %v (%d objects)", err, len(objs))
	}
	return objs[0]
}

const desiredDeploy = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
        resources: {requests: {cpu: "1", memory: 64Mi}}
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        args: [serve, --port=80]
`

// liveDeploy is desiredDeploy as the API server returns it: defaults,
// status, server metadata, a sidecar injected first and env reordered.
const liveDeploy = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  uid: 1234
  resourceVersion: "99"
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
  managedFields: [{manager: gantry}]
  labels: {app: web, injected: "yes"}
  annotations: {deployment.kubernetes.io/revision: "3"}
spec:
  replicas: 2
  revisionHistoryLimit: 10
  progressDeadlineSeconds: 600
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      restartPolicy: Always
      dnsPolicy: ClusterFirst
      containers:
      - name: mesh-proxy
        image: proxy:1
      - name: web
        image: registry.invalid/web:1
        imagePullPolicy: IfNotPresent
        terminationMessagePath: /dev/termination-log
        resources: {requests: {cpu: 1000m, memory: "67108864"}}
        env: [{name: B, value: "2"}, {name: A, value: "1"}]
        args: [serve, --port=80]
status:
  replicas: 2
  availableReplicas: 2
`

func TestDriftIgnoresDefaultsAndServerFields(t *testing.T) {
	t.Parallel()
	items := compareObject(mustObject(t, desiredDeploy), mustObject(t, liveDeploy))
	if len(items) != 0 {
		t.Fatalf("drift on an unchanged object:\n%s", Diff(items))
	}
}

func TestDriftDetectsChanges(t *testing.T) {
	t.Parallel()
	live := strings.NewReplacer(
		"replicas: 2\n  revisionHistoryLimit", "replicas: 1\n  revisionHistoryLimit",
		"{name: A, value: \"1\"}", "{name: A, value: \"9\"}",
		"image: registry.invalid/web:1", "image: registry.invalid/web:2",
		"args: [serve, --port=80]", "args: [serve, --port=80, --debug]",
		"labels: {app: web, injected: \"yes\"}", "labels: {injected: \"yes\"}",
	).Replace(liveDeploy)
	items := compareObject(mustObject(t, desiredDeploy), mustObject(t, live))
	sortItems(items)
	got := Diff(items)
	want := `apps/v1 Deployment demo/web
  metadata.labels.app: "web" (git) != <absent> (live)
  spec.replicas: 2 (git) != 1 (live)
  spec.template.spec.containers[web].args: ["serve","--port=80"] (git) != ["serve","--port=80","--debug"] (live)
  spec.template.spec.containers[web].env[A].value: "1" (git) != "9" (live)
  spec.template.spec.containers[web].image: "registry.invalid/web:1" (git) != "registry.invalid/web:2" (live)
`
	if got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	for _, it := range items {
		if it.Field == "spec.replicas" && (it.Want != "2" || it.Live != "1") {
			t.Errorf("spec.replicas item = %v", it)
		}
	}
}

func TestDriftMissingContainerAndObject(t *testing.T) {
	t.Parallel()
	live := strings.Replace(liveDeploy, "      - name: web\n", "      - name: api\n", 1)
	items := compareObject(mustObject(t, desiredDeploy), mustObject(t, live))
	if len(items) != 1 || items[0].Field != "spec.template.spec.containers[web]" || items[0].Live != "" {
		t.Fatalf("items = %v, want the web container missing", items)
	}
	items = compareObject(mustObject(t, desiredDeploy), nil)
	if len(items) != 1 || items[0].Field != "" || items[0].Live != "" || items[0].Object != "apps/v1 Deployment demo/web" {
		t.Fatalf("items = %v, want one missing object", items)
	}
	if d := Diff(items); d != "apps/v1 Deployment demo/web\n  missing (live)\n" {
		t.Fatalf("diff = %q", d)
	}
}

func TestEqualScalar(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b any
		eq   bool
	}{
		{"1000m", "1", true},
		{"1", "1000m", true},
		{"64Mi", "67108864", true},
		{int64(1), "1", true},
		{"500m", "1", false},
		{int64(2), float64(2), true},
		{int64(2), int64(3), false},
		{"web", "web", true},
		{"web", "api", false},
		{true, "true", false},
		{"25%", "25%", true},
	} {
		if got := equalScalar(c.a, c.b); got != c.eq {
			t.Errorf("equalScalar(%v, %v) = %v, want %v", c.a, c.b, got, c.eq)
		}
	}
}

func TestSecretStringDataComparesWithData(t *testing.T) {
	t.Parallel()
	want := mustObject(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: d}\nstringData: {k: hello}\n")
	live := mustObject(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: d}\ndata: {k: aGVsbG8=}\ntype: Opaque\n")
	if items := compareObject(want, live); len(items) != 0 {
		t.Fatalf("drift: %s", Diff(items))
	}
}

func TestWorkloadHealth(t *testing.T) {
	t.Parallel()
	base := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo, generation: 2}\nspec: {replicas: 2}\n"
	for _, c := range []struct {
		status string
		want   health
		msg    string
	}{
		{"status: {observedGeneration: 1}", progressing, "not yet observed"},
		{"status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 1}", progressing, "1 of 2 updated replicas available"},
		{"status: {observedGeneration: 2, replicas: 3, updatedReplicas: 1, availableReplicas: 2}", progressing, "1 of 2 replicas updated"},
		{"status: {observedGeneration: 2, replicas: 3, updatedReplicas: 2, availableReplicas: 3}", progressing, "1 old replicas pending termination"},
		{"status: {observedGeneration: 2, conditions: [{type: Progressing, status: \"False\", reason: ProgressDeadlineExceeded}]}", failed, "progress deadline exceeded"},
		{"status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2, conditions: [{type: Available, status: \"True\"}]}", healthy, ""},
	} {
		h, msg := workloadHealth(mustObject(t, base+c.status), 0)
		if h != c.want || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: health %v %q, want %v %q", c.status, h, msg, c.want, c.msg)
		}
	}
	job := "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nstatus: {conditions: [{type: Failed, status: \"True\", reason: BackoffLimitExceeded}]}\n"
	if h, _ := workloadHealth(mustObject(t, job), 0); h != failed {
		t.Errorf("failed job: health %v", h)
	}
	if h, _ := workloadHealth(mustObject(t, base+"status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2, conditions: [{type: Available, status: \"True\"}]}"), 3); h != progressing {
		t.Errorf("older generation than applied: health %v, want progressing", h)
	}
}
