package kube

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// manyApp is one of many small applications.
type manyApp struct {
	name, ns string
	web      bool // it has a Deployment "web-<name>" (replicas 0) besides its ConfigMap "cfg-<name>"
}

func (a manyApp) manifests() string {
	m := configMapYAML("cfg-" + a.name)
	if a.web {
		m += fmt.Sprintf(`---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-%[1]s}
spec:
  replicas: 0
  selector: {matchLabels: {app: web-%[1]s}}
  template:
    metadata: {labels: {app: web-%[1]s}}
    spec:
      containers:
      - {name: web, image: registry.invalid/web:1, resources: {requests: {cpu: 10m}}}
`, a.name)
	}
	return m
}

// appsIn spreads n applications over namespaces; every webEvery-th has a
// Deployment.
func appsIn(namespaces []string, n, webEvery int) []manyApp {
	apps := make([]manyApp, n)
	for i := range apps {
		apps[i] = manyApp{name: fmt.Sprintf("app%03d", i), ns: namespaces[i%len(namespaces)], web: i%webEvery == 0}
	}
	return apps
}

// scratchNamespaces returns n fresh namespaces; at the end it deletes them
// and waits until they are gone, so that their deletion does not slow the
// tests that follow.
func scratchNamespaces(tb testing.TB, c *Cluster, n int) []string {
	tb.Helper()
	var namespaces []string
	tb.Cleanup(func() { // runs after the deletions testNamespace registers
		deadline := time.Now().Add(2 * time.Minute)
		for _, ns := range namespaces {
			for {
				_, err := c.core.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					break
				}
				if time.Now().After(deadline) {
					tb.Logf("namespace %s still there: %v", ns, err)
					return
				}
				time.Sleep(100 * time.Millisecond) // polling period
			}
		}
	})
	for range n {
		namespaces = append(namespaces, testNamespace(tb, c))
	}
	return namespaces
}

// deployMany deploys apps, a few at a time.
func deployMany(tb testing.TB, c *Cluster, apps []manyApp) {
	tb.Helper()
	sem := make(chan struct{}, 4)
	errs := make(chan error, len(apps))
	var wg sync.WaitGroup
	for _, a := range apps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res := c.Deploy(tb.Context(), DeployRequest{Spec: inlineSpec(a.name, a.ns, a.manifests()), Fence: 1,
				JobID: "job1", Task: "deploy", Attempt: 1, WorkDir: tb.TempDir()}, discard{})
			if !res.Success() {
				errs <- fmt.Errorf("deploy %s: %v %w", a.name, res.Class, res.Err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

type discard struct{}

func (discard) Write(gv1.LogStream, []byte) {}

// watchedApps runs one Watch per application and keeps their reports.
type watchedApps struct {
	stop func() // ends the watches and waits for them
	mu   sync.Mutex
	last map[string]*gv1.DriftReport
	ch   map[string]chan *gv1.DriftReport
}

func watchAll(tb testing.TB, c *Cluster, apps []manyApp) *watchedApps {
	tb.Helper()
	w := &watchedApps{last: map[string]*gv1.DriftReport{}, ch: map[string]chan *gv1.DriftReport{}}
	for _, a := range apps {
		w.ch[a.name] = make(chan *gv1.DriftReport, 256)
	}
	ctx, cancel := context.WithCancel(tb.Context())
	var wg sync.WaitGroup
	w.stop = func() { cancel(); wg.Wait() }
	tb.Cleanup(w.stop)
	for _, a := range apps {
		ch := w.ch[a.name]
		wg.Go(func() {
			c.Watch(ctx, a.name, a.ns, func(r *gv1.DriftReport) {
				w.mu.Lock()
				w.last[a.name] = r
				w.mu.Unlock()
				select {
				case ch <- r:
				default:
				}
			})
		})
	}
	return w
}

func synced(r *gv1.DriftReport) bool {
	return r != nil && r.Sync == gv1.SyncStatus_SYNC_STATUS_SYNCED && r.Health == gv1.HealthStatus_HEALTH_STATUS_HEALTHY && r.Error == ""
}

// allSynced reports whether every application's last report is synced and
// healthy, or names one that is not.
func (w *watchedApps) allSynced() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for app := range w.ch {
		if r := w.last[app]; !synced(r) {
			return false, fmt.Sprintf("%s: %v", app, r)
		}
	}
	return true, ""
}

// next waits for app's first report satisfying ok.
func (w *watchedApps) next(tb testing.TB, app string, ok func(*gv1.DriftReport) bool) *gv1.DriftReport {
	tb.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case r := <-w.ch[app]:
			if ok(r) {
				return r
			}
		case <-timeout:
			tb.Fatalf("%s: no expected report within 20s", app)
		}
	}
}

func outOfSync(r *gv1.DriftReport) bool { return r.Sync == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC }

// oldWatches is how many watches the per-application design opened: one on
// the inventory and one per (resource, namespace) of the objects.
func oldWatches(apps []manyApp) int {
	n := 0
	for _, a := range apps {
		n += 2 // inventory, configmaps
		if a.web {
			n++
		}
	}
	return n
}

