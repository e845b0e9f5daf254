// Package buildkit runs the build and run tasks of a Gantry agent on a
// BuildKit daemon: builds with the Dockerfile frontend (context from a Git
// revision or a directory, pushed to a registry) and commands run inside an
// image built earlier, with BuildKit's progress streamed to a Sink.
package buildkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/grpcerrors"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Outputs a build records.
const (
	// OutputDigest is the manifest digest of the pushed image.
	OutputDigest = "digest"
	// OutputRef is the pushed reference pinned by digest: repo@sha256:...
	OutputRef = "ref"
	// OutputRevision is the commit SHA a Git context resolved to.
	OutputRevision = "revision"
)

// maxWarm bounds the cache keys an executor remembers (and announces); at
// most limit.WarmCache.
const maxWarm = 32

// connectTimeout bounds the check that the daemon answers.
const connectTimeout = 5 * time.Second

// Sink receives output as it is produced. Write may be called from several
// goroutines; the sink must not keep p. (agent/exec's sinks satisfy it.)
type Sink interface {
	Write(stream gv1.LogStream, p []byte)
}

// Config configures an Executor.
type Config struct {
	// Addr is the daemon's address, e.g. unix:///run/buildkit/buildkitd.sock.
	Addr string
	// WorkRoot is the parent of per-attempt checkouts (created if missing).
	WorkRoot string
}

// Executor runs build and run tasks. It is safe for concurrent use.
type Executor struct {
	addr string
	root string
	log  *zap.Logger

	mu   sync.Mutex
	warm []string // cache keys, most recent first
}

// New returns an Executor. It does not contact the daemon: a daemon that is
// down fails the tasks that need it, as infrastructure failures.
func New(cfg Config, log *zap.Logger) (*Executor, error) {
	if cfg.Addr == "" {
		return nil, errors.New("buildkit address is required")
	}
	if cfg.WorkRoot == "" {
		return nil, errors.New("work root is required")
	}
	root, err := filepath.Abs(cfg.WorkRoot)
	if err != nil {
		return nil, fmt.Errorf("work root: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create work root: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Executor{addr: cfg.Addr, root: root, log: log.Named("buildkit")}, nil
}

// Addr is the daemon's address.
func (e *Executor) Addr() string { return e.addr }

// Warm returns the cache keys of builds this executor completed, most
// recent first (see internal/buildkey).
func (e *Executor) Warm() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.warm)
}

func (e *Executor) markWarm(key string) {
	if key == "" || len(key) > limit.WarmCacheKey {
		return // a key the coordinator would refuse in a heartbeat
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.warm = slices.DeleteFunc(e.warm, func(k string) bool { return k == key })
	e.warm = slices.Insert(e.warm, 0, key)
	if len(e.warm) > maxWarm {
		e.warm = e.warm[:maxWarm]
	}
}

// Result is the outcome of a build or run task.
type Result struct {
	// ExitCode is the command's exit code for a run task; -1 when no
	// command ran to its end; 0 for a successful build.
	ExitCode int
	// Class is FAILURE_CLASS_UNSPECIFIED on success, FAILURE_CLASS_INFRA
	// when the daemon could not be reached, FAILURE_CLASS_JOB otherwise.
	Class gv1.FailureClass
	// Err is nil on success.
	Err error
	// Outputs are recorded with the task's result (OutputDigest, ...).
	Outputs map[string]string
}

// Success reports whether the task succeeded.
func (r Result) Success() bool {
	return r.Err == nil && r.Class == gv1.FailureClass_FAILURE_CLASS_UNSPECIFIED
}

func jobFailure(err error) Result {
	return Result{ExitCode: -1, Class: gv1.FailureClass_FAILURE_CLASS_JOB, Err: err}
}

// connect returns a client of a daemon that answered. A daemon that does
// not answer is an infrastructure failure.
func (e *Executor) connect(ctx context.Context) (*bkclient.Client, *Result) {
	c, err := bkclient.New(ctx, e.addr)
	if err != nil {
		return nil, &Result{ExitCode: -1, Class: gv1.FailureClass_FAILURE_CLASS_INFRA, Err: fmt.Errorf("buildkit %s: %w", e.addr, err)}
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := c.ListWorkers(cctx); err != nil {
		c.Close()
		if ctx.Err() != nil {
			r := jobFailure(fmt.Errorf("canceled: %w", ctx.Err()))
			return nil, &r
		}
		return nil, &Result{ExitCode: -1, Class: gv1.FailureClass_FAILURE_CLASS_INFRA, Err: fmt.Errorf("buildkit %s unreachable: %w", e.addr, err)}
	}
	return c, nil
}

// classify turns an error of a solve into a result: the daemon going away
// is an infrastructure failure, anything else (a Dockerfile error, a failed
// RUN step, a cancel) fails the job.
func classify(ctx context.Context, what string, err error) Result {
	if ctx.Err() != nil {
		return jobFailure(fmt.Errorf("%s canceled: %w", what, ctx.Err()))
	}
	if grpcerrors.Code(err) == codes.Unavailable {
		return Result{ExitCode: -1, Class: gv1.FailureClass_FAILURE_CLASS_INFRA, Err: fmt.Errorf("%s: buildkit unavailable: %w", what, err)}
	}
	return jobFailure(fmt.Errorf("%s: %w", what, err))
}
