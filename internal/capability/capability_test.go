package capability_test

import (
	"testing"

	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec *gv1.TaskSpec
		want string
	}{
		{&gv1.TaskSpec{Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{}}}, "exec"},
		{&gv1.TaskSpec{}, "exec"},
		{nil, "exec"},
		{&gv1.TaskSpec{Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{}}}, "buildkit"},
		{&gv1.TaskSpec{Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{}}}, "buildkit"},
		{&gv1.TaskSpec{Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{Cluster: "prod"}}}, "cluster:prod"},
	} {
		if got := capability.For(tc.spec); got != tc.want {
			t.Errorf("For(%v) = %q, want %q", tc.spec, got, tc.want)
		}
	}
}

func TestClusterName(t *testing.T) {
	t.Parallel()
	if got := capability.Cluster("prod"); got != "cluster:prod" {
		t.Errorf("Cluster(prod) = %q", got)
	}
	for c, want := range map[string]string{"cluster:prod": "prod", capability.Cluster("a-b"): "a-b", "cluster:": ""} {
		if got, ok := capability.ClusterName(c); !ok || got != want {
			t.Errorf("ClusterName(%q) = %q, %v; want %q, true", c, got, ok, want)
		}
	}
	for _, c := range []string{capability.Exec, capability.BuildKit, "clusters:prod", "prod"} {
		if got, ok := capability.ClusterName(c); ok {
			t.Errorf("ClusterName(%q) = %q, true; want false", c, got)
		}
	}
}
