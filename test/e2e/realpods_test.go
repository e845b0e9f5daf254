package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestRealPods runs the Gantry image as real pods on the real node that
//
//	eval "$(scripts/testenv.sh up node)"
//
// adds to the test cluster (kubelet, containerd, CNI bridge, kube-proxy,
// CoreDNS on this host; exported as GANTRY_TEST_NODE, tainted so that only
// pods that tolerate it land there). It builds the static binary and
// deploy/container's image with BuildKit, pushes it to the test registry,
// installs deploy/helm/gantry with Helm into a fresh namespace (coordinators
// and one fixed agent pool on that node, data on hostPath volumes bound in
// advance) and checks: three coordinators Ready with one leader, seen
// through the gantry-api Service's ClusterIP (kube-proxy) over TLS; the
// agent enrolled with a join token made through the Service; a job runs on
// the agent pod; and when the leader's pod is deleted while jobs are being
// submitted, the StatefulSet replaces it, it rejoins, and every
// acknowledged job exists and succeeded.
//
// Pods on the node cannot reach the test apiserver (it listens on
// 127.0.0.1 and keeps no endpoints for the kubernetes Service), so the pool
// is not autoscaled and deploys to no cluster.
func TestRealPods(t *testing.T) {
	skipShort(t)
	node := os.Getenv("GANTRY_TEST_NODE")
	if node == "" {
		t.Skip("GANTRY_TEST_NODE is not set (eval \"$(scripts/testenv.sh up node)\")")
	}
	k := needKube(t)
	helm := needHelm(t)
	env := needBuildEnv(t)
	if env.buildctl == "" {
		t.Skip("buildctl not found (GANTRY_BUILDCTL or PATH)")
	}
	ctx := context.Background()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	ns := "gantry-real-" + suffix

	// The image: the static binary, as .gantry/pipeline.yaml builds it,
	// stamped with a version of this run's own, and deploy/container.
	start := time.Now()
	version := "e2e-realpods-" + suffix
	imgCtx := t.TempDir()
	build := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/gantryci/gantry/internal/version.Version="+version,
		"-o", filepath.Join(imgCtx, "gantry"), "./cmd/gantry")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gantry: %v\n%s", err, out)
	}
	for src, dst := range map[string]string{
		"/etc/ssl/certs/ca-certificates.crt":               "ca-certificates.crt",
		filepath.Join(root, "deploy/container/Dockerfile"): "Dockerfile",
	} {
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(filepath.Join(imgCtx, dst), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	binDone := time.Since(start)
	repo := env.registry + "/gantry-realpods"
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	bk := exec.CommandContext(bctx, env.buildctl, "build", "--frontend", "dockerfile.v0",
		"--local", "context="+imgCtx, "--local", "dockerfile="+imgCtx,
		"--output", "type=image,name="+repo+":"+suffix+",push=true,registry.insecure=true")
	out, err := bk.CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("buildctl build: %v\n%s", err, out)
	}
	t.Logf("image %s:%s: static binary in %s, image built and pushed in %s", repo, suffix,
		binDone.Round(100*time.Millisecond), (time.Since(start) - binDone).Round(100*time.Millisecond))

	// Cleanup runs last to first: the namespace goes (and is waited for)
	// before the volumes, and the volumes before their directories.
	hostDir, err := os.MkdirTemp("", "gantry-realpods-")
	if err == nil {
		err = os.Chmod(hostDir, 0o755) // the pods' user walks through it
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(hostDir) })
	var pvs []string
	t.Cleanup(func() {
		for _, name := range pvs {
			if err := k.cs.CoreV1().PersistentVolumes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete persistent volume %s: %v", name, err)
			}
		}
	})
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("namespace %s when the test failed:\n%s", ns, realPodsState(k, ns))
		}
		c := context.Background()
		if err := k.cs.CoreV1().Namespaces().Delete(c, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns, err)
			return
		}
		if !poll.Until(3*time.Minute, func() bool {
			_, err := k.cs.CoreV1().Namespaces().Get(c, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}) {
			t.Errorf("namespace %s still there after 3m", ns)
		}
	})

	// Data volumes on the node, bound in advance to the coordinators'
	// claims; hostPath gets no fsGroup, so the directories belong to the
	// pods' user.
	for i := range 3 {
		dir := filepath.Join(hostDir, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		pv := coordinatorVolume(ns, i, dir)
		if _, err := k.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create persistent volume: %v", err)
		}
		pvs = append(pvs, pv.Name)
	}

	// The Secrets the chart names, made with gantry's own commands. The
	// join token's Secret comes once the cluster can make the token: the
	// agents wait for it.
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	runCLI(t, "tls", "ca", "create", "--dir", tlsDir)
	names := []string{"gantry-api", "gantry-api." + ns, "gantry-api." + ns + ".svc", "gantry-api." + ns + ".svc.cluster.local"}
	for i := range 3 {
		names = append(names, fmt.Sprintf("gantry-coordinator-%d.gantry-coordinator", i))
	}
	runCLI(t, "tls", "cert", "create", "--server", "gantry-coordinator", "--dir", tlsDir,
		"--dns", "localhost,"+strings.Join(names, ","), "--ip", "127.0.0.1")
	runCLI(t, "secret", "keygen", filepath.Join(dir, "secret-keys"))
	for name, data := range map[string]map[string][]byte{
		"gantry-tls": {
			"ca.pem": read(filepath.Join(tlsDir, "ca.pem")), "ca-key.pem": read(filepath.Join(tlsDir, "ca-key.pem")),
			"server.pem": read(filepath.Join(tlsDir, "gantry-coordinator.pem")), "server-key.pem": read(filepath.Join(tlsDir, "gantry-coordinator-key.pem")),
		},
		"gantry-bootstrap":   {"token": []byte(adminToken)},
		"gantry-secret-keys": {"keys": read(filepath.Join(dir, "secret-keys"))},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
		if _, err := k.cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create secret %s: %v", name, err)
		}
	}

	// Everything on the real node; small requests (two shared cores).
	placement := `nodeSelector: {gantry.dev/real-node: "true"}
  tolerations: [{key: gantry.dev/real-node, operator: Exists, effect: NoSchedule}]`
	values := writeValues(t, fmt.Sprintf(`image: {repository: %s, tag: %q}
coordinator:
  replicas: 3
  storage: {size: 10Gi}
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 1Gi}
  %s
agents:
  pools:
    - name: real
      labels: {os: linux, pool: real}
      slots: 4
      clusters: []
      replicas: {min: 1, max: 1}
      autoscale: {enabled: false}
      resources:
        requests: {cpu: 50m, memory: 64Mi}
        limits: {memory: 1Gi}
      %s
`, repo, suffix, placement, strings.ReplaceAll(placement, "\n  ", "\n      ")))
	installed := time.Now()
	mustHelm(t, helm, "install", "gantry", chartDir(t), "--values", values, "--namespace", ns, "--kubeconfig", k.kubeconfig)
	sts, err := k.cs.AppsV1().StatefulSets(ns).Get(ctx, coordinatorSTS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := sts.Spec.Template.Spec.Containers[0]; c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS || c.LivenessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Fatalf("the coordinators' probes ask for %s, %s; they serve HTTPS", c.ReadinessProbe.HTTPGet.Scheme, c.LivenessProbe.HTTPGet.Scheme)
	}

	// Three coordinators Running and Ready on the node.
	coordinatorPods := func() ([]corev1.Pod, error) {
		l, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=coordinator"})
		if err != nil {
			return nil, err
		}
		sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
		return l.Items, nil
	}
	var firstRunning time.Duration
	waitFor(t, 5*time.Minute, func() (bool, string) {
		pods, err := coordinatorPods()
		if err != nil {
			return false, err.Error()
		}
		running, ready := 0, 0
		for _, p := range pods {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount >= 3 {
					t.Fatalf("coordinator %s restarted %d times\n%s", p.Name, cs.RestartCount, realPodsState(k, ns))
				}
			}
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
			if podReady(&p) {
				ready++
			}
		}
		if running == 3 && firstRunning == 0 {
			firstRunning = time.Since(installed)
		}
		return ready == 3, fmt.Sprintf("%d coordinator pods, %d running, %d ready\n%s", len(pods), running, ready, realPodsState(k, ns))
	})
	allReady := time.Since(installed)
	pods, err := coordinatorPods()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Spec.NodeName != node {
			t.Errorf("pod %s runs on %q, want the real node %s", p.Name, p.Spec.NodeName, node)
		}
	}

	// The client Service, through its ClusterIP from this host.
	svc, err := k.cs.CoreV1().Services(ns).Get(ctx, "gantry-api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(svc.Spec.ClusterIP, "7420")
	tlsCfg, err := pki.ClientTLS(filepath.Join(tlsDir, "ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.ServerName = "gantry-api" // the certificate names the Service, not its address
	c, err := client.New([]string{addr}, client.WithToken(adminToken), client.WithTLS(tlsCfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var st *gv1.ClusterStatusResponse
	waitFor(t, 2*time.Minute, func() (bool, string) {
		st, err = nodeStatus(ctx, c)
		if err != nil {
			return false, fmt.Sprintf("cluster status through %s: %v", addr, err)
		}
		leaders, voters := 0, 0
		for _, n := range st.GetNodes() {
			if n.GetLeader() {
				leaders++
			}
			if n.GetVoter() {
				voters++
			}
		}
		return st.GetLeaderId() != "" && leaders == 1 && voters == 3, fmt.Sprintf("leader %q, %d leaders, %d voters: %v", st.GetLeaderId(), leaders, voters, st.GetNodes())
	})
	leaderSeen := time.Since(installed)
	for _, n := range st.GetNodes() {
		if n.GetVersion() != version {
			t.Errorf("coordinator %s runs %q, want this run's image (%s)", n.GetId(), n.GetVersion(), version)
		}
	}
	t.Logf("helm install -> 3 coordinator pods running %s, all Ready %s, leader %s (term %d) seen through the Service (%s) %s",
		firstRunning.Round(100*time.Millisecond), allReady.Round(100*time.Millisecond), st.GetLeaderId(), st.GetTerm(), addr, leaderSeen.Round(100*time.Millisecond))

	// The agents' join token, made through the Service; the agent pod
	// starts once its Secret exists and enrolls.
	jt, err := c.Raw().CreateJoinToken(ctx, &gv1.CreateJoinTokenRequest{Name: "real-pool", Labels: map[string]string{"os": "linux", "pool": "real"}})
	if err != nil {
		t.Fatalf("create join token: %v", err)
	}
	joinStart := time.Now()
	if _, err := k.cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gantry-join"},
		Data: map[string][]byte{"token": []byte(jt.GetSecret())}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var agentPod string
	waitFor(t, 3*time.Minute, func() (bool, string) {
		l, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return false, err.Error()
		}
		var running []string
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running = append(running, p.Name)
				if p.Spec.NodeName != node {
					t.Fatalf("agent pod %s runs on %q, want the real node %s", p.Name, p.Spec.NodeName, node)
				}
			}
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Raw().ListAgents(actx, &gv1.ListAgentsRequest{})
		cancel()
		if err != nil {
			return false, fmt.Sprintf("list agents: %v", err)
		}
		for _, a := range resp.GetAgents() {
			if slices.Contains(running, a.GetInfo().GetName()) && a.GetState() == gv1.AgentState_AGENT_STATE_ACTIVE {
				agentPod = a.GetInfo().GetName()
				if v := a.GetInfo().GetVersion(); v != version {
					t.Errorf("agent %s runs %q, want %s", agentPod, v, version)
				}
				return true, ""
			}
		}
		return false, fmt.Sprintf("agent pods running %v; agents %v\n%s", running, resp.GetAgents(), realPodsState(k, ns))
	})
	t.Logf("join Secret -> agent pod %s connected and active: %s", agentPod, time.Since(joinStart).Round(100*time.Millisecond))

	// A job through the Service runs on the agent pod: the image has no
	// shell, so the task runs the gantry binary itself.
	spec := "name: realpods\ntasks:\n  - name: version\n    labels: {pool: real}\n    exec: {command: [\"/gantry\", \"version\", \"--client\"]}\n"
	sub, err := c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: spec})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	first := sub.GetJob().GetId()
	var j *gv1.Job
	waitFor(t, 2*time.Minute, func() (bool, string) {
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		j, err = c.Job(jctx, first)
		if err != nil {
			return false, err.Error()
		}
		return client.Final(j.GetState()), fmt.Sprintf("job %s %s", first, j.GetState())
	})
	if j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED || j.GetTasks()[0].GetAgent() != agentPod {
		t.Fatalf("job %s: %s on %q, want SUCCEEDED on %s: %v", first, j.GetState(), j.GetTasks()[0].GetAgent(), agentPod, j.GetTasks())
	}
	var logOut bytes.Buffer
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = c.Logs(lctx, first, "version", false, func(ch *gv1.LogChunk) error { logOut.Write(ch.GetData()); return nil })
	cancel()
	if err != nil {
		t.Fatalf("logs of job %s: %v", first, err)
	}
	if !strings.Contains(logOut.String(), "gantry "+version) {
		t.Errorf("job %s log %q: want the image's version %s", first, logOut.String(), version)
	}
	t.Logf("job %s ran on agent pod %s: %q", first, agentPod, strings.TrimSpace(logOut.String()))

	// The leader's pod is deleted while jobs are being submitted.
	s := &realSubmitter{c: c, spec: spec, acked: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	stopped := false
	stopSubmitter := func() {
		if !stopped {
			stopped = true
			close(s.stop)
			<-s.done
		}
	}
	t.Cleanup(stopSubmitter)
	waitFor(t, time.Minute, func() (bool, string) { return s.count() >= 5, fmt.Sprintf("%d jobs acknowledged", s.count()) })
	st, err = nodeStatus(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	victim := st.GetLeaderId()
	var commitAtDelete uint64
	for _, n := range st.GetNodes() {
		commitAtDelete = max(commitAtDelete, n.GetCommitIndex())
	}
	old, err := k.cs.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("leader %s is no pod of %s: %v", victim, ns, err)
	}
	deleted := time.Now()
	if err := k.cs.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var newLeader string
	var newLeaderAfter, replacedAfter time.Duration
	waitFor(t, 5*time.Minute, func() (bool, string) {
		if newLeader == "" {
			if st, err := nodeStatus(ctx, c); err == nil && st.GetLeaderId() != "" && st.GetLeaderId() != victim {
				newLeader, newLeaderAfter = st.GetLeaderId(), time.Since(deleted)
			}
		}
		p, err := k.cs.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if p.UID == old.UID {
			return false, fmt.Sprintf("%s: the old pod is still there (%s)", victim, p.Status.Phase)
		}
		if !podReady(p) {
			return false, fmt.Sprintf("%s replaced, %s, not ready\n%s", victim, p.Status.Phase, realPodsState(k, ns))
		}
		if replacedAfter == 0 {
			replacedAfter = time.Since(deleted)
		}
		st, err := nodeStatus(ctx, c)
		if err != nil {
			return false, err.Error()
		}
		n := statusOf(st, victim)
		if st.GetLeaderId() == "" || n == nil || !n.GetVoter() || n.GetAppliedIndex() < commitAtDelete || !n.GetSeenAt().AsTime().After(p.CreationTimestamp.Time) {
			return false, fmt.Sprintf("%s not caught up: leader %q, %v (commit index at delete %d)", victim, st.GetLeaderId(), n, commitAtDelete)
		}
		return true, ""
	})
	rejoined := time.Since(deleted)
	if newLeader == "" {
		if st, err := nodeStatus(ctx, c); err == nil {
			newLeader = st.GetLeaderId()
		}
	}
	t.Logf("leader pod %s deleted -> new leader %s after %s, pod replaced and Ready after %s, rejoined (applied >= %d) after %s",
		victim, newLeader, newLeaderAfter.Round(100*time.Millisecond), replacedAfter.Round(100*time.Millisecond), commitAtDelete, rejoined.Round(100*time.Millisecond))
	more := s.count() + 5
	waitFor(t, time.Minute, func() (bool, string) {
		return s.count() >= more, fmt.Sprintf("%d of %d jobs acknowledged", s.count(), more)
	})
	stopSubmitter()

	// Every acknowledged job exists and succeeded.
	s.mu.Lock()
	order, failed, errs := slices.Clone(s.order), s.failed, slices.Clone(s.errs)
	s.mu.Unlock()
	pending := order
	waitFor(t, 3*time.Minute, func() (bool, string) {
		var left []string
		for _, id := range pending {
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			j, err := c.Job(jctx, id)
			cancel()
			if status.Code(err) == codes.NotFound {
				t.Fatalf("acknowledged job %s is lost", id)
			}
			if err != nil {
				return false, err.Error()
			}
			if !client.Final(j.GetState()) {
				left = append(left, id)
				continue
			}
			if j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job %s ended %s: %v", id, j.GetState(), j.GetTasks())
			}
		}
		pending = left
		if len(left) > 0 {
			return false, fmt.Sprintf("%d of %d acknowledged jobs not final yet, e.g. %s", len(left), len(order), left[0])
		}
		return true, ""
	})
	t.Logf("%d jobs acknowledged during the failover, all succeeded; %d submits failed: %q", len(order), failed, errs)
}

