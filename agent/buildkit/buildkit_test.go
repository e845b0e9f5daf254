package buildkit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gantryci/gantry/internal/buildkey"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The tests below need a real buildkitd and registry:
//
//	eval "$(scripts/testenv.sh up buildkit registry)"
//
// Without BUILDKIT_HOST and GANTRY_TEST_REGISTRY they are skipped.

type env struct {
	addr     string
	registry string
}

func needEnv(tb testing.TB) env {
	tb.Helper()
	e := env{addr: os.Getenv("BUILDKIT_HOST"), registry: os.Getenv("GANTRY_TEST_REGISTRY")}
	if e.addr == "" || e.registry == "" {
		tb.Skip("BUILDKIT_HOST and GANTRY_TEST_REGISTRY are not set (eval \"$(scripts/testenv.sh up buildkit registry)\")")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		tb.Skip("/bin/busybox (Debian busybox-static) is missing")
	}
	return e
}

// buffer is a Sink that keeps everything.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *buffer) Write(_ gv1.LogStream, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
}

func (s *buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gitRepo creates a repository whose main branch holds files, and returns
// its file:// URL and the commit.
func gitRepo(tb testing.TB, files map[string]string) (string, string) {
	tb.Helper()
	dir := tb.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=gantry", "-c", "user.email=gantry@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			tb.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", "-b", "main")
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), bb, 0o755); err != nil {
		tb.Fatal(err)
	}
	run("add", "-A")
	run("commit", "-q", "-m", "test")
	return "file://" + dir, run("rev-parse", "HEAD")
}

// dockerfile copies a static busybox into an empty image and runs a step
// that writes the MSG build argument (and a nonce, so that each test's
// build is its own) to /out/msg.
func dockerfile(nonce string) string {
	return fmt.Sprintf(`FROM scratch AS base
COPY busybox /bin/busybox
ARG MSG=default
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /out && echo \"$MSG\" > /out/msg && echo built %s"]

FROM base AS other
RUN ["/bin/busybox", "sh", "-c", "echo other > /out/msg"]

FROM base
`, nonce)
}