// TestWatchManyAppsSharesInformers watches 50 applications from one
// Cluster. It is not parallel: its deploys would slow the rollouts that
// other tests give a few seconds to become healthy.
func TestWatchManyAppsSharesInformers(t *testing.T) {
	c := testCluster(t)
	namespaces := scratchNamespaces(t, c, 3)
	apps := appsIn(namespaces, 50, 10)
	deployMany(t, c, apps)

	w := watchAll(t, c, apps)
	waitFor(t, 60*time.Second, w.allSynced)
	running, started := c.shared.open()
	t.Logf("%d applications: %d informers running, %d started (one per application would be %d)", len(apps), running, started, oldWatches(apps))
	// Two kinds (configmaps, deployments), whatever the number of
	// applications; an informer restarted after an error may count twice.
	if running != 2 || started > 4 {
		t.Fatalf("informers running %d, started %d; want 2 and at most 4", running, started)
	}

	// Drift in one application is reported for it alone.
	for _, a := range apps {
		drain2(w.ch[a.name])
	}
	x, y := apps[10], apps[21]
	patch := []byte(`{"data":{"k":"changed"}}`)
	if _, err := c.core.CoreV1().ConfigMaps(x.ns).Patch(t.Context(), "cfg-"+x.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r := w.next(t, x.name, outOfSync)
	if len(r.Items) != 1 || r.Items[0].Object != "v1 ConfigMap "+x.ns+"/cfg-"+x.name || r.Items[0].Field != "data.k" {
		t.Fatalf("%s: items = %v", x.name, r.Items)
	}
	// A second drift, after the first was reported: by the time it is,
	// any report the first caused elsewhere has been made.
	if _, err := c.core.CoreV1().ConfigMaps(y.ns).Patch(t.Context(), "cfg-"+y.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	w.next(t, y.name, outOfSync)
	w.mu.Lock()
	for _, a := range apps {
		if a == x || a == y {
			continue
		}
		if r := w.last[a.name]; !synced(r) {
			t.Errorf("%s: report %v, want synced", a.name, r)
		}
		select {
		case r := <-w.ch[a.name]:
			t.Errorf("%s: reported again: %v", a.name, r)
		default:
		}
	}
	w.mu.Unlock()

	// The informers stop with the last watch.
	w.stop()
	if running, _ := c.shared.open(); running != 0 {
		t.Fatalf("%d informers running after the watches ended", running)
	}
}

func drain2(c chan *gv1.DriftReport) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// BenchmarkWatchManyApps watches 200 applications (a ConfigMap and a
// Deployment each, in four namespaces) from one Cluster and measures how
// long a scale of one Deployment takes to be reported.
func BenchmarkWatchManyApps(b *testing.B) {
	c := testCluster(b)
	// Without the test logger: its buffer would count in the heap.
	c, err := Open("bench", os.Getenv("GANTRY_TEST_KUBECONFIG"), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	namespaces := scratchNamespaces(b, c, 4)
	apps := appsIn(namespaces, 200, 1)
	start := time.Now()
	deployMany(b, c, apps)
	b.Logf("deployed %d applications in %s", len(apps), time.Since(start).Round(time.Millisecond))
	heapBefore := heapInUse()

	start = time.Now()
	w := watchAll(b, c, apps)
	deadline := time.Now().Add(120 * time.Second)
	for ok, why := w.allSynced(); !ok; ok, why = w.allSynced() {
		if time.Now().After(deadline) {
			b.Fatalf("not synced within 120s: %s", why)
		}
		time.Sleep(20 * time.Millisecond) // polling period
	}
	syncAll := time.Since(start)
	running, _ := c.shared.open()
	heap := heapInUse()

	var detect time.Duration
	n := 0
	for b.Loop() {
		a := apps[n%len(apps)]
		n++
		drain2(w.ch[a.name])
		t0 := time.Now()
		scale(b, c, a, 1)
		w.next(b, a.name, outOfSync)
		detect += time.Since(t0)
		scale(b, c, a, 0)
		w.next(b, a.name, synced)
	}
	mean := detect / time.Duration(n)
	b.ReportMetric(float64(mean.Microseconds())/1000, "detect-ms")
	b.ReportMetric(float64(running), "watches")
	b.ReportMetric(float64(oldWatches(apps)), "watches-per-app-design")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(heap-min(heap, heapBefore))/(1<<20), "watch-heap-MiB")
	b.Logf("%d applications: all synced %s after the watches started; %d watches open (per-application design: %d); "+
		"drift detected in %s on average over %d scales; heap in use %.1f MiB (%.1f MiB more than before watching)",
		len(apps), syncAll.Round(time.Millisecond), running, oldWatches(apps), mean.Round(time.Microsecond), n,
		float64(heap)/(1<<20), float64(heap-min(heap, heapBefore))/(1<<20))
}

func scale(tb testing.TB, c *Cluster, a manyApp, replicas int) {
	tb.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := c.core.AppsV1().Deployments(a.ns).Patch(tb.Context(), "web-"+a.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		tb.Fatal(err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
