package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// The tests in this file use the helm command that
//
//	eval "$(scripts/testenv.sh up helm)"
//
// builds and exports as HELM; without it they are skipped. The install
// test also needs the Kubernetes control plane (up kube).

// needHelm returns the path of the helm command.
func needHelm(t *testing.T) string {
	t.Helper()
	skipShort(t)
	h := os.Getenv("HELM")
	if h == "" {
		t.Skip("HELM is not set (eval \"$(scripts/testenv.sh up helm)\")")
	}
	return h
}

// chartDir is deploy/helm/gantry.
func chartDir(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy", "helm", "gantry")
}

// runHelm runs helm with its configuration, cache and data in a directory
// of the test's, and returns its output or an error carrying it.
func runHelm(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func mustHelm(t *testing.T, helm string, args ...string) string {
	t.Helper()
	out, err := runHelm(t, helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeValues writes a values file into a fresh temporary directory.
func writeValues(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmTestValues: two pools, one of them with a fixed size, no
// NetworkPolicies, cluster-wide RBAC for the agents, an image by digest,
// five coordinators on a named StorageClass.
const helmTestValues = `image:
  repository: registry.example/gantry
  digest: sha256:5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e
coordinator:
  replicas: 5
  storage: {size: 20Gi, storageClassName: fast-ssd}
  httpHosts: [gantry.example.com]
agents:
  pools:
    - name: build
      labels: {os: linux, pool: build}
      slots: 8
      clusters: [prod, staging]
      replicas: {min: 1, max: 20}
      autoscale: {enabled: true, scaleDownAfter: 10m}
      buildkitAddr: tcp://buildkitd:1234
      resources:
        requests: {cpu: "2", memory: 4Gi}
    - name: deploy
      labels: {pool: deploy}
      clusters: [local]
      replicas: {min: 3, max: 3}
      autoscale: {enabled: false}
      joinSecret: gantry-join-deploy
networkPolicies: {enabled: false}
rbac: {clusterWide: true}
`

// manifests is the objects of rendered YAML, by "Kind/name".
type manifests map[string]runtime.Object

// decodeManifests decodes a stream of YAML documents into typed objects.
func decodeManifests(t *testing.T, data []byte) manifests {
	t.Helper()
	out := manifests{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read YAML: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode %s: %v", doc, err)
		}
		name := obj.(metav1.Object).GetName()
		key := gvk.Kind + "/" + name
		if _, dup := out[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		out[key] = obj
	}
}

// stripComments drops the comment lines of a YAML document.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// get returns the object key, failing the test if it was not rendered.
func get[T runtime.Object](t *testing.T, m manifests, key string) T {
	t.Helper()
	o, ok := m[key]
	if !ok {
		t.Fatalf("%s was not rendered; have %v", key, m.keys())
	}
	v, ok := o.(T)
	if !ok {
		t.Fatalf("%s is a %T", key, o)
	}
	return v
}

func (m manifests) keys() []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// kinds counts the rendered objects of a kind.
func (m manifests) kinds(kind string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, kind+"/") {
			n++
		}
	}
	return n
}

// renderChart renders the chart into namespace ns with the values files.
func renderChart(t *testing.T, helm, ns string, valueFiles ...string) manifests {
	t.Helper()
	args := []string{"template", "gantry", chartDir(t), "--namespace", ns}
	for _, f := range valueFiles {
		args = append(args, "--values", f)
	}
	return decodeManifests(t, []byte(mustHelm(t, helm, args...)))
}

// kustomizeBase reads deploy/kubernetes's manifests (plain YAML, namespace
// gantry).
func kustomizeBase(t *testing.T) manifests {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	m := manifests{}
	files, err := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "deploy", "kubernetes", "cluster-wide", "cluster-role.yaml"))
	for _, f := range files {
		if strings.HasSuffix(f, "kustomization.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range decodeManifests(t, data) {
			m[k] = v
		}
	}
	return m
}