// podReady reports whether the pod's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// realPodsState describes the pods of ns and their containers and warning
// events, for a failure message.
func realPodsState(k kubeEnv, ns string) string {
	ctx := context.Background()
	var b strings.Builder
	if pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s: %s on %q ready %v", p.Name, p.Status.Phase, p.Spec.NodeName, podReady(&p))
			for _, cs := range p.Status.ContainerStatuses {
				fmt.Fprintf(&b, "; %s restarts %d", cs.Name, cs.RestartCount)
				if w := cs.State.Waiting; w != nil {
					fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
				}
				if t := cs.LastTerminationState.Terminated; t != nil {
					fmt.Fprintf(&b, " last exit %d %s", t.ExitCode, t.Reason)
				}
			}
			b.WriteString("\n")
		}
	}
	if evs, err := k.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	// kubectl logs cannot reach the node's kubelet (it listens on
	// loopback); testenv exports where the kubelet writes the logs.
	if dir := os.Getenv("GANTRY_TEST_NODE_LOGS"); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, ns+"_*", "*", "*.log"))
		for _, f := range files {
			fmt.Fprintf(&b, "--- %s:\n%s\n", strings.TrimPrefix(f, dir+"/"), tail(f, 15))
		}
	}
	return b.String()
}

// realSubmitter submits one job after another until stopped and records
// each whose submit was acknowledged.
type realSubmitter struct {
	c    *client.Client
	spec string

	mu     sync.Mutex
	acked  map[string]bool
	order  []string
	failed int
	errs   []string // the first distinct errors

	stop chan struct{}
	done chan struct{}
}

func (s *realSubmitter) run() {
	defer close(s.done)
	tick := time.NewTicker(200 * time.Millisecond) // a steady trickle, not a load test
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		resp, err := s.c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: s.spec})
		cancel()
		s.mu.Lock()
		if err != nil {
			s.failed++
			if msg := err.Error(); len(s.errs) < 10 && !slices.Contains(s.errs, msg) {
				s.errs = append(s.errs, msg)
			}
		} else if id := resp.GetJob().GetId(); !s.acked[id] {
			s.acked[id] = true
			s.order = append(s.order, id)
		}
		s.mu.Unlock()
	}
}

func (s *realSubmitter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}
