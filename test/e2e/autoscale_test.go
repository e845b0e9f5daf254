package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestAutoscalePoolOnQueueDepth: the leader sizes an agent pool's
// Deployment on the test control plane by the tasks queued for the pool's
// labels, and shrinks it after the cool-down by idle agents only. The
// pool's pods run on kwok nodes (no processes), so each pod's agent runs
// here as a process named after the pod, as the pod's would be.
func TestAutoscalePoolOnQueueDepth(t *testing.T) {
	k := needKube(t)
	ctx := context.Background()
	ns := k.namespace(t, "pool")
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const pool = "gantry-agent-gpu"
	sel := map[string]string{"app.kubernetes.io/name": "gantry", "app.kubernetes.io/component": "agent", "gantry.dev/pool": "gpu"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: pool, Labels: map[string]string{"gantry.dev/autoscale": "true"}, Annotations: map[string]string{
			"gantry.dev/min-replicas": "1", "gantry.dev/max-replicas": "5", "gantry.dev/scale-down-after": "5s",
		}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "agent", Image: "registry.invalid/gantry:test",
					Args: []string{"agent", "--name=$(POD_NAME)", "--label=pool=gpu", "--slots=2"},
				}}},
			},
		},
	}
	if _, err := k.cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	d := newDevNode(t)
	d.extra = []string{"--autoscale", k.kubeconfig, "--autoscale-namespace", ns}
	d.start(t)
	replicas := func() (int32, string) {
		got, err := k.cs.AppsV1().Deployments(ns).Get(ctx, pool, metav1.GetOptions{})
		if err != nil {
			return -1, err.Error()
		}
		return *got.Spec.Replicas, fmt.Sprintf("%d replicas, %d ready", *got.Spec.Replicas, got.Status.ReadyReplicas)
	}
	waitFor(t, 30*time.Second, func() (bool, string) { n, s := replicas(); return n == 1, s })

	// 40 tasks for the pool: 20 agents' worth at 2 slots; the pool's
	// maximum is 5. The dev agent lacks pool=gpu and takes none.
	var jobs []string
	task := writePipeline(t, "name: gpu\ntasks:\n  - name: t\n    labels: {pool: gpu}\n    exec: {command: [sleep, \"0.5\"]}\n")
	start := time.Now()
	for range 40 {
		jobs = append(jobs, strings.TrimSpace(mustGantry(t, d.grpcAddr, "submit", "-f", task).stdout))
	}
	waitFor(t, 30*time.Second, func() (bool, string) { n, s := replicas(); return n == 5, s })
	t.Logf("40 tasks queued: pool scaled 1 -> 5 in %s after the first submit", time.Since(start).Round(time.Millisecond))

	// Each pod's agent, named after it, enrolled with a token for the
	// pool's label.
	var pods []string
	waitFor(t, 60*time.Second, func() (bool, string) {
		pods = poolPods(t, k, ns, sel)
		return len(pods) == 5, fmt.Sprintf("pods %v", pods)
	})
	out := mustGantry(t, d.grpcAddr, "agent-token", "create", "gpu", "--label", "pool=gpu").stdout
	token := lines(out)[len(lines(out))-1]
	agents := map[string]*proc{}
	for _, pod := range pods {
		agents[pod] = startProc(t, "agent-"+pod, "agent", "--name", pod, "--label", "pool=gpu", "--slots", "2",
			"--nats", "tls://"+d.natsAddr, "--coordinator", d.grpcAddr, "--join-token", token,
			"--tls-ca", filepath.Join(d.dataDir, "tls", "ca.pem"), "--work-dir", filepath.Join(t.TempDir(), pod))
	}
	// One long task holds an agent while the pool shrinks.
	long := strings.TrimSpace(mustGantry(t, d.grpcAddr, "submit", "-f",
		writePipeline(t, "name: long\ntasks:\n  - name: t\n    labels: {pool: gpu}\n    exec: {command: [sleep, \"12\"]}\n")).stdout)
	var holder string
	waitFor(t, 60*time.Second, func() (bool, string) {
		j := getJob(t, d.grpcAddr, long)
		tk := j.Tasks[0]
		if tk.State != gv1.TaskState_TASK_STATE_RUNNING {
			return false, "long task " + tk.State.String()
		}
		holder = tk.Attempts[len(tk.Attempts)-1].Agent
		return true, ""
	})
	for _, id := range jobs {
		waitFor(t, 60*time.Second, func() (bool, string) {
			j := getJob(t, d.grpcAddr, id)
			return j.State == gv1.JobState_JOB_STATE_SUCCEEDED, id + " " + j.State.String()
		})
	}
	t.Logf("40 tasks finished in %s; %s runs the long task", time.Since(start).Round(time.Millisecond), holder)

	// Queue empty, one task running: after the 5 s cool-down the pool goes
	// to its minimum of one, and the pod that stays is the busy one.
	down := time.Now()
	waitFor(t, 60*time.Second, func() (bool, string) {
		n, s := replicas()
		left := poolPods(t, k, ns, sel)
		return n == 1 && len(left) == 1, fmt.Sprintf("%s, pods %v", s, left)
	})
	t.Logf("queue empty: pool scaled 5 -> 1 in %s (cool-down 5s)", time.Since(down).Round(time.Millisecond))
	if left := poolPods(t, k, ns, sel); !slices.Equal(left, []string{holder}) {
		t.Errorf("pods left %v; want the busy agent's %s", left, holder)
	}
	// The removed pods' agents get SIGTERM, as from the kubelet.
	for pod, p := range agents {
		if pod != holder {
			p.stop(t, 30*time.Second)
		}
	}
	waitFor(t, 60*time.Second, func() (bool, string) {
		j := getJob(t, d.grpcAddr, long)
		return j.State == gv1.JobState_JOB_STATE_SUCCEEDED, "long job " + j.State.String()
	})
	if j := getJob(t, d.grpcAddr, long); len(j.Tasks[0].Attempts) != 1 {
		t.Errorf("the long task ran %d times; want once, never interrupted", len(j.Tasks[0].Attempts))
	}
}

// poolPods lists the pool's pods not being deleted, sorted.
func poolPods(t *testing.T, k kubeEnv, ns string, sel map[string]string) []string {
	t.Helper()
	var parts []string
	for key, v := range sel {
		parts = append(parts, key+"="+v)
	}
	l, err := k.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: strings.Join(parts, ",")})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}