func TestHelmLint(t *testing.T) {
	helm := needHelm(t)
	dir := chartDir(t)
	for _, args := range [][]string{
		{"lint", "--strict", dir},
		{"lint", "--strict", dir, "--values", writeValues(t, helmTestValues)},
	} {
		out := mustHelm(t, helm, args...)
		if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
			t.Errorf("helm %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestHelmTemplate renders the chart and checks what it makes: with the
// default values the same install as deploy/kubernetes (compared field by
// field: one agent pool the coordinators size, their Role, the security
// contexts, Services, RBAC, NetworkPolicies), and no autoscaler object;
// with two pools, the pools' Deployments, the autoscaling contract,
// cluster-wide RBAC and no NetworkPolicies; with no autoscaled pool,
// coordinators without Kubernetes credentials. Values the chart cannot
// honour are refused.
func TestHelmTemplate(t *testing.T) {
	helm := needHelm(t)
	base := kustomizeBase(t)

	t.Run("defaults", func(t *testing.T) {
		m := renderChart(t, helm, installNS)
		if n := m.kinds("HorizontalPodAutoscaler"); n != 0 {
			t.Errorf("%d HorizontalPodAutoscalers rendered; the coordinators size the pools", n)
		}
		if n := m.kinds("ClusterRole") + m.kinds("ClusterRoleBinding"); n != 0 {
			t.Errorf("cluster-wide RBAC rendered by default: %v", m.keys())
		}
		if n := m.kinds("Deployment"); n != 1 {
			t.Errorf("%d Deployments, want the one default pool", n)
		}
		for k, o := range m {
			meta := o.(metav1.Object)
			if meta.GetNamespace() != installNS {
				t.Errorf("%s in namespace %q, want %q", k, meta.GetNamespace(), installNS)
			}
			l := meta.GetLabels()
			if l["app.kubernetes.io/name"] != "gantry" || (l["app.kubernetes.io/component"] != "coordinator" && l["app.kubernetes.io/component"] != "agent") {
				t.Errorf("%s labels %v: want app.kubernetes.io/name gantry and a component", k, l)
			}
		}

		// The coordinators: deploy/kubernetes's StatefulSet, which sizes
		// the agent pools.
		want := get[*appsv1.StatefulSet](t, base, "StatefulSet/gantry-coordinator")
		sts := get[*appsv1.StatefulSet](t, m, "StatefulSet/gantry-coordinator")
		if *sts.Spec.Replicas != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("statefulset: %d replicas, %s; want 3, Parallel", *sts.Spec.Replicas, sts.Spec.PodManagementPolicy)
		}
		c, wc := sts.Spec.Template.Spec.Containers[0], want.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, wc.Args) {
			t.Errorf("coordinator args:\n got %q\nwant %q", c.Args, wc.Args)
		}
		if !slices.Contains(c.Args, "--autoscale=in-cluster") {
			t.Errorf("coordinator args without --autoscale=in-cluster: %q", c.Args)
		}
		sameField(t, "coordinator env", c.Env, wc.Env)
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
		}) {
			t.Errorf("coordinator env without POD_NAMESPACE from metadata.namespace: %+v", c.Env)
		}
		sameField(t, "coordinator ports", c.Ports, wc.Ports)
		sameField(t, "coordinator readiness", c.ReadinessProbe, wc.ReadinessProbe)
		sameField(t, "coordinator liveness", c.LivenessProbe, wc.LivenessProbe)
		sameField(t, "coordinator resources", c.Resources, wc.Resources)
		sameField(t, "coordinator security context", c.SecurityContext, wc.SecurityContext)
		sameField(t, "coordinator mounts", c.VolumeMounts, wc.VolumeMounts)
		ps, wps := sts.Spec.Template.Spec, want.Spec.Template.Spec
		sameField(t, "coordinator pod security context", ps.SecurityContext, wps.SecurityContext)
		sameField(t, "coordinator volumes", ps.Volumes, wps.Volumes)
		sameField(t, "coordinator affinity", ps.Affinity, wps.Affinity)
		sameField(t, "coordinator grace", ps.TerminationGracePeriodSeconds, wps.TerminationGracePeriodSeconds)
		sameField(t, "coordinator claims", sts.Spec.VolumeClaimTemplates[0].Spec, want.Spec.VolumeClaimTemplates[0].Spec)
		sameField(t, "coordinator selector", sts.Spec.Selector, want.Spec.Selector)
		if ps.ServiceAccountName != "gantry-coordinator" || ps.AutomountServiceAccountToken == nil || !*ps.AutomountServiceAccountToken {
			t.Errorf("coordinators run as %q with automount %v; want gantry-coordinator with its token (they scale the pools)", ps.ServiceAccountName, ps.AutomountServiceAccountToken)
		}
		role := get[*rbacv1.Role](t, m, "Role/gantry-coordinator")
		sameField(t, "coordinator role", role.Rules, []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, Verbs: []string{"get", "update", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}},
		})
		sameField(t, "coordinator role", role.Rules, get[*rbacv1.Role](t, base, "Role/gantry-coordinator").Rules)
		rb := get[*rbacv1.RoleBinding](t, m, "RoleBinding/gantry-coordinator")
		if rb.RoleRef.Name != "gantry-coordinator" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "gantry-coordinator" || rb.Subjects[0].Namespace != installNS {
			t.Errorf("coordinator role binding: %+v %+v", rb.RoleRef, rb.Subjects)
		}

		// The one pool: deploy/kubernetes's agents (with --slots), sized by
		// the coordinators within the same bounds.
		wantDep := get[*appsv1.Deployment](t, base, "Deployment/gantry-agent")
		dep := get[*appsv1.Deployment](t, m, "Deployment/gantry-agent-default")
		checkAutoscaled(t, dep, "2", "10", "5m")
		checkAutoscaled(t, wantDep, "2", "10", "5m")
		a, wa := dep.Spec.Template.Spec.Containers[0], wantDep.Spec.Template.Spec.Containers[0]
		wantArgs := slices.Clone(wa.Args)
		wantArgs = slices.Insert(wantArgs, slices.Index(wantArgs, "--label=os=linux")+1, "--slots=4")
		if !slices.Equal(a.Args, wantArgs) {
			t.Errorf("agent args:\n got %q\nwant %q", a.Args, wantArgs)
		}
		sameField(t, "agent env", a.Env, wa.Env)
		sameField(t, "agent resources", a.Resources, wa.Resources)
		sameField(t, "agent security context", a.SecurityContext, wa.SecurityContext)
		sameField(t, "agent mounts", a.VolumeMounts, wa.VolumeMounts)
		dps, wdps := dep.Spec.Template.Spec, wantDep.Spec.Template.Spec
		sameField(t, "agent pod security context", dps.SecurityContext, wdps.SecurityContext)
		sameField(t, "agent volumes", dps.Volumes, wdps.Volumes)
		sameField(t, "agent grace", dps.TerminationGracePeriodSeconds, wdps.TerminationGracePeriodSeconds)
		sameField(t, "agent strategy", dep.Spec.Strategy, wantDep.Spec.Strategy)
		if dps.ServiceAccountName != "gantry-agent" {
			t.Errorf("agents run as %q, want gantry-agent", dps.ServiceAccountName)
		}

		// Services, disruption budget, the agents' RBAC and the
		// NetworkPolicies as deploy/kubernetes has them.
		for _, name := range []string{"gantry-coordinator", "gantry-api"} {
			sameField(t, "service "+name, get[*corev1.Service](t, m, "Service/"+name).Spec, get[*corev1.Service](t, base, "Service/"+name).Spec)
		}
		sameField(t, "disruption budget", get[*policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget/gantry-coordinator").Spec,
			get[*policyv1.PodDisruptionBudget](t, base, "PodDisruptionBudget/gantry-coordinator").Spec)
		sameField(t, "agent role", get[*rbacv1.Role](t, m, "Role/gantry-agent").Rules, get[*rbacv1.Role](t, base, "Role/gantry-agent").Rules)
		sameField(t, "agent role binding", get[*rbacv1.RoleBinding](t, m, "RoleBinding/gantry-agent").Subjects,
			get[*rbacv1.RoleBinding](t, base, "RoleBinding/gantry-agent").Subjects)
		get[*corev1.ServiceAccount](t, m, "ServiceAccount/gantry-agent")
		for _, name := range []string{"gantry-coordinator", "gantry-agent"} {
			sameField(t, "network policy "+name, get[*networkingv1.NetworkPolicy](t, m, "NetworkPolicy/"+name).Spec,
				get[*networkingv1.NetworkPolicy](t, base, "NetworkPolicy/"+name).Spec)
		}
	})

	t.Run("two-pools", func(t *testing.T) {
		const ns = "ci"
		m := renderChart(t, helm, ns, writeValues(t, helmTestValues))
		if n := m.kinds("NetworkPolicy"); n != 0 {
			t.Errorf("%d NetworkPolicies rendered with networkPolicies.enabled false", n)
		}
		if n := m.kinds("HorizontalPodAutoscaler"); n != 0 {
			t.Errorf("%d HorizontalPodAutoscalers rendered", n)
		}
		if n := m.kinds("Deployment"); n != 2 {
			t.Errorf("%d Deployments, want 2 pools: %v", n, m.keys())
		}
		image := "registry.example/gantry@sha256:" + strings.Repeat("5e", 32)

		build := get[*appsv1.Deployment](t, m, "Deployment/gantry-agent-build")
		checkAutoscaled(t, build, "1", "20", "10m")
		ba := build.Spec.Template.Spec.Containers[0]
		for _, arg := range []string{"--kube=prod=in-cluster", "--kube=staging=in-cluster", "--label=os=linux",
			"--label=pool=build", "--slots=8", "--buildkit-addr=tcp://buildkitd:1234", "--nats=tls://gantry-api:4222",
			"--coordinator=gantry-api:7420", "--tls-ca=/etc/gantry/ca/ca.pem"} {
			if !slices.Contains(ba.Args, arg) {
				t.Errorf("pool build: no %s in %q", arg, ba.Args)
			}
		}
		if ba.Image != image {
			t.Errorf("pool build image %s, want %s", ba.Image, image)
		}
		if got := ba.Resources.Requests[corev1.ResourceCPU]; got.Cmp(resource.MustParse("2")) != 0 {
			t.Errorf("pool build cpu request %s, want 2", got.String())
		}
		if got := joinSecret(ba); got != "gantry-join" {
			t.Errorf("pool build join token from %q, want gantry-join", got)
		}

		deploy := get[*appsv1.Deployment](t, m, "Deployment/gantry-agent-deploy")
		if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas != 3 {
			t.Errorf("pool deploy (autoscale off): replicas %v, want 3", deploy.Spec.Replicas)
		}
		if _, ok := deploy.Labels["gantry.dev/autoscale"]; ok {
			t.Errorf("pool deploy (autoscale off) is labelled for the autoscaler: %v", deploy.Labels)
		}
		for k := range deploy.Annotations {
			if strings.HasPrefix(k, "gantry.dev/") {
				t.Errorf("pool deploy (autoscale off) has annotation %s", k)
			}
		}
		da := deploy.Spec.Template.Spec.Containers[0]
		if !slices.Contains(da.Args, "--kube=local=in-cluster") || !slices.Contains(da.Args, "--label=pool=deploy") {
			t.Errorf("pool deploy args %q", da.Args)
		}
		if got := joinSecret(da); got != "gantry-join-deploy" {
			t.Errorf("pool deploy join token from %q, want gantry-join-deploy", got)
		}
		// The pools' selectors do not overlap.
		if build.Spec.Selector.MatchLabels["gantry.dev/pool"] != "build" || deploy.Spec.Selector.MatchLabels["gantry.dev/pool"] != "deploy" {
			t.Errorf("pool selectors %v and %v", build.Spec.Selector.MatchLabels, deploy.Spec.Selector.MatchLabels)
		}

		sts := get[*appsv1.StatefulSet](t, m, "StatefulSet/gantry-coordinator")
		c := sts.Spec.Template.Spec.Containers[0]
		if *sts.Spec.Replicas != 5 {
			t.Errorf("statefulset replicas %d, want 5", *sts.Spec.Replicas)
		}
		if c.Image != image {
			t.Errorf("coordinator image %s, want %s", c.Image, image)
		}
		peers, _ := flagValue(c.Args, "--peers")
		if n := len(strings.Split(peers, ",")); n != 5 || !strings.Contains(peers, "gantry-coordinator-4=gantry-coordinator-4.gantry-coordinator:7422") {
			t.Errorf("--peers=%s: want the 5 pods", peers)
		}
		hosts, _ := flagValue(c.Args, "--http-hosts")
		if hosts != "gantry-api,gantry-api.ci,gantry-api.ci.svc,gantry-api.ci.svc.cluster.local,gantry.example.com" {
			t.Errorf("--http-hosts=%s", hosts)
		}
		if !slices.Contains(c.Args, "--autoscale=in-cluster") {
			t.Errorf("coordinator args without --autoscale=in-cluster while pool build autoscales: %q", c.Args)
		}
		claim := sts.Spec.VolumeClaimTemplates[0].Spec
		if claim.StorageClassName == nil || *claim.StorageClassName != "fast-ssd" || claim.Resources.Requests.Storage().Cmp(resource.MustParse("20Gi")) != 0 {
			t.Errorf("coordinator claim: class %v, %s; want fast-ssd, 20Gi", claim.StorageClassName, claim.Resources.Requests.Storage())
		}
		checkTLSMounted(t, sts)

		cr := get[*rbacv1.ClusterRole](t, m, "ClusterRole/gantry-agent-"+ns)
		if !allows(cr.Rules, "", "namespaces", "create") || !allows(cr.Rules, "apiextensions.k8s.io", "customresourcedefinitions", "create") ||
			!allows(cr.Rules, "apps", "deployments", "patch") {
			t.Errorf("cluster role: %+v", cr.Rules)
		}
		sameField(t, "cluster role vs deploy/kubernetes/cluster-wide", sortedRules(cr.Rules), sortedRules(get[*rbacv1.ClusterRole](t, base, "ClusterRole/gantry-agent").Rules))
		crb := get[*rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding/gantry-agent-"+ns)
		if crb.RoleRef.Name != cr.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Name != "gantry-agent" || crb.Subjects[0].Namespace != ns {
			t.Errorf("cluster role binding: %+v %+v", crb.RoleRef, crb.Subjects)
		}
		get[*rbacv1.Role](t, m, "Role/gantry-agent") // the namespaced Role stays
	})

	t.Run("no-autoscale", func(t *testing.T) {
		m := renderChart(t, helm, "fixed", writeValues(t, `agents:
  pools:
    - {name: a, clusters: [local], replicas: {min: 2, max: 4}, autoscale: {enabled: false}}
`))
		sts := get[*appsv1.StatefulSet](t, m, "StatefulSet/gantry-coordinator")
		c, ps := sts.Spec.Template.Spec.Containers[0], sts.Spec.Template.Spec
		if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--autoscale") }) {
			t.Errorf("no pool autoscales, yet the coordinators scale: %q", c.Args)
		}
		if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" }) {
			t.Errorf("POD_NAMESPACE set without autoscaling")
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("coordinators get a Kubernetes token though they never call the API")
		}
		if _, ok := m["Role/gantry-coordinator"]; ok {
			t.Errorf("coordinator Role rendered without autoscaling")
		}
		if d := get[*appsv1.Deployment](t, m, "Deployment/gantry-agent-a"); d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("fixed pool replicas %v, want its min 2", d.Spec.Replicas)
		}
		checkTLSMounted(t, sts)
	})

	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct{ values, why string }{
			{"agents: {pools: [{name: Build}]}", "upper-case pool name"},
			{"agents: {pools: [{name: a, replicas: {min: 5, max: 2}}]}", "max below min"},
			{"agents: {pools: [{name: a}, {name: a}]}", "two pools of one name"},
			{"agents: {pools: [{name: a, autoscale: {scaleDownAfter: soon}}]}", "a duration that is not one"},
			{"coordinator: {replicas: 0}", "no coordinators"},
			{"networkPolicy: {enabled: false}", "a misspelt key"},
		} {
			if out, err := runHelm(t, helm, "template", "gantry", chartDir(t), "--values", writeValues(t, c.values)); err == nil {
				t.Errorf("%s (%s) rendered:\n%.400s", c.values, c.why, out)
			}
		}
	})
}

