package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The tests in this file deploy to a real Kubernetes control plane (etcd,
// kube-apiserver, controller-manager, scheduler, kwok nodes):
//
//	eval "$(scripts/testenv.sh up kube)"
//
// Without GANTRY_TEST_KUBECONFIG they are skipped. The dev process reaches
// that cluster as "local" through its agent.

type kubeEnv struct {
	kubeconfig string
	cs         *kubernetes.Clientset
}

func needKube(t *testing.T) kubeEnv {
	t.Helper()
	skipShort(t)
	path := os.Getenv("GANTRY_TEST_KUBECONFIG")
	if path == "" {
		t.Skip("GANTRY_TEST_KUBECONFIG is not set (eval \"$(scripts/testenv.sh up kube)\")")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kubeEnv{kubeconfig: path, cs: cs}
}

// namespace returns a fresh namespace name, deleted when the test ends.
func (k kubeEnv) namespace(t *testing.T, prefix string) string {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	ns := prefix + "-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_ = k.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns
}

// startKubeDev starts a dev process whose agent reaches the test cluster.
func startKubeDev(t *testing.T, k kubeEnv) *devNode {
	t.Helper()
	d := newDevNode(t)
	d.extra = []string{"--kubeconfig", k.kubeconfig}
	d.start(t)
	return d
}

// webManifest is a Deployment and a ConfigMap; extra is added to the pod spec.
func webManifest(image string, replicas int, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: %s
          ports: [{containerPort: 8080}]
%s`, replicas, image, extra)
}

const webConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
`

// deployment returns the live Deployment web, or nil when it is missing.
func (k kubeEnv) deployment(t *testing.T, ns string) *appsv1.Deployment {
	t.Helper()
	d, err := k.cs.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get deployment %s/web: %v", ns, err)
	}
	return d
}

// waitImage waits until Deployment web runs image and is Available.
func (k kubeEnv) waitImage(t *testing.T, ns, image string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, func() (bool, string) {
		d := k.deployment(t, ns)
		if d == nil {
			return false, "deployment web missing"
		}
		got := d.Spec.Template.Spec.Containers[0].Image
		avail := false
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
				avail = true
			}
		}
		ok := got == image && avail && d.Status.UpdatedReplicas == *d.Spec.Replicas && d.Status.AvailableReplicas == *d.Spec.Replicas
		return ok, fmt.Sprintf("image %s available=%v updated=%d available=%d", got, avail, d.Status.UpdatedReplicas, d.Status.AvailableReplicas)
	})
}

func getApp(t *testing.T, addr, name string) *gv1.GetAppResponse {
	t.Helper()
	var resp gv1.GetAppResponse
	if err := decodeJSON(gantry(t, addr, "-o", "json", "app", "status", name), &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

// pushHook announces a push of the repository to the coordinator's webhook.
func pushHook(t *testing.T, httpAddr, url string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "repository": map[string]string{"clone_url": url}})
	resp, err := http.Post("http://"+httpAddr+"/hooks/git", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /hooks/git: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ Apps []string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || len(out.Apps) == 0 {
		t.Fatalf("POST /hooks/git: %d, apps %v; want 202 naming the application", resp.StatusCode, out.Apps)
	}
}

// history returns an application's deploy records, oldest first.
func history(t *testing.T, addr, name string) []*gv1.DeployRecord {
	t.Helper()
	return getApp(t, addr, name).GetApp().GetHistory()
}

func lastRecord(t *testing.T, addr, name string) *gv1.DeployRecord {
	h := history(t, addr, name)
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1]
}

