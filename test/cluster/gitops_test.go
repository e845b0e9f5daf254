package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantryci/gantry/agent"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const gitopsManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: %s
`

// TestGitOpsAcrossLeaderFailover runs a GitOps application on a 3-node
// cluster with two agents reaching a real Kubernetes control plane: a
// commit made while the leader is down is deployed once by the next
// leader, and drift is still healed after the agent watching the
// application is killed (its watch moves to the other agent).
func TestGitOpsAcrossLeaderFailover(t *testing.T) {
	skipShort(t)
	kubeconfig := os.Getenv("GANTRY_TEST_KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("GANTRY_TEST_KUBECONFIG is not set (eval \"$(scripts/testenv.sh up kube)\")")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	ns := fmt.Sprintf("failover-%d", time.Now().UnixNano()%1_000_000)
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })

	dir := t.TempDir()
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func(image string) string {
		if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(fmt.Sprintf(gitopsManifest, image)), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "-A")
		git("commit", "-q", "-m", image)
		return git("rev-parse", "HEAD")
	}
	git("init", "-q", "-b", "main")
	rev1 := commit("registry.invalid/web:v1")

	c := newCluster(t, 3, nil)
	kube := []agent.KubeCluster{{Name: "local", Kubeconfig: kubeconfig}}
	c.StartAgentWith("k1", 2, nil, kube)
	c.StartAgentWith("k2", 2, nil, kube)
	for i := range 3 {
		c.WaitAgents(i, "k1", "k2")
	}
	clients := []gv1.GantryServiceClient{c.Client(0), c.Client(1), c.Client(2)}
	ctx := context.Background()
	if _, err := clients[c.Leader()].CreateApp(ctx, &gv1.CreateAppRequest{Spec: &gv1.AppSpec{
		Name: "web", Repo: "file://" + dir, Cluster: "local", Namespace: ns, AutoSync: true, SelfHeal: true,
		PollInterval: durationMs(200),
	}}); err != nil {
		t.Fatal(err)
	}
	app := func(i int) *gv1.GetAppResponse {
		r, err := clients[i].GetApp(ctx, &gv1.GetAppRequest{Name: "web"})
		if err != nil {
			return nil
		}
		return r
	}
	deployed := func(i int, rev string) bool {
		r := app(i)
		return r != nil && r.GetSummary().GetDeployedRevision() == rev
	}
	image := func() string {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}
	waitFor(t, 60*time.Second, "first commit deployed", func() bool { return deployed(0, rev1) && image() == "registry.invalid/web:v1" })

	// Leader down; a commit lands meanwhile.
	dead := c.Leader()
	c.Stop(dead)
	rev2 := commit("registry.invalid/web:v2")
	survivor := (dead + 1) % 3
	waitFor(t, 60*time.Second, "second commit deployed by the next leader", func() bool {
		return deployed(survivor, rev2) && image() == "registry.invalid/web:v2"
	})
	succeeded := 0
	for _, rec := range app(survivor).GetApp().GetHistory() {
		if rec.GetRevision() == rev2 && rec.GetResult() == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED {
			succeeded++
		}
	}
	if succeeded != 1 {
		t.Errorf("commit %s deployed successfully %d times, want once: %v", rev2, succeeded, app(survivor).GetApp().GetHistory())
	}

	// The agent watching the application dies; the other one takes over
	// the watch and the drift is healed.
	var watcher string
	waitFor(t, 30*time.Second, "a drift report after the failover", func() bool {
		r := app(survivor)
		watcher = r.GetDrift().GetAgent()
		return watcher != "" && r.GetSummary().GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED
	})
	c.KillAgent(watcher)
	other := map[string]string{"k1": "k2", "k2": "k1"}[watcher]
	waitFor(t, 30*time.Second, "the watch to move to "+other, func() bool {
		r := app(survivor)
		return r.GetDrift().GetAgent() == other
	})
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{}, "scale"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "drift healed by "+other, func() bool {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || *d.Spec.Replicas != 2 {
			return false
		}
		h := app(survivor).GetApp().GetHistory()
		last := h[len(h)-1]
		return last.GetTrigger() == "self-heal" && last.GetAgent() == other && last.GetResult() == gv1.DeployResult_DEPLOY_RESULT_SUCCEEDED
	})
}

func durationMs(ms int) *durationpb.Duration {
	return durationpb.New(time.Duration(ms) * time.Millisecond)
}
