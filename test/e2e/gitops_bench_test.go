package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// BenchmarkGitOpsDrift measures, against the real control plane, how long
// a change made behind Gantry's back takes to show as drift in the API
// (kubectl scale, then GetApp until OUT_OF_SYNC), and how long self-heal
// takes to put it back (until the Deployment has its replicas again).
//
//	eval "$(scripts/testenv.sh up kube)"
//	go test -run '^$' -bench GitOpsDrift -benchtime 10x ./test/e2e/
func BenchmarkGitOpsDrift(b *testing.B) {
	path := os.Getenv("GANTRY_TEST_KUBECONFIG")
	if path == "" {
		b.Skip("GANTRY_TEST_KUBECONFIG is not set (eval \"$(scripts/testenv.sh up kube)\")")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		b.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	addr := benchDev(b, "--kubeconfig", path)
	opts := []client.Option{client.WithRetryTimeout(0), client.WithToken(adminToken)}
	if ca, ok := tlsCAs.Load(addr); ok {
		tc, err := pki.ClientTLS(ca.(string), "", "")
		if err != nil {
			b.Fatal(err)
		}
		opts = append(opts, client.WithTLS(tc))
	}
	cl, err := client.New([]string{addr}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	c := cl.Raw()
	ctx := context.Background()

	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	run := func(name string, selfHeal bool) (string, string) {
		ns := name + "-" + hex.EncodeToString(suffix[:])
		b.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
		dir := b.TempDir()
		git := func(args ...string) {
			cmd := exec.Command("git", append([]string{"-c", "user.name=b", "-c", "user.email=b@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		git("init", "-q", "-b", "main")
		if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(webManifest("registry.invalid/web:v1", 2, "")), 0o644); err != nil {
			b.Fatal(err)
		}
		git("add", "-A")
		git("commit", "-q", "-m", "v1")
		if _, err := c.CreateApp(ctx, &gv1.CreateAppRequest{Spec: &gv1.AppSpec{
			Name: name, Repo: "file://" + dir, Cluster: "local", Namespace: ns, AutoSync: true, SelfHeal: selfHeal,
		}}); err != nil {
			b.Fatal(err)
		}
		waitBench(b, 60*time.Second, func() bool {
			r, err := c.GetApp(ctx, &gv1.GetAppRequest{Name: name})
			return err == nil && r.GetSummary().GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED &&
				r.GetSummary().GetHealth() == gv1.HealthStatus_HEALTH_STATUS_HEALTHY
		})
		return name, ns
	}
	watched, wns := run("drift", false)
	healed, hns := run("heal", true)
	k := kubeEnv{kubeconfig: path, cs: cs}
	scaleTo := func(ns string, n int32) { scale(b, k, ns, n) }
	var detect, heal time.Duration
	b.ResetTimer()
	for i := range b.N {
		// Detection: drift shows in the API.
		start := time.Now()
		scaleTo(wns, int32(3+i%2))
		waitBench(b, 30*time.Second, func() bool {
			r, err := c.GetApp(ctx, &gv1.GetAppRequest{Name: watched})
			return err == nil && r.GetSummary().GetSync() == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		})
		detect += time.Since(start)
		scaleTo(wns, 2) // back by hand, out of the timing
		waitBench(b, 30*time.Second, func() bool {
			r, err := c.GetApp(ctx, &gv1.GetAppRequest{Name: watched})
			return err == nil && r.GetSummary().GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED
		})

		// Self-heal: the live object is back as Git says.
		start = time.Now()
		scaleTo(hns, int32(3+i%2))
		waitBench(b, 30*time.Second, func() bool {
			d, err := cs.AppsV1().Deployments(hns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && *d.Spec.Replicas == 2
		})
		heal += time.Since(start)
		waitBench(b, 30*time.Second, func() bool {
			r, err := c.GetApp(ctx, &gv1.GetAppRequest{Name: healed})
			return err == nil && r.GetSummary().GetSync() == gv1.SyncStatus_SYNC_STATUS_SYNCED
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(detect.Milliseconds())/float64(b.N), "detect_ms")
	b.ReportMetric(float64(heal.Milliseconds())/float64(b.N), "heal_ms")
	fmt.Fprintf(os.Stderr, "drift: shown out of sync %.0f ms after the change; self-heal restored it in %.0f ms (mean of %d)\n",
		float64(detect.Milliseconds())/float64(b.N), float64(heal.Milliseconds())/float64(b.N), b.N)
}

// waitBench waits for cond with a deadline, checking every 5 ms.
func waitBench(b *testing.B, timeout time.Duration, cond func() bool) {
	b.Helper()
	if !poll.Every(5*time.Millisecond, timeout, cond) {
		b.Fatalf("condition not met after %s", timeout)
	}
}
