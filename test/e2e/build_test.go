package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The tests in this file build images with a real buildkitd, push them to a
// real registry and run tests inside them:
//
//	eval "$(scripts/testenv.sh up buildkit registry)"
//
// Without BUILDKIT_HOST and GANTRY_TEST_REGISTRY they are skipped. The dev
// process inherits BUILDKIT_HOST, so its agent offers the buildkit
// capability.

type buildEnv struct {
	registry string
	buildctl string // empty when not found
}

func needBuildEnv(tb testing.TB) buildEnv {
	tb.Helper()
	if testing.Short() {
		tb.Skip("process-level end-to-end test; skipped with -short")
	}
	e := buildEnv{registry: os.Getenv("GANTRY_TEST_REGISTRY")}
	if os.Getenv("BUILDKIT_HOST") == "" || e.registry == "" {
		tb.Skip("BUILDKIT_HOST and GANTRY_TEST_REGISTRY are not set (eval \"$(scripts/testenv.sh up buildkit registry)\")")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		tb.Skip("/bin/busybox (Debian busybox-static) is missing")
	}
	e.buildctl = os.Getenv("GANTRY_BUILDCTL")
	if e.buildctl == "" {
		e.buildctl, _ = exec.LookPath("buildctl")
	}
	return e
}

// repo is a Git repository in a temporary directory.
type repo struct {
	tb  testing.TB
	dir string
}

func newRepo(tb testing.TB) *repo {
	tb.Helper()
	r := &repo{tb: tb, dir: tb.TempDir()}
	r.git("init", "-q", "-b", "main")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		tb.Fatal(err)
	}
	r.write("busybox", string(bb))
	if err := os.Chmod(filepath.Join(r.dir, "busybox"), 0o755); err != nil {
		tb.Fatal(err)
	}
	return r
}

func (r *repo) url() string { return "file://" + r.dir }

func (r *repo) git(args ...string) string {
	r.tb.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=gantry", "-c", "user.email=gantry@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) write(name, body string) {
	r.tb.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, name), []byte(body), 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// commit commits everything and returns the commit SHA.
func (r *repo) commit(msg string) string {
	r.tb.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// helloDockerfile copies a static busybox into an empty image; its RUN step
// writes the MSG build argument and the source file into /out.
const helloDockerfile = `FROM scratch
COPY busybox /bin/busybox
ARG MSG=unset
COPY src.txt /src.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /out && echo \"$MSG\" > /out/msg && /bin/busybox cat /src.txt && echo step-ran"]
`

func buildPipeline(url, registry, image string) string {
	return fmt.Sprintf(`name: build-and-test
tasks:
  - name: image
    build:
      context: {git: {url: %q, revision: main}}
      dockerfile: Dockerfile
      args: {MSG: "hello from the image"}
      push: "%s/%s:{{ .Revision }}"
      cache: {ref: "%s/%s:cache"}
  - name: test
    needs: [image]
    run:
      image: "{{ .Tasks.image.Outputs.ref }}"
      command: ["/bin/busybox", "sh", "-c", "/bin/busybox cat /out/msg; echo rev={{ .Revision }}; echo job=$GANTRY_JOB_NAME"]
`, url, registry, image, registry, image)
}

func TestDevBuildPushAndTestInImage(t *testing.T) {
	env := needBuildEnv(t)
	r := newRepo(t)
	r.write("Dockerfile", helloDockerfile)
	r.write("src.txt", fmt.Sprintf("source %d\n", time.Now().UnixNano()))
	commit := r.commit("first")
	d := startDev(t)

	sub := gantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, buildPipeline(r.url(), env.registry, "e2e-hello")), "--wait")
	if sub.code != 0 {
		t.Fatalf("submit --wait: want exit 0, got %s", sub)
	}
	for _, want := range []string{
		"[test] hello from the image",
		"[test] rev=" + commit,
		"[test] job=build-and-test",
	} {
		if !hasLine(sub.stdout, want) {
			t.Errorf("submit --wait stdout lacks line %q:\n%s", want, sub.stdout)
		}
	}
	// BuildKit's progress, as readable lines in the build task's log.
	for _, want := range []string{"checked out " + r.url() + " at " + commit, "step-ran", "DONE", "pushed " + env.registry + "/e2e-hello@sha256:"} {
		if !strings.Contains(sub.stdout, want) {
			t.Errorf("submit --wait stdout lacks %q:\n%s", want, sub.stdout)
		}
	}

	jobs := listJobs(t, d.grpcAddr)
	if len(jobs) != 1 {
		t.Fatalf("want 1 job, got %d", len(jobs))
	}
	j := getJob(t, d.grpcAddr, jobs[0].GetId())
	img := task(t, j, "image")
	out := img.GetOutputs()
	if out["revision"] != commit || !strings.HasPrefix(out["digest"], "sha256:") || out["ref"] != env.registry+"/e2e-hello@"+out["digest"] {
		t.Errorf("image outputs = %v, want revision %s and ref pinned by digest", out, commit)
	}
	// The test task ran the rendered spec: the image pinned by digest.
	if tk := task(t, j, "test"); tk.GetState() != gv1.TaskState_TASK_STATE_SUCCEEDED || tk.GetAgent() != "local" {
		t.Errorf("test task: %s on %q", tk.GetState(), tk.GetAgent())
	}

	// A new commit builds again; the unchanged steps come from the cache.
	r.write("src.txt", "changed\n")
	second := r.commit("second")
	sub = gantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, buildPipeline(r.url(), env.registry, "e2e-hello")), "--wait")
	if sub.code != 0 || !hasLine(sub.stdout, "[test] rev="+second) || !strings.Contains(sub.stdout, "CACHED") {
		t.Fatalf("second build: want success at %s with cached steps, got %s", second, sub)
	}
}

