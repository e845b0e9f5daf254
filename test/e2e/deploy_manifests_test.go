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
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The install manifests use fixed names: the namespace gantry and the
// cluster-scoped RBAC objects of the agents.
const (
	installNS          = "gantry"
	installClusterRBAC = "gantry-agent"
	installPVPrefix    = "gantry-e2e-data-"
	coordinatorSTS     = "gantry-coordinator"
	agentDeployment    = "gantry-agent"
)

// TestDeployManifests deploys deploy/kubernetes, the install manifests for
// fleets, with a Gantry deploy task: the API server must accept every
// object (schema, RBAC and the disruption budget), and the
// coordinators' StatefulSet and the agents' Deployment must become healthy
// with the image the task substituted; the agents' ServiceAccount may then
// deploy elsewhere, and the coordinators may size the agent pool. kwok nodes make
// pods Ready without running containers (and probes are not run), so this
// checks the manifests and their rollout, not the processes in them.
func TestDeployManifests(t *testing.T) {
	k := needKube(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy", "kubernetes")
	image := "registry.invalid/gantry@sha256:" + strings.Repeat("5e", 32)

	k.removeInstall(t) // a leftover of an interrupted run
	t.Cleanup(func() { k.removeInstall(t) })
	// The test cluster has no storage provisioner: volumes for the
	// coordinators' claims, bound to them in advance.
	for i := range 3 {
		k.createDataPV(t, i)
	}

	d := startKubeDev(t, k)
	pipeline := fmt.Sprintf(`name: install
tasks:
  - name: deploy
    deploy:
      cluster: local
      namespace: %s
      app: gantry
      source: {dir: %q}
      images: {gantry: %q}
      health_timeout: 60s
`, installNS, dir, image)
	start := time.Now()
	sub := gantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, pipeline), "--wait")
	if sub.code != 0 {
		t.Fatalf("deploy of deploy/kubernetes: %s\n%s", sub, k.installState(t))
	}
	t.Logf("deploy/kubernetes applied and healthy in %s", time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	sts, err := k.cs.AppsV1().StatefulSets(installNS).Get(ctx, coordinatorSTS, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get statefulset: %v", err)
	}
	if sts.Status.ReadyReplicas != 3 || sts.Status.UpdatedReplicas != 3 {
		t.Errorf("statefulset %s: %d ready, %d updated; want 3", coordinatorSTS, sts.Status.ReadyReplicas, sts.Status.UpdatedReplicas)
	}
	if got := containerImages(sts.Spec.Template.Spec); got != image {
		t.Errorf("statefulset %s image = %s, want %s", coordinatorSTS, got, image)
	}
	dep, err := k.cs.AppsV1().Deployments(installNS).Get(ctx, agentDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment: %v", err)
	}
	if !deploymentAvailable(dep) {
		t.Errorf("deployment %s is not Available: %+v", agentDeployment, dep.Status.Conditions)
	}
	if got := containerImages(dep.Spec.Template.Spec); got != image {
		t.Errorf("deployment %s image = %s, want %s", agentDeployment, got, image)
	}
	pods, err := k.cs.CoreV1().Pods(installNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=coordinator"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if got := containerImages(p.Spec); got != image {
			t.Errorf("pod %s image = %s, want %s", p.Name, got, image)
		}
	}

	// The agents' ServiceAccount may deploy an application into its own
	// namespace (what a deploy and its drift watch do), and by default
	// nowhere else: cluster-wide deploys are the component cluster-wide/.
	k.checkAccess(t, installNS, "gantry-agent", []access{
		{authzv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "watch", Group: "apps", Resource: "statefulsets", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "update", Resource: "configmaps", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "delete", Resource: "services", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "create", Resource: "namespaces"}, false},
		{authzv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "shop"}, false},
		{authzv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{authzv1.ResourceAttributes{Verb: "create", Group: "apps", Resource: "daemonsets", Namespace: "kube-system"}, false},
	})

	// The coordinators' ServiceAccount may size the agent pools in their
	// namespace (the leader's autoscaler), and nothing more.
	k.checkAccess(t, installNS, "gantry-coordinator", []access{
		{authzv1.ResourceAttributes{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "list", Group: "apps", Resource: "deployments", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: installNS}, true},
		{authzv1.ResourceAttributes{Verb: "update", Group: "apps", Resource: "deployments", Namespace: installNS}, false},
		{authzv1.ResourceAttributes{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: "shop"}, false},
		{authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: installNS}, false},
	})
	// The agents' Deployment is a pool the coordinators size
	// (TestAutoscalePoolOnQueueDepth runs the autoscaler itself).
	if dep.Labels["gantry.dev/autoscale"] != "true" || dep.Annotations["gantry.dev/min-replicas"] != "2" || dep.Annotations["gantry.dev/max-replicas"] != "10" {
		t.Errorf("deployment %s is not an autoscaled pool: labels %v, annotations %v", agentDeployment, dep.Labels, dep.Annotations)
	}
	if !slices.Contains(sts.Spec.Template.Spec.Containers[0].Args, "--autoscale=in-cluster") || sts.Spec.Template.Spec.ServiceAccountName != "gantry-coordinator" {
		t.Errorf("statefulset %s: coordinators do not autoscale (args %v, service account %q)", coordinatorSTS, sts.Spec.Template.Spec.Containers[0].Args, sts.Spec.Template.Spec.ServiceAccountName)
	}
}

