package exec

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestCleanEnvironment runs env and checks a process gets the allowlist,
// PassEnv, the request's and the spec's variables and its secrets, and
// nothing else of the agent's environment. (Not parallel: it sets the
// test process's environment.)
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("KUBECONFIG", "/etc/agent/kubeconfig")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "agent-credential")
	t.Setenv("GANTRY_TEST_PASSED", "passed-through")
	t.Setenv("HOME", "/home/agent")
	t.Setenv("TERM", "xterm")
	r, err := New(Config{WorkRoot: t.TempDir(), PassEnv: []string{"GANTRY_TEST_PASSED", "GANTRY_TEST_UNSET"}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var out recorder
	res := r.Run(context.Background(), Request{
		Spec: &gv1.ExecSpec{
			Command:   []string{"env"},
			Env:       map[string]string{"SPEC": "spec-value", "HOME": "/overridden"},
			SecretEnv: map[string]string{"TOKEN": "gh-token"},
		},
		Env:     []string{"GANTRY_JOB_ID=j1"},
		Secrets: map[string][]byte{"gh-token": []byte("s3cret"), "unused": []byte("x")},
	}, &out)
	if !res.Success() {
		t.Fatalf("run: %v\n%s", res.Err, out.get(sysout))
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.get(stdout)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	want := map[string]string{"GANTRY_TEST_PASSED": "passed-through", "GANTRY_JOB_ID": "j1", "SPEC": "spec-value", "HOME": "/overridden", "TOKEN": "s3cret"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if got["PATH"] == "" {
		t.Error("PATH is missing")
	}
	for _, k := range []string{"KUBECONFIG", "AWS_SECRET_ACCESS_KEY", "TERM", "GANTRY_TEST_UNSET"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s leaked into the task's environment", k)
		}
	}
	allowed := map[string]bool{}
	for _, k := range allowlist {
		allowed[k] = true
	}
	for k := range got {
		if _, ok := want[k]; !ok && !allowed[k] && k != "PWD" && k != "SHLVL" && k != "_" && k != OutputsEnv {
			t.Errorf("unexpected variable %s in the task's environment", k)
		}
	}
}

func TestMissingSecretIsAJobFailure(t *testing.T) {
	t.Parallel()
	r := newRunner(t, 0)
	var out recorder
	res := r.Run(context.Background(), Request{
		Spec:    &gv1.ExecSpec{Command: []string{"true"}, SecretEnv: map[string]string{"TOKEN": "gh-token"}},
		Secrets: map[string][]byte{"other": []byte("x")},
	}, &out)
	if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(res.Err.Error(), `exec.secret_env[TOKEN]: secret "gh-token" is not in the assignment`) {
		t.Fatalf("got class %s err %v", res.Class, res.Err)
	}
}

func TestBadPassEnv(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{WorkRoot: t.TempDir(), PassEnv: []string{"A=B"}}, nil); err == nil {
		t.Fatal("PassEnv A=B accepted")
	}
}