func TestDevBuildFailures(t *testing.T) {
	env := needBuildEnv(t)
	d := startDev(t)

	t.Run("a Dockerfile error fails the job with BuildKit's message", func(t *testing.T) {
		r := newRepo(t)
		r.write("Dockerfile", "FROM scratch\nFROBNICATE all the things\n")
		r.commit("broken")
		sub := gantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, buildPipeline(r.url(), env.registry, "e2e-broken")), "--wait")
		if sub.code == 0 {
			t.Fatalf("submit --wait of a broken Dockerfile succeeded: %s", sub)
		}
		j := getJob(t, d.grpcAddr, submittedID(t, sub))
		img := task(t, j, "image")
		if img.GetState() != gv1.TaskState_TASK_STATE_FAILED || img.GetFailure() != gv1.FailureClass_FAILURE_CLASS_JOB ||
			!strings.Contains(img.GetError(), "unknown instruction") || img.GetAttempt() != 1 {
			t.Errorf("image task: %s %s attempt %d error %q; want a job failure naming the unknown instruction",
				img.GetState(), img.GetFailure(), img.GetAttempt(), img.GetError())
		}
		if tk := task(t, j, "test"); tk.GetState() != gv1.TaskState_TASK_STATE_SKIPPED {
			t.Errorf("test task: %s, want skipped", tk.GetState())
		}
	})

	t.Run("a missing output fails the task once, not forever", func(t *testing.T) {
		r := newRepo(t)
		r.write("Dockerfile", helloDockerfile)
		r.write("src.txt", "x\n")
		r.commit("c")
		y := fmt.Sprintf(`name: missing-output
tasks:
  - name: image
    build: {context: {git: {url: %q}}}
  - name: test
    needs: [image]
    run: {image: "{{ .Tasks.image.Outputs.ref }}", command: [/bin/busybox, "true"]}
`, r.url())
		sub := gantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, y), "--wait")
		if sub.code == 0 {
			t.Fatalf("submit --wait succeeded: %s", sub)
		}
		j := getJob(t, d.grpcAddr, submittedID(t, sub))
		tk := task(t, j, "test")
		if tk.GetState() != gv1.TaskState_TASK_STATE_FAILED || tk.GetAttempt() != 1 ||
			!strings.Contains(tk.GetError(), `map has no entry for key "ref"`) {
			t.Errorf("test task: %s attempt %d error %q; want one failed attempt naming the missing output",
				tk.GetState(), tk.GetAttempt(), tk.GetError())
		}
	})
}

// submittedID returns the id of the job a `submit` printed on stderr.
func submittedID(t *testing.T, sub result) string {
	t.Helper()
	for _, l := range lines(sub.stderr) {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "job" && f[2] == "submitted" {
			return f[1]
		}
	}
	t.Fatalf("submit did not print the job id:\n%s", sub)
	return ""
}

