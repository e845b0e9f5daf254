package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// webYAML is a Deployment that becomes Available on kwok nodes.
func webYAML(ns string, replicas int, image, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:%s
      containers:
      - name: web
        image: %s
        resources: {requests: {cpu: 100m}}
`, ns, replicas, extra, image)
}

func configMapYAML(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {k: v}\n", name)
}

func inlineSpec(app, ns, manifests string) *gv1.DeploySpec {
	return &gv1.DeploySpec{App: app, Namespace: ns, Source: &gv1.ManifestSource{Inline: manifests},
		HealthTimeout: durationpb.New(30 * time.Second)}
}

func deployNow(t *testing.T, c *Cluster, spec *gv1.DeploySpec, fence uint64) Result {
	t.Helper()
	start := time.Now()
	res := c.Deploy(t.Context(), DeployRequest{Spec: spec, Fence: fence, JobID: "job1", Task: "deploy", Attempt: 1, WorkDir: t.TempDir()}, &lines{t: t})
	t.Logf("deploy (fence %d) took %s: %v %v %v", fence, time.Since(start), res.Class, res.Err, res.Outputs)
	return res
}

func mustSucceed(t *testing.T, c *Cluster, ns string, res Result) {
	t.Helper()
	if !res.Success() || res.Outputs[OutputResult] != ResultSucceeded {
		dumpState(t, c, ns)
		t.Fatalf("deploy failed: %v %v", res.Class, res.Err)
	}
}

// dumpState logs the workloads and pods of ns, to tell a slow cluster from
// a wrong health check.
func dumpState(t *testing.T, c *Cluster, ns string) {
	t.Helper()
	ctx := context.Background()
	if deps, err := c.core.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range deps.Items {
			t.Logf("deployment %s generation %d: %+v", d.Name, d.Generation, d.Status)
		}
	}
	if rss, err := c.core.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, r := range rss.Items {
			t.Logf("replicaset %s spec %d: %+v", r.Name, *r.Spec.Replicas, r.Status)
		}
	}
	if pods, err := c.core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			t.Logf("pod %s node %q phase %s conditions %+v deleting %v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions, p.DeletionTimestamp != nil)
		}
	}
}

func TestDeployRedeployAndPrune(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	spec := inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:1", "")+"---\n"+configMapYAML("extra")+"---\n"+configMapYAML("keep"))
	spec.Prune = true
	res := deployNow(t, c, spec, 1)
	mustSucceed(t, c, ns, res)
	if res.Outputs[OutputObjects] != "3" || res.Outputs[OutputImages] != `{"registry.invalid/web":"registry.invalid/web:1"}` {
		t.Fatalf("outputs = %v", res.Outputs)
	}
	dep, err := c.core.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Status.AvailableReplicas != 2 || dep.Labels[LabelApp] != "demo" || dep.Annotations[AnnotationFence] != "1" {
		t.Fatalf("live deployment: available %d, labels %v, annotations %v", dep.Status.AvailableReplicas, dep.Labels, dep.Annotations)
	}

	// Change the image, drop a ConfigMap; substitute the image through spec.images.
	spec.Source.Inline = webYAML("", 2, "registry.invalid/web:1", "") + "---\n" + configMapYAML("keep")
	spec.Images = map[string]string{"registry.invalid/web": "registry.invalid/web:2"}
	res = deployNow(t, c, spec, 2)
	mustSucceed(t, c, ns, res)
	if res.Outputs[OutputPruned] != "1" {
		t.Fatalf("pruned = %q, want 1", res.Outputs[OutputPruned])
	}
	if _, err := c.core.CoreV1().ConfigMaps(ns).Get(t.Context(), "extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pruned ConfigMap still there: %v", err)
	}
	dep, err = c.core.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "registry.invalid/web:2" {
		t.Fatalf("live image = %s", img)
	}
	inv, err := c.readInventory(t.Context(), ns, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if inv.fence != 2 || len(inv.objects) != 2 || len(inv.lastGood) == 0 || inv.job != "job1" {
		t.Fatalf("inventory: fence %d, objects %v, last good %d bytes", inv.fence, inv.objects, len(inv.lastGood))
	}
}

func TestStaleFenceRefused(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	mustSucceed(t, c, ns, deployNow(t, c, inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:1", "")), 7))

	res := deployNow(t, c, inlineSpec("demo", ns, webYAML("", 3, "registry.invalid/web:9", "")), 5)
	if !errors.Is(res.Err, ErrStaleFence) || res.Class != gv1.FailureClass_FAILURE_CLASS_JOB {
		t.Fatalf("stale deploy: %v %v, want ErrStaleFence as a job failure", res.Class, res.Err)
	}
	if want := "application demo is held by a newer deploy (fence 7 > 5)"; !strings.Contains(res.Err.Error(), want) {
		t.Fatalf("error %q does not say %q", res.Err, want)
	}
	dep, err := c.core.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Containers[0].Image != "registry.invalid/web:1" {
		t.Fatalf("stale deploy changed the deployment: replicas %d image %s", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Image)
	}
	inv, err := c.readInventory(t.Context(), ns, "demo")
	if err != nil || inv.fence != 7 {
		t.Fatalf("inventory fence = %d, %v; want 7", inv.fence, err)
	}
}

func TestDriftAfterScale(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	mustSucceed(t, c, ns, deployNow(t, c, inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:1", "")), 1))

	ctx, cancel := context.WithCancel(t.Context())
	reports := make(chan *gv1.DriftReport, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, "demo", ns, func(r *gv1.DriftReport) { reports <- r })
	}()
	t.Cleanup(func() { cancel(); <-done })

	next := func(what string, ok func(*gv1.DriftReport) bool) *gv1.DriftReport {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case r := <-reports:
				t.Logf("report: sync %v health %v fence %d error %q\n%s", r.Sync, r.Health, r.Fence, r.Error, Diff(r.Items))
				if ok(r) {
					return r
				}
			case <-timeout:
				dumpState(t, c, ns)
				t.Fatalf("no report %s within 10s", what)
			}
		}
	}
	next("synced and healthy", func(r *gv1.DriftReport) bool {
		return r.Sync == gv1.SyncStatus_SYNC_STATUS_SYNCED && r.Health == gv1.HealthStatus_HEALTH_STATUS_HEALTHY && r.Fence == 1
	})

	start := time.Now()
	patch := []byte(`{"spec":{"replicas":1}}`)
	if _, err := c.core.AppsV1().Deployments(ns).Patch(t.Context(), "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r := next("out of sync", func(r *gv1.DriftReport) bool { return r.Sync == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC })
	t.Logf("drift detected %s after the scale", time.Since(start))
	if len(r.Items) != 1 || r.Items[0].Field != "spec.replicas" || r.Items[0].Want != "2" || r.Items[0].Live != "1" ||
		r.Items[0].Object != "apps/v1 Deployment "+ns+"/web" {
		t.Fatalf("items = %v", r.Items)
	}

	// A new deploy is picked up from the inventory and heals the drift.
	mustSucceed(t, c, ns, deployNow(t, c, inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:1", "")), 2))
	next("synced at fence 2", func(r *gv1.DriftReport) bool {
		return r.Sync == gv1.SyncStatus_SYNC_STATUS_SYNCED && r.Fence == 2
	})
}

// gitRepo makes a repository with the git command and returns its URL and
// a function committing manifests (path -> content) and returning the commit.
func gitRepo(t *testing.T) (string, func(files map[string]string) string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	return "file://" + dir, func(files map[string]string) string {
		for p, data := range files {
			full := filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git("add", "-A")
		git("commit", "-q", "-m", "change")
		return git("rev-parse", "HEAD")
	}
}

func TestUnhealthyRolloutRollsBack(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	url, commit := gitRepo(t)
	good := commit(map[string]string{"deploy/web.yaml": webYAML("", 1, "registry.invalid/web:1", "")})
	spec := &gv1.DeploySpec{App: "demo", Namespace: ns, Source: &gv1.ManifestSource{Git: &gv1.GitSource{Url: url, Revision: "main"}, Path: "deploy"},
		HealthTimeout: durationpb.New(3 * time.Second)}
	res := deployNow(t, c, spec, 1)
	mustSucceed(t, c, ns, res)
	if res.Outputs[OutputRevision] != good {
		t.Fatalf("revision = %q, want %s", res.Outputs[OutputRevision], good)
	}

	bad := commit(map[string]string{"deploy/web.yaml": webYAML("", 1, "registry.invalid/web:2", "\n      nodeSelector: {gantry.dev/no-such-node: \"true\"}")})
	res = deployNow(t, c, spec, 2)
	if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !errors.Is(res.Err, ErrUnhealthy) {
		t.Fatalf("unhealthy rollout: %v %v, want a job failure", res.Class, res.Err)
	}
	for _, want := range []string{"rollout of demo did not become healthy within 3s", "Deployment " + ns + "/web", "rolled back to " + good} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("error %q does not say %q", res.Err, want)
		}
	}
	if res.Outputs[OutputRolledBackTo] != good || res.Outputs[OutputResult] != ResultRolledBack || res.Outputs[OutputRevision] != bad {
		t.Fatalf("outputs = %v", res.Outputs)
	}
	dep, err := c.core.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sel := dep.Spec.Template.Spec.NodeSelector; len(sel) != 0 || dep.Spec.Template.Spec.Containers[0].Image != "registry.invalid/web:1" {
		t.Fatalf("after rollback: nodeSelector %v image %s", sel, dep.Spec.Template.Spec.Containers[0].Image)
	}
	inv, err := c.readInventory(t.Context(), ns, "demo")
	if err != nil || inv.revision != good || inv.lastGoodRevision != good || inv.fence != 2 {
		t.Fatalf("inventory after rollback: revision %s last good %s fence %d (%v)", inv.revision, inv.lastGoodRevision, inv.fence, err)
	}
}

func TestUnknownKindIsJobFailure(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	res := deployNow(t, c, inlineSpec("demo", ns, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"), 1)
	if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(fmt.Sprint(res.Err), "unknown kind Widget") {
		t.Fatalf("result = %v %v", res.Class, res.Err)
	}
}

func TestDeployCRDAndCustomResource(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	group := ns + ".example.com" // CRDs are cluster-wide: one group per test
	crd := fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.%[1]s}
spec:
  group: %[1]s
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`, group)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		_ = c.dyn.Resource(gvr).Delete(ctx, "widgets."+group, metav1.DeleteOptions{})
	})
	// The custom resource comes first in the manifests: apply order fixes it.
	widget := fmt.Sprintf("apiVersion: %s/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n", group)
	res := deployNow(t, c, inlineSpec("widgets", ns, widget+"---\n"+crd), 1)
	mustSucceed(t, c, ns, res)
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}
	w, err := c.dyn.Resource(gvr).Namespace(ns).Get(t.Context(), "w", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 3 {
		t.Fatalf("widget spec = %v", w.Object["spec"])
	}
}