// access is a request and whether the service account may make it.
type access struct {
	a       authzv1.ResourceAttributes
	allowed bool
}

// checkAccess asks the API server, for each request, whether the service
// account ns/sa may make it, and fails the test where it disagrees.
func (k kubeEnv) checkAccess(t *testing.T, ns, sa string, cases []access) {
	t.Helper()
	for _, c := range cases {
		a := c.a
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + ns + ":" + sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &a,
		}}
		got, err := k.cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("subject access review: %v", err)
		}
		if got.Status.Allowed != c.allowed {
			t.Errorf("%s may %s %s %s/%s in %q: %v, want %v (%s)", sa, a.Verb, a.Group, a.Resource, a.Subresource, a.Namespace, got.Status.Allowed, c.allowed, got.Status.Reason)
		}
	}
}

// containerImages is the images of a pod spec's containers, comma-separated.
func containerImages(spec corev1.PodSpec) string {
	var out []string
	for _, c := range spec.Containers {
		out = append(out, c.Image)
	}
	return strings.Join(out, ",")
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// createDataPV creates a volume bound in advance to the claim of
// coordinator i.
func (k kubeEnv) createDataPV(t *testing.T, i int) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", installPVPrefix, i)},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: installNS, Name: fmt.Sprintf("data-%s-%d", coordinatorSTS, i),
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: fmt.Sprintf("/var/lib/gantry-e2e/%d", i)},
			},
		},
	}
	if _, err := k.cs.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create persistent volume %s: %v", pv.Name, err)
	}
}

// removeInstall deletes what deploying deploy/kubernetes creates (the
// namespace with everything in it, the cluster-scoped RBAC objects) and
// the test's volumes, and waits until they are gone.
func (k kubeEnv) removeInstall(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ignore := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", what, err)
		}
	}
	ignore("namespace "+installNS, k.cs.CoreV1().Namespaces().Delete(ctx, installNS, metav1.DeleteOptions{}))
	ignore("clusterrolebinding", k.cs.RbacV1().ClusterRoleBindings().Delete(ctx, installClusterRBAC, metav1.DeleteOptions{}))
	ignore("clusterrole", k.cs.RbacV1().ClusterRoles().Delete(ctx, installClusterRBAC, metav1.DeleteOptions{}))
	for i := range 3 {
		ignore("persistent volume", k.cs.CoreV1().PersistentVolumes().Delete(ctx, fmt.Sprintf("%s%d", installPVPrefix, i), metav1.DeleteOptions{}))
	}
	waitFor(t, 90*time.Second, func() (bool, string) {
		if _, err := k.cs.CoreV1().Namespaces().Get(ctx, installNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Sprintf("namespace %s still there (%v)", installNS, err)
		}
		for i := range 3 {
			name := fmt.Sprintf("%s%d", installPVPrefix, i)
			if _, err := k.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, fmt.Sprintf("persistent volume %s still there (%v)", name, err)
			}
		}
		return true, ""
	})
}

// installState describes the workloads and pods of the install, for a
// failure message.
func (k kubeEnv) installState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	if sts, err := k.cs.AppsV1().StatefulSets(installNS).Get(ctx, coordinatorSTS, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(&b, "statefulset %s: %d ready, %d current\n", sts.Name, sts.Status.ReadyReplicas, sts.Status.CurrentReplicas)
	}
	if dep, err := k.cs.AppsV1().Deployments(installNS).Get(ctx, agentDeployment, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(&b, "deployment %s: %d ready, conditions %+v\n", dep.Name, dep.Status.ReadyReplicas, dep.Status.Conditions)
	}
	if pvcs, err := k.cs.CoreV1().PersistentVolumeClaims(installNS).List(ctx, metav1.ListOptions{}); err == nil {
		for _, c := range pvcs.Items {
			fmt.Fprintf(&b, "pvc %s: %s volume %q\n", c.Name, c.Status.Phase, c.Spec.VolumeName)
		}
	}
	if pods, err := k.cs.CoreV1().Pods(installNS).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s: %s node %q conditions %+v\n", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.Conditions)
		}
	}
	if evs, err := k.cs.CoreV1().Events(installNS).List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}
