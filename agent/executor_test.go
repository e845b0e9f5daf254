package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// A kubeconfig of a cluster that is never contacted: opening a cluster
// does not reach it.
const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

// The registry enables the executors the configuration asks for; their
// capabilities are what the scheduler needs for the tasks they accept.
func TestExecutorRegistry(t *testing.T) {
	t.Parallel()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(unreachableKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	specs := map[string]*gv1.TaskSpec{
		"exec":         {Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"true"}}}},
		"build":        {Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{}}},
		"run":          {Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{}}},
		"deploy prod":  {Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{Cluster: "prod"}}},
		"deploy other": {Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{Cluster: "other"}}},
		"none":         {},
		"empty exec":   {Executor: &gv1.TaskSpec_Exec{}},
	}
	for _, tc := range []struct {
		name     string
		mutate   func(*Config)
		caps     []string
		accepted []string
	}{
		{"plain", nil, []string{"exec"}, []string{"exec"}},
		{
			"all",
			func(c *Config) {
				c.BuildkitAddr = "unix:///nonexistent/buildkitd.sock"
				c.Kube = []KubeCluster{{Name: "prod", Kubeconfig: kubeconfig}, {Name: "dev", Kubeconfig: kubeconfig}}
			},
			[]string{"exec", "buildkit", "cluster:dev", "cluster:prod"},
			[]string{"exec", "build", "run", "deploy prod"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Name = "a1"
			cfg.WorkDir = t.TempDir()
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			a, err := New(cfg, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := a.heartbeat().GetAgent().GetCapabilities(); !reflect.DeepEqual(got, tc.caps) {
				t.Errorf("capabilities %v, want %v", got, tc.caps)
			}
			accepted := map[string]bool{}
			for _, k := range tc.accepted {
				accepted[k] = true
			}
			for k, spec := range specs {
				e := a.executors.find(spec)
				if (e != nil) != accepted[k] {
					t.Errorf("%s: executor %T, want accepted %v", k, e, accepted[k])
					continue
				}
				if e != nil && !slices.Contains(e.capabilities(), capability.For(spec)) {
					t.Errorf("%s: executor %T offers %v, the task needs %s", k, e, e.capabilities(), capability.For(spec))
				}
			}
		})
	}
}