// takeOver is a Sink that lets a newer deploy take the application right
// after the first object was applied.
type takeOver struct {
	lines
	once func()
}

func (s *takeOver) Write(stream gv1.LogStream, p []byte) {
	s.lines.Write(stream, p)
	if strings.HasPrefix(string(p), "applied ") && s.once != nil {
		s.once()
		s.once = nil
	}
}

func TestNewerDeployMidwayStopsTheStaleOne(t *testing.T) {
	t.Parallel()
	c := testCluster(t)
	ns := testNamespace(t, c)
	spec := inlineSpec("demo", ns, configMapYAML("a")+"---\n"+configMapYAML("b"))
	sink := &takeOver{lines: lines{t: t}}
	sink.once = func() {
		if _, err := c.updateInventory(t.Context(), ns, "demo", 9, func(*inventory) {}); err != nil {
			t.Errorf("take over: %v", err)
		}
	}
	res := c.Deploy(t.Context(), DeployRequest{Spec: spec, Fence: 3, WorkDir: t.TempDir()}, sink)
	if !errors.Is(res.Err, ErrStaleFence) {
		t.Fatalf("result = %v %v, want ErrStaleFence", res.Class, res.Err)
	}
	if _, err := c.core.CoreV1().ConfigMaps(ns).Get(t.Context(), "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the stale deploy still wrote ConfigMap b: %v", err)
	}
	inv, err := c.readInventory(t.Context(), ns, "demo")
	if err != nil || inv.fence != 9 {
		t.Fatalf("inventory fence = %d (%v), want 9", inv.fence, err)
	}
}

