package buildkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	gwpb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/pb"
	"golang.org/x/sync/errgroup"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// defaultPath is the PATH of a command run in an image whose configuration
// sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunRequest is one run task attempt.
type RunRequest struct {
	Spec *gv1.RunSpec
	// Env holds extra KEY=VALUE entries (e.g. GANTRY_JOB_ID), set before Spec.Env.
	Env []string
	// Secrets holds the values of the secrets the spec names (secret_env,
	// registry credentials), by secret name. A name missing from it fails
	// the run (a job failure).
	Secrets map[string][]byte
}

// Run runs the command inside the image, through BuildKit's gateway: the
// image is pulled by the daemon and the command runs in a container of it,
// its output streamed to out, its exit code the result. No Docker daemon is
// involved. Canceling ctx stops it.
func (e *Executor) Run(ctx context.Context, req RunRequest, out Sink) Result {
	spec := req.Spec
	if spec.GetImage() == "" || len(spec.GetCommand()) == 0 {
		return jobFailure(errors.New("run: image and command are required"))
	}
	secretEnv, err := runSecretEnv(spec.GetSecretEnv(), req.Secrets)
	if err != nil {
		return jobFailure(err)
	}
	creds, err := registryCredentials("run.registry_auth", spec.GetRegistryAuth(), req.Secrets)
	if err != nil {
		return jobFailure(err)
	}
	c, fail := e.connect(ctx)
	if fail != nil {
		return *fail
	}
	defer c.Close()

	stdout := &sinkWriter{out: out, stream: gv1.LogStream_LOG_STREAM_STDOUT}
	stderr := &sinkWriter{out: out, stream: gv1.LogStream_LOG_STREAM_STDERR}
	exit := -1
	var procErr error
	build := func(ctx context.Context, gc gateway.Client) (*gateway.Result, error) {
		// The image's configuration (environment, working directory)
		// applies, as it would in a container runtime.
		img := llb.Image(spec.GetImage(), llb.WithMetaResolver(sourceresolver.NewImageMetaResolver(gc)))
		env, cwd, err := imageConfig(ctx, img)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.GetImage(), err)
		}
		env = append(env, req.Env...)
		for _, k := range slices.Sorted(maps.Keys(spec.GetEnv())) {
			env = append(env, k+"="+spec.GetEnv()[k])
		}
		env = append(env, secretEnv...)
		if spec.GetDir() != "" {
			cwd = spec.GetDir()
		}
		def, err := img.Marshal(ctx)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.GetImage(), err)
		}
		res, err := gc.Solve(ctx, gateway.SolveRequest{Definition: def.ToPB()})
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", spec.GetImage(), err)
		}
		ref, err := res.SingleRef()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", spec.GetImage(), err)
		}
		ctr, err := gc.NewContainer(ctx, gateway.NewContainerRequest{
			Mounts: []gateway.Mount{{Dest: "/", MountType: pb.MountType_BIND, Ref: ref}},
		})
		if err != nil {
			return nil, fmt.Errorf("create container of %s: %w", spec.GetImage(), err)
		}
		defer ctr.Release(context.WithoutCancel(ctx))
		proc, err := ctr.Start(ctx, gateway.StartRequest{
			Args: spec.GetCommand(), Env: env, Cwd: cwd, Stdout: stdout, Stderr: stderr,
		})
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.GetCommand()[0], err)
		}
		procErr = proc.Wait()
		var ee *gwpb.ExitError
		switch {
		case procErr == nil:
			exit = 0
		case errors.As(procErr, &ee) && ee.ExitCode != gwpb.UnknownExitStatus:
			exit = int(ee.ExitCode)
		}
		return gateway.NewResult(), nil
	}

	ch := make(chan *bkclient.SolveStatus)
	prog := newProgress(out)
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		_, err := c.Build(ectx, bkclient.SolveOpt{Session: attachables(nil, creds)}, "gantry", build, ch)
		return err
	})
	eg.Go(func() error {
		prog.consume(ch)
		return nil
	})
	if err := eg.Wait(); err != nil {
		return classify(ctx, "run", err)
	}
	switch {
	case ctx.Err() != nil:
		return jobFailure(fmt.Errorf("run canceled: %w", ctx.Err()))
	case exit == 0:
		return Result{}
	case exit > 0:
		return Result{ExitCode: exit, Class: gv1.FailureClass_FAILURE_CLASS_JOB, Err: fmt.Errorf("exit status %d", exit)}
	default:
		return jobFailure(fmt.Errorf("run %s: %w", spec.GetCommand()[0], procErr))
	}
}

// runSecretEnv returns the KEY=VALUE entries of RunSpec.secret_env.
func runSecretEnv(vars map[string]string, values map[string][]byte) ([]string, error) {
	var env []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("run.secret_env: bad environment variable name %q", k)
		}
		field := fmt.Sprintf("run.secret_env[%s]", k)
		v, err := lookup(values, field, vars[k])
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("%s: secret %q holds a NUL byte, which an environment variable cannot", field, vars[k])
		}
		env = append(env, k+"="+string(v))
	}
	return env, nil
}

// imageConfig returns the environment (with a default PATH) and working
// directory an image's configuration sets.
func imageConfig(ctx context.Context, img llb.State) ([]string, string, error) {
	list, err := img.Env(ctx)
	if err != nil {
		return nil, "", err
	}
	env := list.ToArray()
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		env = append([]string{defaultPath}, env...)
	}
	dir, err := img.GetDir(ctx)
	if err != nil {
		return nil, "", err
	}
	if dir == "" {
		dir = "/"
	}
	return env, dir, nil
}

// sinkWriter is the io.WriteCloser a gateway process writes its output to.
type sinkWriter struct {
	out    Sink
	stream gv1.LogStream
}

func (w *sinkWriter) Write(p []byte) (int, error) {
	w.out.Write(w.stream, p)
	return len(p), nil
}

func (w *sinkWriter) Close() error { return nil }