// configRepo is a Git repository holding the manifests under k8s/.
func configRepo(t *testing.T, image string) (*repo, string) {
	t.Helper()
	r := &repo{tb: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	if err := os.MkdirAll(filepath.Join(r.dir, "k8s"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.write("k8s/web.yaml", webManifest(image, 2, ""))
	r.write("k8s/config.yaml", webConfig)
	return r, r.commit("first")
}

// TestGitOpsCommitDriftRollback follows one application through its life:
// commits deployed (poll and webhook), drift detected and synced away, a
// rollout that never becomes healthy rolled back, a rollback pinned across a
// new commit, then unpinned.
func TestGitOpsCommitDriftRollback(t *testing.T) {
	k := needKube(t)
	d := startKubeDev(t, k)
	ns := k.namespace(t, "gitops")
	r, rev1 := configRepo(t, "registry.invalid/web:v1")

	mustGantry(t, d.grpcAddr, "app", "create", "web", "--repo", r.url(), "--path", "k8s", "--revision", "main",
		"--cluster", "local", "--namespace", ns, "--auto-sync", "--prune", "--poll-interval", "1h", "--health-timeout", "8s")
	// Created: the first poll runs at once and deploys the head of main.
	k.waitImage(t, ns, "registry.invalid/web:v1", 60*time.Second)
	waitFor(t, 30*time.Second, func() (bool, string) {
		rec := lastRecord(t, d.grpcAddr, "web")
		return rec != nil && rec.Result == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED && rec.Revision == rev1, fmt.Sprintf("last deploy %v", rec)
	})

	// A commit announced to the webhook is deployed; the ConfigMap removed
	// from Git is pruned.
	r.write("k8s/web.yaml", webManifest("registry.invalid/web:v2", 2, ""))
	if err := os.Remove(filepath.Join(r.dir, "k8s/config.yaml")); err != nil {
		t.Fatal(err)
	}
	rev2 := r.commit("v2, no config")
	pushHook(t, d.httpAddr, r.url())
	k.waitImage(t, ns, "registry.invalid/web:v2", 60*time.Second)
	waitFor(t, 30*time.Second, func() (bool, string) {
		_, err := k.cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "web-config", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprintf("configmap web-config: %v", err)
	})
	waitFor(t, 30*time.Second, func() (bool, string) {
		rec := lastRecord(t, d.grpcAddr, "web")
		return rec != nil && rec.Revision == rev2 && rec.Result == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED, fmt.Sprintf("last deploy %v", rec)
	})

	// Drift: a change behind Gantry's back shows OutOfSync with a readable
	// diff; sync puts it back.
	scale(t, k, ns, 1)
	var diff result
	waitFor(t, 20*time.Second, func() (bool, string) {
		diff = gantry(t, d.grpcAddr, "app", "diff", "web")
		return diff.code == 1 && strings.Contains(diff.stdout, "spec.replicas: 2 (git) != 1 (live)"), diff.String()
	})
	if !strings.Contains(diff.stdout, "Deployment "+ns+"/web") {
		t.Errorf("diff does not name the object:\n%s", diff.stdout)
	}
	if s := getApp(t, d.grpcAddr, "web").GetSummary(); s.GetSync() != gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC {
		t.Errorf("status after drift: sync %s, want OUT_OF_SYNC", s.GetSync())
	}
	mustGantry(t, d.grpcAddr, "app", "sync", "web", "--wait")
	waitFor(t, 20*time.Second, func() (bool, string) {
		dep := k.deployment(t, ns)
		diff = gantry(t, d.grpcAddr, "app", "diff", "web")
		return *dep.Spec.Replicas == 2 && diff.code == 0, fmt.Sprintf("replicas %d; %s", *dep.Spec.Replicas, diff)
	})

	// A rollout that never becomes healthy (no node matches its selector)
	// is rolled back to the last healthy revision.
	r.write("k8s/web.yaml", webManifest("registry.invalid/web:v3", 2, "      nodeSelector: {gantry.test/none: \"true\"}\n"))
	rev3 := r.commit("v3, unschedulable")
	pushHook(t, d.httpAddr, r.url())
	waitFor(t, 60*time.Second, func() (bool, string) {
		rec := lastRecord(t, d.grpcAddr, "web")
		return rec != nil && rec.Revision == rev3 && rec.Result == gv1.DeployResult_DEPLOY_RESULT_ROLLED_BACK, fmt.Sprintf("last deploy %v", rec)
	})
	k.waitImage(t, ns, "registry.invalid/web:v2", 30*time.Second)
	if sel := k.deployment(t, ns).Spec.Template.Spec.NodeSelector; len(sel) != 0 {
		t.Errorf("after the rollback the Deployment still has nodeSelector %v", sel)
	}

	// Rollback to the first revision pins the application: a new commit is
	// seen but not deployed until unpinned.
	mustGantry(t, d.grpcAddr, "app", "rollback", "web", rev1[:8], "--wait")
	k.waitImage(t, ns, "registry.invalid/web:v1", 30*time.Second)
	r.write("k8s/web.yaml", webManifest("registry.invalid/web:v4", 2, ""))
	rev4 := r.commit("v4")
	pushHook(t, d.httpAddr, r.url())
	waitFor(t, 20*time.Second, func() (bool, string) {
		s := getApp(t, d.grpcAddr, "web").GetSummary()
		return s.GetLatestRevision() == rev4, "latest revision " + s.GetLatestRevision()
	})
	holdsFor(t, 2*time.Second, func() (bool, string) {
		img := k.deployment(t, ns).Spec.Template.Spec.Containers[0].Image
		return img == "registry.invalid/web:v1", "image " + img
	})
	st := gantry(t, d.grpcAddr, "app", "status", "web")
	if !strings.Contains(st.stdout, "Pinned:") || !strings.Contains(st.stdout, rev1) {
		t.Errorf("status does not show the pin to %s:\n%s", rev1, st.stdout)
	}
	mustGantry(t, d.grpcAddr, "app", "unpin", "web")
	k.waitImage(t, ns, "registry.invalid/web:v4", 60*time.Second)

	// The history tells the whole story, newest first.
	hist := mustGantry(t, d.grpcAddr, "app", "history", "web")
	for _, want := range []string{"rolled-back", "rollback", "commit", "sync", rev4[:10]} {
		if !strings.Contains(hist.stdout, want) {
			t.Errorf("history lacks %q:\n%s", want, hist.stdout)
		}
	}
}

// scale changes the replicas of Deployment web the way kubectl scale does:
// a patch of the scale subresource.
func scale(t testing.TB, k kubeEnv, ns string, n int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	if _, err := k.cs.AppsV1().Deployments(ns).Patch(context.Background(), "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "scale"); err != nil {
		t.Fatalf("scale: %v", err)
	}
}

// TestGitOpsSelfHealAndRestore checks that self-heal reverts a change made
// behind Gantry's back, and that a snapshot restores applications and their
// history into a new coordinator.
func TestGitOpsSelfHealAndRestore(t *testing.T) {
	k := needKube(t)
	d := startKubeDev(t, k)
	ns := k.namespace(t, "heal")
	r, rev1 := configRepo(t, "registry.invalid/web:v1")
	mustGantry(t, d.grpcAddr, "app", "create", "healer", "--repo", r.url(), "--path", "k8s",
		"--cluster", "local", "--namespace", ns, "--auto-sync", "--self-heal", "--poll-interval", "500ms")
	k.waitImage(t, ns, "registry.invalid/web:v1", 60*time.Second)
	waitFor(t, 30*time.Second, func() (bool, string) {
		s := getApp(t, d.grpcAddr, "healer").GetSummary()
		return s.GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED && s.GetHealth() == gv1.HealthStatus_HEALTH_STATUS_HEALTHY,
			fmt.Sprintf("sync %s health %s (%s)", s.GetSync(), s.GetHealth(), s.GetReason())
	})

	scale(t, k, ns, 5)
	waitFor(t, 30*time.Second, func() (bool, string) {
		rec := lastRecord(t, d.grpcAddr, "healer")
		dep := k.deployment(t, ns)
		return rec.GetTrigger() == "self-heal" && rec.GetResult() == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED && *dep.Spec.Replicas == 2,
			fmt.Sprintf("replicas %d, last deploy %v", *dep.Spec.Replicas, rec)
	})

	// Polling (no webhook here) picks up a new commit.
	r.write("k8s/web.yaml", webManifest("registry.invalid/web:v2", 2, ""))
	rev2 := r.commit("v2")
	k.waitImage(t, ns, "registry.invalid/web:v2", 60*time.Second)
	waitFor(t, 30*time.Second, func() (bool, string) {
		rec := lastRecord(t, d.grpcAddr, "healer")
		return rec.GetRevision() == rev2 && rec.GetResult() == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED, fmt.Sprintf("last deploy %v", rec)
	})

	// Disaster recovery: save, start a new coordinator, restore.
	snap := filepath.Join(t.TempDir(), "gantry.snap")
	mustGantry(t, d.grpcAddr, "snapshot", "save", snap)
	before := history(t, d.grpcAddr, "healer")
	d.proc.stop(t, 20*time.Second)

	fresh := startKubeDev(t, k)
	res := mustGantry(t, fresh.grpcAddr, "snapshot", "restore", snap)
	if !strings.Contains(res.stderr, "1 applications") {
		t.Errorf("restore output: %s", res)
	}
	var list gv1.ListAppsResponse
	if err := decodeJSON(gantry(t, fresh.grpcAddr, "-o", "json", "app", "list"), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Apps) != 1 || list.Apps[0].GetSpec().GetName() != "healer" || list.Apps[0].GetDeployedRevision() != rev2 {
		t.Fatalf("restored apps = %v, want healer at %s", list.Apps, rev2)
	}
	after := history(t, fresh.grpcAddr, "healer")
	if len(after) != len(before) {
		t.Fatalf("restored history has %d deploys, want %d", len(after), len(before))
	}
	for i := range before {
		if after[i].GetRevision() != before[i].GetRevision() || after[i].GetResult() != before[i].GetResult() || after[i].GetJobId() != before[i].GetJobId() {
			t.Errorf("deploy %d: restored %v, saved %v", i, after[i], before[i])
		}
	}
	if after[0].GetRevision() != rev1 {
		t.Errorf("first deploy revision %s, want %s", after[0].GetRevision(), rev1)
	}
	// The restored coordinator carries on: it watches and heals again.
	scale(t, k, ns, 4)
	waitFor(t, 30*time.Second, func() (bool, string) {
		dep := k.deployment(t, ns)
		return *dep.Spec.Replicas == 2, fmt.Sprintf("replicas %d", *dep.Spec.Replicas)
	})
}

// TestDeployTaskInPipeline deploys inline manifests from a pipeline and
// checks that the deploy is recorded with its job and task.
func TestDeployTaskInPipeline(t *testing.T) {
	k := needKube(t)
	d := startKubeDev(t, k)
	ns := k.namespace(t, "pipe")
	indent := func(s string) string {
		return "          " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n          ")
	}
	pipeline := fmt.Sprintf(`name: ship
tasks:
  - name: prepare
    exec: {shell: "echo ok"}
  - name: deploy
    needs: [prepare]
    deploy:
      cluster: local
      namespace: %s
      images:
        registry.invalid/web: registry.invalid/web@sha256:%s
      source:
        inline: |
%s
`, ns, strings.Repeat("ab", 32), indent(webManifest("registry.invalid/web:latest", 1, "")))
	sub := gantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, pipeline), "--wait")
	if sub.code != 0 {
		t.Fatalf("deploy pipeline: %s", sub)
	}
	k.waitImage(t, ns, "registry.invalid/web@sha256:"+strings.Repeat("ab", 32), 30*time.Second)
	app := getApp(t, d.grpcAddr, "ship.deploy").GetApp()
	if len(app.GetHistory()) != 1 {
		t.Fatalf("history of ship.deploy = %v", app.GetHistory())
	}
	rec := app.GetHistory()[0]
	if rec.GetTask() != "deploy" || rec.GetJobId() == "" || rec.GetTrigger() != "pipeline" || rec.GetResult() != gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED ||
		rec.GetImages()["registry.invalid/web"] == "" || rec.GetFence() == 0 {
		t.Errorf("deploy record = %v", rec)
	}
	if !strings.Contains(sub.stdout, "Deployment") {
		t.Errorf("deploy log does not mention the Deployment:\n%s", sub.stdout)
	}
}