// checkAutoscaled checks a pool's Deployment carries the autoscaling
// contract and leaves its replica count to the coordinators.
func checkAutoscaled(t *testing.T, d *appsv1.Deployment, min, max, after string) {
	t.Helper()
	if d.Labels["gantry.dev/autoscale"] != "true" {
		t.Errorf("%s: label gantry.dev/autoscale = %q, want true", d.Name, d.Labels["gantry.dev/autoscale"])
	}
	for k, v := range map[string]string{"gantry.dev/min-replicas": min, "gantry.dev/max-replicas": max, "gantry.dev/scale-down-after": after} {
		if d.Annotations[k] != v {
			t.Errorf("%s: annotation %s = %q, want %q", d.Name, k, d.Annotations[k], v)
		}
	}
	if d.Spec.Replicas != nil {
		t.Errorf("%s: replicas %d set; the coordinators own the count", d.Name, *d.Spec.Replicas)
	}
}

// checkTLSMounted checks the coordinators read their certificates, CA key,
// bootstrap token and keyring from the Secrets, mounted where the
// arguments point.
func checkTLSMounted(t *testing.T, sts *appsv1.StatefulSet) {
	t.Helper()
	ps := sts.Spec.Template.Spec
	c := ps.Containers[0]
	secretOf := map[string]string{}
	for _, v := range ps.Volumes {
		if v.Secret != nil {
			secretOf[v.Name] = v.Secret.SecretName
		}
	}
	mountOf := map[string]string{}
	for _, m := range c.VolumeMounts {
		if s, ok := secretOf[m.Name]; ok {
			if !m.ReadOnly {
				t.Errorf("secret volume %s mounted writable", m.Name)
			}
			mountOf[m.MountPath] = s
		}
	}
	for flag, secret := range map[string]string{
		"--tls-cert": "gantry-tls", "--tls-key": "gantry-tls", "--tls-ca": "gantry-tls", "--tls-ca-key": "gantry-tls",
		"--bootstrap-token-file": "gantry-bootstrap", "--secret-keys": "gantry-secret-keys",
	} {
		path, ok := flagValue(c.Args, flag)
		if !ok {
			t.Errorf("coordinator without %s", flag)
			continue
		}
		if got := mountOf[filepath.Dir(path)]; got != secret {
			t.Errorf("%s=%s: directory holds Secret %q, want %q", flag, path, got, secret)
		}
	}
}

