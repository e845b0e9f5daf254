package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

var deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

func fakeDeployment(ns, name, app string, replicas int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata": map[string]any{
			"name": name, "namespace": ns,
			"labels": map[string]any{LabelApp: app, LabelManagedBy: managedByGantry},
		},
		"spec": map[string]any{"replicas": replicas},
	}}
}

// signal is a subscription's callbacks, observable by a test.
type signal struct {
	changed chan struct{}
	errs    chan error
}

func newSignal() *signal {
	return &signal{changed: make(chan struct{}, 1), errs: make(chan error, 1)}
}

func (s *signal) onChange() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *signal) onError(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// TestSharedCacheForbiddenClusterWide is an agent with namespace rights
// only: the cluster-wide list of deployments is refused, the cache moves
// to one informer per namespace without reporting an error, and a refusal
// in a namespace is reported to the subscriber reading it.
func TestSharedCacheForbiddenClusterWide(t *testing.T) {
	t.Parallel()
	dyn := fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{deployments: "DeploymentList"},
		fakeDeployment("a", "web", "one", 2), fakeDeployment("b", "web", "two", 2))
	forbidden := func(ns string) bool { return ns == "" || ns == "c" }
	refuse := apierrors.NewForbidden(deployments.GroupResource(), "", errors.New("namespace rights only"))
	dyn.PrependReactor("list", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if forbidden(a.GetNamespace()) {
			return true, nil, refuse
		}
		return false, nil, nil
	})
	dyn.PrependWatchReactor("deployments", func(a k8stesting.Action) (bool, watch.Interface, error) {
		if forbidden(a.GetNamespace()) {
			return true, nil, refuse
		}
		return false, nil, nil
	})
	sc := newSharedCache(dyn, zaptest.NewLogger(t))

	one, two := newSignal(), newSignal()
	s1 := sc.subscribe("one", one.onChange, one.onError)
	s1.watch([]liveKey{{gvr: deployments, namespace: "a"}})
	s2 := sc.subscribe("two", two.onChange, two.onError)
	s2.watch([]liveKey{{gvr: deployments, namespace: "b"}})
	waitFor(t, 10*time.Second, func() (bool, string) {
		return s1.synced() && s2.synced(), "subscriptions not synced"
	})
	if _, ok := s1.get(liveKey{gvr: deployments, namespace: "a"}, objRef{Name: "web"}); !ok {
		t.Fatal("one does not see a/web")
	}
	if _, ok := s2.get(liveKey{gvr: deployments, namespace: "a"}, objRef{Name: "web"}); ok {
		t.Fatal("two sees a/web, labelled for one")
	}
	running, started := sc.open()
	if running != 2 || started != 3 {
		t.Fatalf("informers running %d, started %d; want 2 (a, b) and 3 (cluster-wide, a, b)", running, started)
	}
	sc.mu.Lock()
	perNamespace := sc.perNamespace[deployments]
	sc.mu.Unlock()
	if !perNamespace {
		t.Fatal("deployments not moved to per-namespace informers")
	}

	// An event wakes the application it is labelled for, not the other.
	drain(one.changed)
	drain(two.changed)
	if _, err := dyn.Resource(deployments).Namespace("a").Update(t.Context(), fakeDeployment("a", "web", "one", 1), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-one.changed:
	case <-time.After(10 * time.Second):
		t.Fatal("one not woken by its deployment's update")
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		u, _ := s1.get(liveKey{gvr: deployments, namespace: "a"}, objRef{Name: "web"})
		r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
		return r == 1, fmt.Sprintf("replicas %d", r)
	})
	select {
	case <-two.changed:
		t.Fatal("two woken by one's deployment")
	default:
	}
	for _, s := range []*signal{one, two} {
		select {
		case err := <-s.errs:
			t.Fatalf("error reported: %v", err)
		default:
		}
	}

	// Refused in a namespace too: nothing left to fall back to.
	three := newSignal()
	s3 := sc.subscribe("three", three.onChange, three.onError)
	s3.watch([]liveKey{{gvr: deployments, namespace: "c"}})
	select {
	case err := <-three.errs:
		if !apierrors.IsForbidden(err) {
			t.Fatalf("error = %v, want Forbidden", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("refusal in namespace c not reported")
	}

	s1.close()
	s2.close()
	s3.close()
	if running, _ := sc.open(); running != 0 {
		t.Fatalf("%d informers running after the last subscriber left", running)
	}
}

func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// TestWatchWithNamespaceRightsOnly watches through a user that may only
// read its application's namespace: the cluster-wide lists are refused and
// the shared cache watches the namespace instead.
func TestWatchWithNamespaceRightsOnly(t *testing.T) {
	t.Parallel()
	admin := testCluster(t)
	ns := testNamespace(t, admin)
	mustSucceed(t, admin, ns, deployNow(t, admin, inlineSpec("demo", ns, configMapYAML("settings")), 1))

	const user = "gantry-test-namespace-reader"
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}}
	if _, err := admin.core.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"}}
	if _, err := admin.core.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The admin's kubeconfig, impersonating the reader.
	cfg, err := clientcmd.LoadFromFile(os.Getenv("GANTRY_TEST_KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.AuthInfos {
		u.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	c, err := Open("reader", path, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of the binding shortly after it is created.
	waitFor(t, 10*time.Second, func() (bool, string) {
		_, err := c.core.CoreV1().ConfigMaps(ns).Get(t.Context(), inventoryName("demo"), metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	ctx, cancel := context.WithCancel(t.Context())
	reports := make(chan *gv1.DriftReport, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, "demo", ns, func(r *gv1.DriftReport) { reports <- r })
	}()
	defer func() { cancel(); <-done }()
	timeout := time.After(20 * time.Second)
	for synced := false; !synced; {
		select {
		case r := <-reports:
			t.Logf("report: sync %v health %v error %q", r.Sync, r.Health, r.Error)
			if r.Error != "" {
				t.Fatalf("error reported: %s", r.Error)
			}
			synced = r.Sync == gv1.SyncStatus_SYNC_STATUS_SYNCED
		case <-timeout:
			t.Fatal("no synced report within 20s")
		}
	}
	c.shared.mu.Lock()
	perNamespace := c.shared.perNamespace[configMaps]
	_, nsInformer := c.shared.informers[liveKey{gvr: configMaps, namespace: ns}]
	c.shared.mu.Unlock()
	if !perNamespace || !nsInformer {
		t.Fatalf("configmaps per namespace %v, informer on %s %v; want both", perNamespace, ns, nsInformer)
	}
}
