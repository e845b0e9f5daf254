package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const (
	stdout = gv1.LogStream_LOG_STREAM_STDOUT
	stderr = gv1.LogStream_LOG_STREAM_STDERR
	sysout = gv1.LogStream_LOG_STREAM_SYSTEM
)

// recorder is a Sink that keeps everything per stream.
type recorder struct {
	mu sync.Mutex
	m  map[gv1.LogStream]string
}

func (r *recorder) Write(s gv1.LogStream, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[gv1.LogStream]string{}
	}
	r.m[s] += string(p)
}

func (r *recorder) get(s gv1.LogStream) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[s]
}

func newRunner(t *testing.T, grace time.Duration) *Runner {
	t.Helper()
	r, err := New(Config{WorkRoot: t.TempDir(), Grace: grace}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// runAsync runs req in the background; the run is canceled and awaited at cleanup.
func runAsync(t *testing.T, r *Runner, ctx context.Context, req Request, out Sink) <-chan Result {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan Result, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ch <- r.Run(ctx, req, out)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return ch
}

func await(t *testing.T, ch <-chan Result) Result {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("run did not finish")
		return Result{}
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func checkResult(t *testing.T, res Result, code int, class gv1.FailureClass, errText string) {
	t.Helper()
	got := ""
	if res.Err != nil {
		got = res.Err.Error()
	}
	if strings.HasSuffix(errText, ": ") && strings.HasPrefix(got, errText) {
		errText = got // only the prefix is checked
	}
	if res.ExitCode != code || res.Class != class || got != errText {
		t.Fatalf("result = {%d %v %q}, want {%d %v %q}", res.ExitCode, res.Class, got, code, class, errText)
	}
	if want := errText == "" && class == gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED; res.Success() != want {
		t.Fatalf("Success() = %v, want %v", res.Success(), want)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("New with empty work root: want error")
	}
	root := filepath.Join(t.TempDir(), "a", "b")
	if _, err := New(Config{WorkRoot: root}, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("work root not created: %v", err)
	}
}

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	missing := `start: exec: "gantry-no-such-binary": executable file not found in $PATH`
	for _, tc := range []struct {
		name           string
		canceled       bool // ctx canceled before Run
		req            Request
		code           int
		class          gv1.FailureClass
		err            string // exact, or a prefix when it ends with ": "
		stdout, stderr string
		system         string // regexp
	}{
		{name: "success", req: Request{Spec: &gv1.ExecSpec{Command: []string{"sh", "-c", "echo out; echo err >&2"}}},
			stdout: "out\n", stderr: "err\n", system: `^exit status 0 after [0-9.]+[mµn]?s\n$`},
		{name: "non-zero exit", req: Request{Spec: &gv1.ExecSpec{Shell: "echo bye; exit 3"}},
			code: 3, class: gv1.FailureClass_FAILURE_CLASS_JOB, err: "exit status 3", stdout: "bye\n", system: `^exit status 3 after `},
		{name: "missing binary", req: Request{Spec: &gv1.ExecSpec{Command: []string{"gantry-no-such-binary", "x"}}},
			code: -1, class: gv1.FailureClass_FAILURE_CLASS_INFRA, err: missing, system: "^" + regexp.QuoteMeta(missing) + "\n$"},
		{name: "shell", req: Request{Spec: &gv1.ExecSpec{Shell: "for i in 1 2 3; do echo $i; done | wc -l | tr -d ' '"}},
			stdout: "3\n"},
		{name: "env", req: Request{
			Spec: &gv1.ExecSpec{Shell: `echo "$GANTRY_JOB_ID|$FOO|$OVERRIDE|$PATH"`, Env: map[string]string{"FOO": "bar baz", "OVERRIDE": "spec"}},
			Env:  []string{"GANTRY_JOB_ID=job-7", "OVERRIDE=extra"},
		}, stdout: "job-7|bar baz|spec|" + os.Getenv("PATH") + "\n"},
		{name: "stdin is empty", req: Request{Spec: &gv1.ExecSpec{Shell: "cat; echo done"}}, stdout: "done\n"},
		{name: "output past one read buffer", req: Request{Spec: &gv1.ExecSpec{Shell: "head -c 100000 /dev/zero | tr '\\0' a"}},
			stdout: strings.Repeat("a", 100000)},
		{name: "nil spec", req: Request{}, code: -1, class: gv1.FailureClass_FAILURE_CLASS_JOB, err: "invalid spec: "},
		{name: "empty spec", req: Request{Spec: &gv1.ExecSpec{}}, code: -1, class: gv1.FailureClass_FAILURE_CLASS_JOB, err: "invalid spec: "},
		{name: "empty argv0", req: Request{Spec: &gv1.ExecSpec{Command: []string{"", "x"}}}, code: -1, class: gv1.FailureClass_FAILURE_CLASS_JOB, err: "invalid spec: "},
		{name: "bad env key", req: Request{Spec: &gv1.ExecSpec{Shell: "true", Env: map[string]string{"A=B": "c"}}},
			code: -1, class: gv1.FailureClass_FAILURE_CLASS_JOB, err: "invalid spec: "},
		{name: "canceled before start", canceled: true, req: Request{Spec: &gv1.ExecSpec{Shell: "echo ran"}},
			code: -1, class: gv1.FailureClass_FAILURE_CLASS_JOB, err: "canceled", system: "^canceled\n$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			if tc.canceled {
				cancel()
			}
			defer cancel()
			var out recorder
			res := newRunner(t, 0).Run(ctx, tc.req, &out)
			checkResult(t, res, tc.code, tc.class, tc.err)
			if got := out.get(stdout); got != tc.stdout {
				t.Errorf("stdout = %q, want %q", got, tc.stdout)
			}
			if got := out.get(stderr); got != tc.stderr {
				t.Errorf("stderr = %q, want %q", got, tc.stderr)
			}
			if got := out.get(sysout); !regexp.MustCompile(tc.system).MatchString(got) {
				t.Errorf("system = %q, want match for %q", got, tc.system)
			}
		})
	}
}

