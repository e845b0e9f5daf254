// Package exec runs the processes of a Gantry agent: one task attempt at a
// time per call, in its own process group and working directory, with its
// output streamed live to a Sink.
//
// A process does not inherit the agent's environment: it gets the
// variables of the allowlist below that the agent has, the agent's
// Config.PassEnv, the request's variables (GANTRY_*), the spec's env and
// its secret_env, later ones winning. The allowlist is PATH (a default one
// when the agent has none), HOME, USER, LOGNAME, SHELL, TMPDIR, LANG,
// LC_ALL, LC_CTYPE and TZ: what a program needs to find commands, write
// temporary files and pick a locale. TERM is not in it (output goes to a
// log, not a terminal), nor is anything that grants access (KUBECONFIG,
// DOCKER_CONFIG, SSH_AUTH_SOCK, cloud credentials).
//
// A command's program is looked up in that environment's PATH (a spec may
// set its own), in its absolute entries only.
package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// DefaultGrace is the time between SIGTERM and SIGKILL when Config.Grace is zero.
const DefaultGrace = 10 * time.Second

// Sink receives output as it is produced. Write may be called from several
// goroutines; the sink must not keep p.
type Sink interface {
	Write(stream gv1.LogStream, p []byte)
}

// Config configures a Runner.
type Config struct {
	// WorkRoot is the parent of per-attempt working directories (created if missing).
	WorkRoot string
	// Grace is the time between SIGTERM and SIGKILL on cancel or timeout;
	// zero means DefaultGrace.
	Grace time.Duration
	// PassEnv names variables of the agent's environment that processes
	// get besides the allowlist (see the package documentation).
	PassEnv []string
}

// Runner starts processes. It is safe for concurrent use.
type Runner struct {
	root  string
	grace time.Duration
	log   *zap.Logger
	// inherited are the KEY=VALUE entries of the agent's environment every
	// process gets.
	inherited []string

	// idle are working directories left empty by their task, kept for the
	// next one: creating and removing a directory per task costs more
	// than the task itself for short ones (ext4 frees and discards its
	// block each time).
	mu   sync.Mutex
	idle []string

	programs finder
}

// maxIdleDirs bounds the empty working directories kept for reuse.
const maxIdleDirs = 64

// New returns a Runner, creating cfg.WorkRoot if it is missing.
func New(cfg Config, log *zap.Logger) (*Runner, error) {
	if cfg.WorkRoot == "" {
		return nil, errors.New("work root is required")
	}
	if cfg.Grace < 0 {
		return nil, fmt.Errorf("negative grace %s", cfg.Grace)
	}
	root, err := filepath.Abs(cfg.WorkRoot)
	if err != nil {
		return nil, fmt.Errorf("work root: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create work root: %w", err)
	}
	grace := cfg.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	if log == nil {
		log = zap.NewNop()
	}
	inherited, err := inheritedEnv(cfg.PassEnv)
	if err != nil {
		return nil, err
	}
	return &Runner{root: root, grace: grace, log: log.Named("exec"), inherited: inherited}, nil
}

// Request describes one process to run.
type Request struct {
	Spec *gv1.ExecSpec
	// Timeout bounds the run, measured from the start of the process; 0 = none.
	Timeout time.Duration
	// Env holds extra KEY=VALUE entries (e.g. GANTRY_JOB_ID), added after the
	// inherited variables and before Spec.Env; later entries win.
	Env []string
	// Secrets holds the values of the secrets Spec.SecretEnv names, by
	// secret name. A name missing from it fails the run (a job failure).
	Secrets map[string][]byte
	// Name names the working directory, e.g. "jobid-task-attempt"; it is sanitized.
	Name string
	// Log, when set, is the logger of this run instead of the Runner's (the
	// agent passes one that masks the attempt's secrets).
	Log *zap.Logger
}