func newExecutor(tb testing.TB, addr string) *Executor {
	tb.Helper()
	e, err := New(Config{Addr: addr, WorkRoot: tb.TempDir()}, zaptest.NewLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func TestBuildPushAndRun(t *testing.T) {
	t.Parallel()
	env := needEnv(t)
	nonce := fmt.Sprint(time.Now().UnixNano())
	url, commit := gitRepo(t, map[string]string{"Dockerfile": dockerfile(nonce)})
	e := newExecutor(t, env.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	spec := &gv1.BuildSpec{
		Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url, Revision: "main"}},
		Args:    map[string]string{"MSG": "hello from gantry"},
		Push:    env.registry + "/buildkit-test:{{ .Revision }}",
		Cache:   &gv1.BuildCache{Ref: env.registry + "/buildkit-test:cache"},
	}
	var log buffer
	res := e.Build(ctx, BuildRequest{Spec: spec, Name: "t-build-1"}, &log)
	if !res.Success() {
		t.Fatalf("build: %v (class %s)\n%s", res.Err, res.Class, log.String())
	}
	if got := res.Outputs[OutputRevision]; got != commit {
		t.Errorf("revision = %q, want %q", got, commit)
	}
	wantRef := env.registry + "/buildkit-test@" + res.Outputs[OutputDigest]
	if !strings.HasPrefix(res.Outputs[OutputDigest], "sha256:") || res.Outputs[OutputRef] != wantRef {
		t.Errorf("outputs = %v, want ref %s", res.Outputs, wantRef)
	}
	for _, want := range []string{"checked out " + url + " at " + commit, "[internal] load build definition from Dockerfile", "built " + nonce, "DONE", "pushed " + wantRef} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if w := e.Warm(); len(w) != 1 || w[0] != buildkey.For(spec) {
		t.Errorf("warm = %v, want [%s]", w, buildkey.For(spec))
	}

	// The image holds what the RUN step wrote, and a command's exit code
	// is the result.
	var out buffer
	res = e.Run(ctx, RunRequest{Spec: &gv1.RunSpec{Image: wantRef, Command: []string{"/bin/busybox", "cat", "/out/msg"}}}, &out)
	if !res.Success() || !strings.Contains(out.String(), "hello from gantry\n") {
		t.Fatalf("run: %v (class %s)\n%s", res.Err, res.Class, out.String())
	}
	out = buffer{}
	res = e.Run(ctx, RunRequest{
		Spec: &gv1.RunSpec{Image: wantRef, Command: []string{"/bin/busybox", "sh", "-c", "echo $K >&2; exit 3"}, Env: map[string]string{"K": "v"}},
	}, &out)
	if res.ExitCode != 3 || res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(out.String(), "v\n") {
		t.Fatalf("run exit 3: code %d class %s err %v\n%s", res.ExitCode, res.Class, res.Err, out.String())
	}

	// The same build again is served from the cache.
	log = buffer{}
	res = e.Build(ctx, BuildRequest{Spec: spec, Name: "t-build-2"}, &log)
	if !res.Success() || !strings.Contains(log.String(), "CACHED") {
		t.Fatalf("second build: %v\n%s", res.Err, log.String())
	}
}

func TestBuildTargetAndDir(t *testing.T) {
	t.Parallel()
	env := needEnv(t)
	url, _ := gitRepo(t, map[string]string{"ci/Dockerfile.test": dockerfile(fmt.Sprint(time.Now().UnixNano()))})
	dir := strings.TrimPrefix(url, "file://")
	e := newExecutor(t, env.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log buffer
	res := e.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{
		Context:    &gv1.BuildContext{Dir: dir},
		Dockerfile: "ci/Dockerfile.test",
		Target:     "other",
		Push:       env.registry + "/buildkit-target:latest",
	}}, &log)
	if !res.Success() {
		t.Fatalf("build: %v\n%s", res.Err, log.String())
	}
	if _, ok := res.Outputs[OutputRevision]; ok {
		t.Errorf("a directory context has no revision: %v", res.Outputs)
	}
	var out buffer
	res = e.Run(ctx, RunRequest{Spec: &gv1.RunSpec{Image: res.Outputs[OutputRef], Command: []string{"/bin/busybox", "cat", "/out/msg"}}}, &out)
	if !res.Success() || !strings.HasSuffix(out.String(), "\nother\n") {
		t.Fatalf("run: %v %q", res.Err, out.String())
	}
}

func TestBuildFailures(t *testing.T) {
	t.Parallel()
	env := needEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := newExecutor(t, env.addr)

	t.Run("dockerfile error is a job failure with BuildKit's message", func(t *testing.T) {
		url, _ := gitRepo(t, map[string]string{"Dockerfile": "FROM scratch\nFROBNICATE everything\n"})
		var log buffer
		res := e.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url}}}}, &log)
		if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || res.Err == nil || !strings.Contains(res.Err.Error(), "unknown instruction") {
			t.Fatalf("got class %s err %v, want a job failure naming the unknown instruction", res.Class, res.Err)
		}
	})
	t.Run("failing RUN step is a job failure", func(t *testing.T) {
		url, _ := gitRepo(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo boom; exit 7\"]\n"})
		var log buffer
		res := e.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url}}}}, &log)
		if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(log.String(), "boom") || !strings.Contains(log.String(), "ERROR") {
			t.Fatalf("got class %s err %v\n%s", res.Class, res.Err, log.String())
		}
	})
	t.Run("unknown revision is a job failure", func(t *testing.T) {
		url, _ := gitRepo(t, map[string]string{"Dockerfile": "FROM scratch\n"})
		res := e.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url, Revision: "no-such-branch"}}}}, &buffer{})
		if res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(fmt.Sprint(res.Err), "no-such-branch") {
			t.Fatalf("got class %s err %v", res.Class, res.Err)
		}
	})
	t.Run("unreachable daemon is an infrastructure failure", func(t *testing.T) {
		down := newExecutor(t, "unix://"+filepath.Join(t.TempDir(), "nothing.sock"))
		res := down.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{Context: &gv1.BuildContext{Dir: t.TempDir()}}}, &buffer{})
		if res.Class != gv1.FailureClass_FAILURE_CLASS_INFRA {
			t.Fatalf("build: class %s err %v, want infra", res.Class, res.Err)
		}
		res = down.Run(ctx, RunRequest{Spec: &gv1.RunSpec{Image: "x", Command: []string{"true"}}}, &buffer{})
		if res.Class != gv1.FailureClass_FAILURE_CLASS_INFRA {
			t.Fatalf("run: class %s err %v, want infra", res.Class, res.Err)
		}
	})
}