func TestRunDir(t *testing.T) {
	t.Parallel()
	r := newRunner(t, 0)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte("here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out recorder
	res := r.Run(t.Context(), Request{Spec: &gv1.ExecSpec{Command: []string{"cat", "marker"}, Dir: dir}}, &out)
	checkResult(t, res, 0, gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED, "")
	if got := out.get(stdout); got != "here\n" {
		t.Errorf("stdout = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "marker")); err != nil {
		t.Errorf("Spec.Dir was touched: %v", err)
	}

	res = r.Run(t.Context(), Request{Spec: &gv1.ExecSpec{Shell: "true", Dir: filepath.Join(dir, "missing")}}, nil)
	if res.Class != gv1.FailureClass_FAILURE_CLASS_INFRA || res.Err == nil || !strings.HasPrefix(res.Err.Error(), "working directory: ") {
		t.Errorf("missing dir: result = %+v", res)
	}
}

func TestRunWorkDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	r, err := New(Config{WorkRoot: root}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var out recorder
	res := r.Run(t.Context(), Request{
		Name: "job/1 task#2",
		Spec: &gv1.ExecSpec{Shell: "pwd -P; mkdir ro && touch ro/f && chmod 555 ro"},
	}, &out)
	checkResult(t, res, 0, gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED, "")
	wd := strings.TrimSpace(out.get(stdout))
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(wd) != realRoot || !strings.HasPrefix(filepath.Base(wd), "job_1_task_2-") {
		t.Errorf("working directory %q, want job_1_task_2-* under %q", wd, realRoot)
	}
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
		t.Errorf("work root not cleaned up: %v %v", ents, err)
	}

	// A work root that cannot hold directories is an infrastructure failure.
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res = r.Run(t.Context(), Request{Spec: &gv1.ExecSpec{Shell: "true"}}, nil)
	if res.Class != gv1.FailureClass_FAILURE_CLASS_INFRA || res.Err == nil {
		t.Errorf("unusable work root: result = %+v", res)
	}
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()
	var out recorder
	start := time.Now()
	res := newRunner(t, 30*time.Second).Run(t.Context(), Request{
		Spec:    &gv1.ExecSpec{Command: []string{"sleep", "60"}},
		Timeout: 200 * time.Millisecond,
	}, &out)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	checkResult(t, res, -1, gv1.FailureClass_FAILURE_CLASS_JOB, "timed out after 200ms")
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("err %v is not DeadlineExceeded", res.Err)
	}
	if got := out.get(sysout); !strings.HasPrefix(got, "timed out after 200ms, sent SIGTERM\nsignal: terminated after ") {
		t.Errorf("system = %q", got)
	}
}

func TestRunCancelSendsTermFirst(t *testing.T) {
	t.Parallel()
	mark := filepath.Join(t.TempDir(), "term")
	ctx, cancel := context.WithCancel(t.Context())
	var out recorder
	ch := runAsync(t, newRunner(t, 30*time.Second), ctx, Request{Spec: &gv1.ExecSpec{
		Shell: `trap 'echo got-term > "$MARK"; exit 7' TERM
sleep 60 &
echo ready
wait`,
		Env: map[string]string{"MARK": mark},
	}}, &out)
	waitFor(t, "ready", func() bool { return out.get(stdout) == "ready\n" })
	start := time.Now()
	cancel()
	res := await(t, ch)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopping took %s; SIGTERM should have been enough", d)
	}
	checkResult(t, res, 7, gv1.FailureClass_FAILURE_CLASS_JOB, "canceled")
	if !errors.Is(res.Err, context.Canceled) {
		t.Errorf("err %v is not context.Canceled", res.Err)
	}
	if b, err := os.ReadFile(mark); err != nil || string(b) != "got-term\n" {
		t.Errorf("trap mark = %q, %v", b, err)
	}
	if got := out.get(sysout); !strings.HasPrefix(got, "canceled, sent SIGTERM\n") ||
		!strings.Contains(got, "exit status 7 after ") || strings.Contains(got, "SIGKILL") {
		t.Errorf("system = %q", got)
	}
}

func TestRunCancelKillsAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	var out recorder
	ch := runAsync(t, newRunner(t, grace), ctx, Request{Spec: &gv1.ExecSpec{
		Shell: "trap '' TERM; echo ready; sleep 60",
	}}, &out)
	waitFor(t, "ready", func() bool { return out.get(stdout) == "ready\n" })
	start := time.Now()
	cancel()
	res := await(t, ch)
	if d := time.Since(start); d < grace {
		t.Errorf("killed after %s, before the %s grace", d, grace)
	}
	checkResult(t, res, -1, gv1.FailureClass_FAILURE_CLASS_JOB, "canceled")
	want := "canceled, sent SIGTERM\nstill running after 300ms, sent SIGKILL\nsignal: killed after "
	if got := out.get(sysout); !strings.HasPrefix(got, want) {
		t.Errorf("system = %q, want prefix %q", got, want)
	}
}

func TestRunSignalsProcessGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := filepath.Join(dir, "child.sh")
	script := `trap 'echo child-term > "$1"; exit 0' TERM
echo $$ > "$2"
sleep 60 &
echo child-ready
wait
`
	if err := os.WriteFile(child, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	mark, pidFile := filepath.Join(dir, "mark"), filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancel(t.Context())
	var out recorder
	ch := runAsync(t, newRunner(t, 30*time.Second), ctx, Request{Spec: &gv1.ExecSpec{
		// The leader has no trap and forwards nothing: the child only
		// sees SIGTERM if the whole group is signaled.
		Shell: `sh "$CHILD" "$MARK" "$PIDFILE" & wait`,
		Env:   map[string]string{"CHILD": child, "MARK": mark, "PIDFILE": pidFile},
	}}, &out)
	waitFor(t, "child-ready", func() bool { return out.get(stdout) == "child-ready\n" })
	pid := readPid(t, pidFile)
	cancel()
	res := await(t, ch)
	checkResult(t, res, -1, gv1.FailureClass_FAILURE_CLASS_JOB, "canceled")
	if b, err := os.ReadFile(mark); err != nil || string(b) != "child-term\n" {
		t.Errorf("child mark = %q, %v", b, err)
	}
	waitFor(t, "background child to die", func() bool { return !alive(pid) })
}

func TestRunKillsLeftoversHoldingOutput(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	var out recorder
	start := time.Now()
	res := newRunner(t, 300*time.Millisecond).Run(t.Context(), Request{Spec: &gv1.ExecSpec{
		// sleep inherits stdout and stderr and keeps them open.
		Shell: `sleep 60 & echo $! > "$PIDFILE"; echo done`,
		Env:   map[string]string{"PIDFILE": pidFile},
	}}, &out)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	checkResult(t, res, 0, gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED, "")
	if got := out.get(stdout); got != "done\n" {
		t.Errorf("stdout = %q", got)
	}
	pid := readPid(t, pidFile)
	waitFor(t, "leftover sleep to die", func() bool { return !alive(pid) })
}

func TestRunStreamsLive(t *testing.T) {
	t.Parallel()
	goFile := filepath.Join(t.TempDir(), "go")
	var out recorder
	ch := runAsync(t, newRunner(t, 0), t.Context(), Request{Spec: &gv1.ExecSpec{
		Shell: `echo first; echo first-err >&2; while [ ! -e "$GO" ]; do sleep 0.01; done; echo second`,
		Env:   map[string]string{"GO": goFile},
	}}, &out)
	waitFor(t, "first lines", func() bool {
		return out.get(stdout) == "first\n" && out.get(stderr) == "first-err\n"
	})
	select {
	case res := <-ch:
		t.Fatalf("run finished before it was released: %+v", res)
	default:
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := await(t, ch)
	checkResult(t, res, 0, gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED, "")
	if got := out.get(stdout); got != "first\nsecond\n" {
		t.Errorf("stdout = %q", got)
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                       "run",
		"job-1.task_2":           "job-1.task_2",
		"../etc/passwd":          "_._etc_passwd",
		"a b/c\x00d":             "a_b_c_d",
		strings.Repeat("x", 100): strings.Repeat("x", 64),
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