// Result is the outcome of a run.
type Result struct {
	// ExitCode is the process's exit code, or -1 when it was killed by a
	// signal or never started.
	ExitCode int
	// Class is FAILURE_CLASS_UNSPECIFIED on success, FAILURE_CLASS_JOB for a
	// non-zero exit, a signal death, a timeout, a cancel or an invalid spec,
	// and FAILURE_CLASS_INFRA when the process could not be started.
	Class gv1.FailureClass
	// Err is nil on success. For a cancel it matches context.Canceled and for
	// a timeout context.DeadlineExceeded (errors.Is).
	Err error
	// Outputs are what the process wrote to the file named by
	// $GANTRY_OUTPUTS (key=value lines).
	Outputs map[string]string
}

// Success reports whether the process ran and exited with status 0.
func (r Result) Success() bool {
	return r.Err == nil && r.Class == gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED
}

// stopError reports a run stopped by the agent, with a short message.
type stopError struct {
	msg   string
	cause error
}

func (e *stopError) Error() string { return e.msg }
func (e *stopError) Unwrap() error { return e.cause }

// Run runs the process to the end. Canceling ctx stops it: SIGTERM to the
// whole process group, then SIGKILL after the grace period. Run returns only
// after the process and its output pipes are done; processes of the group
// still alive when the main process has exited are killed. out is not
// written to after Run returns.
func (r *Runner) Run(ctx context.Context, req Request, out Sink) Result {
	if out == nil {
		out = discard{}
	}
	log := r.log
	if req.Log != nil {
		log = req.Log.Named("exec")
	}
	log = log.With(zap.String("name", req.Name))

	argv, env, err := command(req, r.inherited)
	if err != nil {
		return r.fail(out, log, gv1.FailureClass_FAILURE_CLASS_JOB, err)
	}
	if err := ctx.Err(); err != nil {
		return r.fail(out, log, gv1.FailureClass_FAILURE_CLASS_JOB, &stopError{msg: "canceled", cause: err})
	}
	dir, cleanup, err := r.workDir(ctx, req, log)
	if err != nil {
		return r.fail(out, log, gv1.FailureClass_FAILURE_CLASS_INFRA, err)
	}
	defer cleanup()

	outputs := r.outputsPath()
	env = append(env, OutputsEnv+"="+outputs)
	cmd, err := r.start(argv, env, dir, out)
	if err != nil {
		return r.fail(out, log, gv1.FailureClass_FAILURE_CLASS_INFRA, fmt.Errorf("start: %w", err))
	}
	start := time.Now()
	pgid := cmd.Process.Pid
	// The attempt's own lines (task started, finished) are the agent's
	// info; a process's are debug: at hundreds of short tasks a second,
	// four lines a task were 7 % of gantry dev's CPU.
	log.Debug("process started", zap.Int("pid", pgid), zap.String("dir", dir), zap.String("path", cmd.Path))

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var timeoutC <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeoutC = t.C
	}

	var waitErr error
	var stopped *stopError
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		stopped = &stopError{msg: "canceled", cause: ctx.Err()}
	case <-timeoutC:
		stopped = &stopError{msg: fmt.Sprintf("timed out after %s", req.Timeout), cause: context.DeadlineExceeded}
	}
	if stopped != nil {
		select {
		case waitErr = <-done: // exited just as it was being stopped
			stopped = nil
		default:
			waitErr = r.stop(out, log.With(zap.Int("pid", pgid)), pgid, stopped.msg, done)
		}
	}
	// Whatever is left of the group must not outlive the run.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
		log.Info("killed leftover processes", zap.Int("pid", pgid))
	}

	elapsed := time.Since(start)
	state := cmd.ProcessState
	if state == nil {
		// Process.Wait itself failed; there is no exit status to report.
		return r.fail(out, log, gv1.FailureClass_FAILURE_CLASS_INFRA, fmt.Errorf("wait: %w", waitErr))
	}
	system(out, fmt.Sprintf("%s after %s", state, round(elapsed)))
	if errors.Is(waitErr, osexec.ErrWaitDelay) {
		log.Warn("output pipes held open after exit", zap.Int("pid", pgid), zap.Duration("wait_delay", r.grace))
	}

	res := Result{ExitCode: state.ExitCode(), Outputs: readOutputs(outputs, func(m string) { system(out, m) })}
	switch {
	case stopped != nil:
		res.Class, res.Err = gv1.FailureClass_FAILURE_CLASS_JOB, stopped
	case !state.Success():
		res.Class, res.Err = gv1.FailureClass_FAILURE_CLASS_JOB, errors.New(state.String())
	}
	log.Debug("process exited", zap.Int("pid", pgid), zap.Int("exit_code", res.ExitCode), zap.Duration("elapsed", elapsed), zap.Error(res.Err))
	return res
}