// BenchmarkBuildGantryVsBuildctl runs the same build (Git revision, build
// argument, push to the registry) through `gantry submit --wait` on a dev
// process and through `buildctl build` directly, both with a warm cache, so
// that the difference is what Gantry adds: submit and Raft commit,
// scheduling, assignment over NATS, the clone of the revision, log
// streaming and the report.
//
//	eval "$(scripts/testenv.sh up buildkit registry)"
//	go test -run '^$' -bench GantryVsBuildctl -benchtime 10x ./test/e2e/
func BenchmarkBuildGantryVsBuildctl(b *testing.B) {
	env := needBuildEnv(b)
	if env.buildctl == "" {
		b.Skip("buildctl not found (GANTRY_BUILDCTL or PATH)")
	}
	r := newRepo(b)
	r.write("Dockerfile", helloDockerfile)
	r.write("src.txt", fmt.Sprintf("bench %d\n", time.Now().UnixNano()))
	r.commit("bench")
	grpcAddr := benchDev(b)
	pipeline := filepath.Join(b.TempDir(), "p.yaml")
	if err := os.WriteFile(pipeline, []byte(fmt.Sprintf(`name: bench
tasks:
  - name: image
    build:
      context: {git: {url: %q, revision: main}}
      args: {MSG: "bench"}
      push: "%s/bench-gantry:{{ .Revision }}"
`, r.url(), env.registry)), 0o644); err != nil {
		b.Fatal(err)
	}
	viaGantry := func(b *testing.B) {
		cmd := exec.Command(gantryBin, "--addr", grpcAddr, "submit", "-f", pipeline, "--wait")
		cmd.Env = append(os.Environ(), "GANTRY_ADDR=")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("gantry submit --wait: %v\n%s", err, out)
		}
	}
	buildctl := func(b *testing.B, dir string) {
		cmd := exec.Command(env.buildctl, "--addr", os.Getenv("BUILDKIT_HOST"), "build",
			"--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir,
			"--opt", "build-arg:MSG=bench", "--progress", "plain",
			"--output", "type=image,name="+env.registry+"/bench-buildctl:latest,push=true,registry.insecure=true")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("buildctl build: %v\n%s", err, out)
		}
	}
	// What a script would do: clone the revision with the git CLI, build.
	cloneAndBuildctl := func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "checkout")
		if out, err := exec.Command("git", "clone", "-q", "--branch", "main", r.url(), dir).CombinedOutput(); err != nil {
			b.Fatalf("git clone: %v\n%s", err, out)
		}
		buildctl(b, dir)
	}
	viaGantry(b) // warm every path
	buildctl(b, r.dir)
	var g, k, bare time.Duration
	b.Run("gantry", func(b *testing.B) {
		for b.Loop() {
			viaGantry(b)
		}
		g = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("git-clone+buildctl", func(b *testing.B) {
		for b.Loop() {
			cloneAndBuildctl(b)
		}
		k = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("buildctl", func(b *testing.B) {
		for b.Loop() {
			buildctl(b, r.dir)
		}
		bare = b.Elapsed() / time.Duration(b.N)
	})
	if g > 0 && k > 0 && bare > 0 {
		fmt.Printf("warm build and push: gantry submit --wait %s; git clone + buildctl build %s (gantry overhead %s); buildctl build of a ready checkout %s\n",
			g.Round(time.Millisecond), k.Round(time.Millisecond), (g - k).Round(time.Millisecond), bare.Round(time.Millisecond))
	}
}

// benchDev starts `gantry dev` for a benchmark and returns its gRPC address.
func benchDev(b *testing.B, extra ...string) string {
	b.Helper()
	addrFile := filepath.Join(b.TempDir(), "addrs.json")
	cmd := exec.Command(gantryBin, append([]string{"dev", "--data-dir", filepath.Join(b.TempDir(), "data"), "--addr-file", addrFile,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"}, extra...)...)
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=")
	logPath := filepath.Join(b.TempDir(), "dev.log")
	f, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	addrs := readAddrs(b, exited, addrFile)
	if addrs.CA != "" {
		tlsCAs.Store(addrs.GRPC, addrs.CA)
		b.Cleanup(func() { tlsCAs.Delete(addrs.GRPC) })
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if code, _, err := httpGet("http://" + addrs.HTTP + "/readyz"); err == nil && code == 200 {
			return addrs.GRPC
		}
		select {
		case <-done:
			b.Fatalf("gantry dev exited:\n%s", tail(logPath, 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("gantry dev not ready after 60s:\n%s", tail(logPath, 40))
		}
	}
}