// cancelSink cancels a context once the output contains a marker.
type cancelSink struct {
	buffer
	marker string
	cancel context.CancelFunc
}

func (s *cancelSink) Write(st gv1.LogStream, p []byte) {
	s.buffer.Write(st, p)
	if strings.Contains(s.String(), s.marker) {
		s.cancel()
	}
}

func TestCancelStopsTheSolve(t *testing.T) {
	t.Parallel()
	env := needEnv(t)
	url, _ := gitRepo(t, map[string]string{"Dockerfile": fmt.Sprintf(
		"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo started %d; /bin/busybox sleep 120\"]\n", time.Now().UnixNano())})
	e := newExecutor(t, env.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &cancelSink{marker: "started", cancel: cancel}
	begin := time.Now()
	res := e.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url}}}}, sink)
	if res.Success() || res.Class != gv1.FailureClass_FAILURE_CLASS_JOB || !strings.Contains(fmt.Sprint(res.Err), "canceled") {
		t.Fatalf("got class %s err %v\n%s", res.Class, res.Err, sink.String())
	}
	if d := time.Since(begin); d > time.Minute {
		t.Fatalf("cancel took %s; the solve was not stopped", d)
	}
}

func TestRepository(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"127.0.0.1:5000/hello:abc":        "127.0.0.1:5000/hello",
		"127.0.0.1:5000/hello":            "127.0.0.1:5000/hello",
		"127.0.0.1:5000/a/b@sha256:00":    "127.0.0.1:5000/a/b",
		"registry.example/app:1.2":        "registry.example/app",
		"localhost:5000/app:tag@sha256:0": "localhost:5000/app",
	} {
		if got := repository(in); got != want {
			t.Errorf("repository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpandRevision(t *testing.T) {
	t.Parallel()
	got, err := expandRevision("r/app:{{ .Revision }}", "abc")
	if err != nil || got != "r/app:abc" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := expandRevision("r/app:{{ .Revision }}", ""); err == nil || !strings.Contains(err.Error(), "Git context") {
		t.Errorf("no revision: err = %v", err)
	}
	if got, err := expandRevision("r/app:latest", ""); err != nil || got != "r/app:latest" {
		t.Errorf("plain: %q, %v", got, err)
	}
}

func TestRunAppliesImageConfig(t *testing.T) {
	t.Parallel()
	env := needEnv(t)
	url, _ := gitRepo(t, map[string]string{"Dockerfile": fmt.Sprintf(
		"FROM scratch\nCOPY busybox /bin/busybox\nENV GREETING=hi NONCE=%d\nWORKDIR /work\n", time.Now().UnixNano())})
	e := newExecutor(t, env.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log buffer
	res := e.Build(ctx, BuildRequest{Spec: &gv1.BuildSpec{
		Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url}},
		Push:    env.registry + "/buildkit-config:latest",
	}}, &log)
	if !res.Success() {
		t.Fatalf("build: %v\n%s", res.Err, log.String())
	}
	var out buffer
	res = e.Run(ctx, RunRequest{
		Spec: &gv1.RunSpec{Image: res.Outputs[OutputRef], Command: []string{"/bin/busybox", "sh", "-c", "echo $GREETING-$EXTRA-$(/bin/busybox pwd)"}, Env: map[string]string{"EXTRA": "x"}},
	}, &out)
	if !res.Success() || !strings.HasSuffix(out.String(), "\nhi-x-/work\n") {
		t.Fatalf("run: %v\n%s", res.Err, out.String())
	}
}