// start starts argv in dir with env, its program looked up in env's PATH.
// A path kept from an earlier lookup that no longer exists is looked up
// once more.
func (r *Runner) start(argv, env []string, dir string, out Sink) (*osexec.Cmd, error) {
	for retry := true; ; retry = false {
		path, err := r.programs.find(argv[0], env, time.Now())
		if err != nil {
			return nil, err
		}
		cmd := &osexec.Cmd{Path: path, Args: argv, Dir: dir, Env: env,
			Stdout:      streamWriter{out, gv1.LogStream_LOG_STREAM_STDOUT},
			Stderr:      streamWriter{out, gv1.LogStream_LOG_STREAM_STDERR},
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
			// Bounds the wait for pipes held open by a process that
			// outlives the main one; Wait then closes them.
			WaitDelay: r.grace,
		}
		if f := devNull(); f != nil {
			cmd.Stdin = f
		}
		err = cmd.Start()
		if err != nil && retry && errors.Is(err, fs.ErrNotExist) && path != argv[0] {
			r.programs.forget(argv[0], env)
			continue
		}
		return cmd, err
	}
}

// stop signals the process group to terminate, escalating to SIGKILL after
// the grace period, and returns the result of Wait.
func (r *Runner) stop(out Sink, log *zap.Logger, pgid int, reason string, done <-chan error) error {
	system(out, reason+", sent SIGTERM")
	log.Info("stopping process group", zap.String("reason", reason), zap.Duration("grace", r.grace))
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil {
		log.Warn("signal process group", zap.Error(err))
	}
	grace := time.NewTimer(r.grace)
	defer grace.Stop()
	// A shell can lose a signal that arrives while it forks (dash does), so
	// SIGTERM is repeated every second of the grace period.
	again := time.NewTicker(time.Second)
	defer again.Stop()
wait:
	for {
		select {
		case err := <-done:
			return err
		case <-again.C:
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
		case <-grace.C:
			break wait
		}
	}
	system(out, fmt.Sprintf("still running after %s, sent SIGKILL", r.grace))
	log.Info("killing process group")
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		log.Warn("signal process group", zap.Error(err))
	}
	return <-done
}

// fail reports a run that ended without an exit status.
func (r *Runner) fail(out Sink, log *zap.Logger, class gv1.FailureClass, err error) Result {
	system(out, err.Error())
	log.Warn("run failed", zap.Stringer("class", class), zap.Error(err))
	return Result{ExitCode: -1, Class: class, Err: err}
}

// command builds argv and the environment from the request.
func command(req Request, inherited []string) (argv, env []string, err error) {
	spec := req.Spec
	switch {
	case spec == nil:
		return nil, nil, errors.New("invalid spec: no exec spec")
	case len(spec.GetCommand()) > 0:
		argv = spec.GetCommand()
		if argv[0] == "" {
			return nil, nil, errors.New("invalid spec: empty program name")
		}
	case spec.GetShell() != "":
		argv = []string{"/bin/sh", "-c", spec.GetShell()}
	default:
		return nil, nil, errors.New("invalid spec: neither command nor shell is set")
	}
	for _, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, nil, errors.New("invalid spec: NUL byte in command")
		}
	}
	env, err = environment(req, inherited)
	if err != nil {
		return nil, nil, err
	}
	return argv, env, nil
}