// joinSecret is the Secret the container's GANTRY_JOIN_TOKEN comes from.
func joinSecret(c corev1.Container) string {
	for _, e := range c.Env {
		if e.Name == "GANTRY_JOIN_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef.Name
		}
	}
	return ""
}

// allows reports whether rules grant verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, res, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// sortedRules is rules as one (group, resource, verbs) line each, sorted,
// so that equal permissions compare equal however they are grouped.
func sortedRules(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				v := slices.Clone(r.Verbs)
				slices.Sort(v)
				out = append(out, fmt.Sprintf("%s/%s: %s", g, res, strings.Join(v, ",")))
			}
		}
	}
	slices.Sort(out)
	return out
}

// sameField fails the test when got and want differ semantically.
func sameField(t *testing.T, what string, got, want any) {
	t.Helper()
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("%s differs from deploy/kubernetes:\n got %+v\nwant %+v", what, got, want)
	}
}

// TestHelmInstall installs the chart with helm into a fresh namespace of
// the test control plane (kwok nodes: pods become Running without
// containers, so this checks the objects and their rollout, not the
// processes), with the Secrets it names made first as deploy/README.md
// says: the coordinators' StatefulSet and both pools' Deployments must
// report ready replicas, and the coordinators' ServiceAccount may scale
// the pools in that namespace only. Then helm uninstall removes them.
func TestHelmInstall(t *testing.T) {
	helm := needHelm(t)
	k := needKube(t)
	ctx := context.Background()
	ns := k.namespace(t, "gantry-helm")
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The Secrets, made with gantry's own commands.
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	runCLI(t, "tls", "ca", "create", "--dir", tlsDir)
	runCLI(t, "tls", "cert", "create", "--server", "gantry-coordinator", "--dir", tlsDir,
		"--dns", "localhost,gantry-api,gantry-api."+ns+",gantry-api."+ns+".svc,gantry-coordinator-0.gantry-coordinator,gantry-coordinator-1.gantry-coordinator,gantry-coordinator-2.gantry-coordinator",
		"--ip", "127.0.0.1")
	runCLI(t, "secret", "keygen", filepath.Join(dir, "secret-keys"))
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, data := range map[string]map[string][]byte{
		"gantry-tls": {
			"ca.pem": read(filepath.Join(tlsDir, "ca.pem")), "ca-key.pem": read(filepath.Join(tlsDir, "ca-key.pem")),
			"server.pem": read(filepath.Join(tlsDir, "gantry-coordinator.pem")), "server-key.pem": read(filepath.Join(tlsDir, "gantry-coordinator-key.pem")),
		},
		"gantry-bootstrap":   {"token": []byte(runCLI(t, "token", "generate"))},
		"gantry-secret-keys": {"keys": read(filepath.Join(dir, "secret-keys"))},
		"gantry-join":        {"token": []byte("gjoin_not-a-real-token")},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
		if _, err := k.cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create secret %s: %v", name, err)
		}
	}
	// No storage provisioner here: volumes bound in advance to the claims.
	for i := range 3 {
		pv := coordinatorVolume(ns, i, fmt.Sprintf("/var/lib/gantry-e2e/%s/%d", ns, i))
		if _, err := k.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create persistent volume: %v", err)
		}
		t.Cleanup(func() {
			_ = k.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
		})
	}

	// Two pools: one the coordinators size (created with Kubernetes' default
	// of one replica; no coordinator runs here to change it), one fixed at two.
	values := writeValues(t, `image: {repository: registry.invalid/gantry, tag: e2e}
agents:
  pools:
    - {name: default, labels: {os: linux}, clusters: [local], replicas: {min: 1, max: 5}}
    - {name: fixed, labels: {pool: fixed}, clusters: [local], replicas: {min: 2, max: 2}, autoscale: {enabled: false}}
`)
	helmArgs := func(args ...string) []string {
		return append(args, "--namespace", ns, "--kubeconfig", k.kubeconfig)
	}
	mustHelm(t, helm, helmArgs("install", "gantry", chartDir(t), "--values", values)...)
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_, _ = runHelm(t, helm, helmArgs("uninstall", "gantry")...)
		}
	})

	pools := []string{"gantry-agent-default", "gantry-agent-fixed"}
	waitFor(t, 120*time.Second, func() (bool, string) {
		sts, err := k.cs.AppsV1().StatefulSets(ns).Get(ctx, coordinatorSTS, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if sts.Status.ReadyReplicas != 3 {
			return false, fmt.Sprintf("statefulset: %d of 3 ready\n%s", sts.Status.ReadyReplicas, helmInstallState(k, ns))
		}
		for _, name := range pools {
			d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if d.Spec.Replicas == nil || d.Status.ReadyReplicas != *d.Spec.Replicas || !deploymentAvailable(d) {
				return false, fmt.Sprintf("deployment %s: %d ready of %v\n%s", name, d.Status.ReadyReplicas, d.Spec.Replicas, helmInstallState(k, ns))
			}
		}
		return true, ""
	})
	for name, want := range map[string]int32{"gantry-agent-default": 1, "gantry-agent-fixed": 2} {
		d, err := k.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != want {
			t.Errorf("deployment %s: %d ready, want %d", name, d.Status.ReadyReplicas, want)
		}
	}

	// The coordinators' ServiceAccount may size the pools here, and
	// nothing elsewhere.
	k.checkAccess(t, ns, "gantry-coordinator", []access{
		{authzv1.ResourceAttributes{Verb: "list", Group: "apps", Resource: "deployments", Namespace: ns}, true},
		{authzv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: ns}, true},
		{authzv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: ns}, true},
		{authzv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: ns}, false},
		{authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: ns}, false},
		{authzv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: "default"}, false},
	})

	mustHelm(t, helm, helmArgs("uninstall", "gantry")...)
	uninstalled = true
	waitFor(t, 60*time.Second, func() (bool, string) {
		if _, err := k.cs.AppsV1().StatefulSets(ns).Get(ctx, coordinatorSTS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Sprintf("statefulset still there (%v)", err)
		}
		for _, name := range pools {
			if _, err := k.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, fmt.Sprintf("deployment %s still there (%v)", name, err)
			}
		}
		if _, err := k.cs.RbacV1().Roles(ns).Get(ctx, "gantry-coordinator", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, fmt.Sprintf("role gantry-coordinator still there (%v)", err)
		}
		return true, ""
	})
}

// helmInstallState describes the workloads and pods of namespace ns, for
// a failure message.
func helmInstallState(k kubeEnv, ns string) string {
	ctx := context.Background()
	var b strings.Builder
	if pvcs, err := k.cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, c := range pvcs.Items {
			fmt.Fprintf(&b, "pvc %s: %s volume %q\n", c.Name, c.Status.Phase, c.Spec.VolumeName)
		}
	}
	if pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s: %s node %q\n", p.Name, p.Status.Phase, p.Spec.NodeName)
		}
	}
	if evs, err := k.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}

// coordinatorVolume is a hostPath volume at path bound in advance to the
// claim of coordinator i in ns (no storage provisioner here).
func coordinatorVolume(ns string, i int, path string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-data-%d", ns, i)},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: ns, Name: fmt.Sprintf("data-%s-%d", coordinatorSTS, i)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path},
			},
		},
	}
}