// TestNewerDeployBetweenCheckAndWrite lets a newer deploy take the
// application and rewrite the Deployment exactly between a stale attempt's
// fence check and its write: the stale write fails on its precondition, the
// re-check refuses it, and the newer deploy's object stays.
func TestNewerDeployBetweenCheckAndWrite(t *testing.T) {
	c := testCluster(t)
	ns := testNamespace(t, c)
	mustSucceed(t, c, ns, deployNow(t, c, inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:1", "")), 1))

	newer := testCluster(t) // another agent, same cluster
	slipped := false
	c.beforeWrite = func(r objRef) {
		if slipped || r.Kind != "Deployment" {
			return
		}
		slipped = true
		mustSucceed(t, newer, ns, deployNow(t, newer, inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:3", "")), 3))
	}
	res := deployNow(t, c, inlineSpec("demo", ns, webYAML("", 2, "registry.invalid/web:2", "")), 2)
	if !slipped {
		t.Fatal("the newer deploy never ran")
	}
	if !errors.Is(res.Err, ErrStaleFence) {
		t.Fatalf("stale deploy: %v %v, want ErrStaleFence", res.Class, res.Err)
	}
	dep, err := c.core.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "registry.invalid/web:3" {
		t.Fatalf("image %s: the stale write overwrote the newer deploy", img)
	}
	if got := dep.GetAnnotations()[AnnotationFence]; got != "3" {
		t.Fatalf("fence annotation %q, want 3", got)
	}
}