// workDir returns the directory to run in and a function that cleans it up.
func (r *Runner) workDir(ctx context.Context, req Request, log *zap.Logger) (string, func(), error) {
	if dir := req.Spec.GetDir(); dir != "" && req.Spec.GetCheckout() == nil {
		fi, err := os.Stat(dir)
		if err != nil {
			return "", nil, fmt.Errorf("working directory: %w", err)
		}
		if !fi.IsDir() {
			return "", nil, fmt.Errorf("working directory: %s is not a directory", dir)
		}
		return dir, func() {}, nil
	}
	co := req.Spec.GetCheckout()
	if co == nil {
		if dir := r.takeIdle(); dir != "" {
			return dir, func() { r.release(dir, log) }, nil
		}
	}
	if err := os.MkdirAll(r.root, 0o755); err != nil {
		return "", nil, fmt.Errorf("create work root: %w", err)
	}
	dir, err := os.MkdirTemp(r.root, sanitize(req.Name)+"-")
	if err != nil {
		return "", nil, fmt.Errorf("create working directory: %w", err)
	}
	cleanup := func() {
		if err := removeAll(dir); err != nil {
			log.Warn("remove working directory", zap.String("dir", dir), zap.Error(err))
		}
	}
	if co == nil {
		return dir, func() { r.release(dir, log) }, nil
	}
	commit, err := gitsrc.Clone(ctx, co.GetUrl(), co.GetRevision(), dir, req.Secrets[co.GetSecret()])
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("checkout: %w", err)
	}
	log.Info("checked out", zap.String("repository", gitsrc.Redact(co.GetUrl())), zap.String("commit", commit))
	run := dir
	if sub := req.Spec.GetDir(); sub != "" {
		if filepath.IsAbs(sub) || !filepath.IsLocal(sub) {
			cleanup()
			return "", nil, fmt.Errorf("working directory %q: must be relative to the checkout", sub)
		}
		run = filepath.Join(dir, sub)
	}
	return run, cleanup, nil
}

// takeIdle returns an empty working directory left by an earlier task, or "".
func (r *Runner) takeIdle() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.idle) == 0 {
		return ""
	}
	dir := r.idle[len(r.idle)-1]
	r.idle = r.idle[:len(r.idle)-1]
	return dir
}

// release keeps dir for the next task if its task left it as it got it
// (empty, mode 0700 or 0755 as created, still ours), else removes it.
func (r *Runner) release(dir string, log *zap.Logger) {
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() && fi.Mode().Perm()&0o022 == 0 && fi.Mode().Perm()&0o700 == 0o700 && emptyDir(dir) {
		r.mu.Lock()
		if len(r.idle) < maxIdleDirs {
			r.idle = append(r.idle, dir)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
	if err := removeAll(dir); err != nil {
		log.Warn("remove working directory", zap.String("dir", dir), zap.Error(err))
	}
}

// emptyDir reports whether dir has no entries.
func emptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && err == io.EOF
}

// removeAll removes dir, making directories writable if the first attempt fails.
func removeAll(dir string) error {
	if os.RemoveAll(dir) == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// sanitize turns name into a safe single path element.
func sanitize(name string) string {
	const maxLen = 64
	b := []byte(name)
	if len(b) > maxLen {
		b = b[:maxLen]
	}
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok || (i == 0 && c == '.') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "run"
	}
	return string(b)
}

// round shortens d for display: milliseconds below a second, tenths above.
func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

func system(out Sink, line string) {
	out.Write(gv1.LogStream_LOG_STREAM_SYSTEM, []byte(line+"\n"))
}

// streamWriter adapts a Sink to an io.Writer for one stream.
type streamWriter struct {
	sink   Sink
	stream gv1.LogStream
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.sink.Write(w.stream, p)
	return len(p), nil
}

// outputBufs are the buffers processes' output is read into.
var outputBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadFrom reads r, a process's output pipe, to its end into a pooled
// buffer. os/exec copies each stream with io.Copy, which takes this path:
// without it every process cost two fresh 32 KiB buffers, and with short
// tasks their garbage collection competed with the processes for the CPU.
func (w streamWriter) ReadFrom(r io.Reader) (int64, error) {
	bp := outputBufs.Get().(*[]byte)
	defer outputBufs.Put(bp)
	var n int64
	for {
		k, err := r.Read(*bp)
		if k > 0 {
			w.sink.Write(w.stream, (*bp)[:k])
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// devNull is every process's standard input, opened once: os/exec opens
// /dev/null for each process given none. Nil (os/exec's own) if it cannot
// be opened.
var devNull = sync.OnceValue(func() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	return f
})

type discard struct{}

func (discard) Write(gv1.LogStream, []byte) {}
