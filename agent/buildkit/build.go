package buildkit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/tonistiigi/fsutil"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/gantryci/gantry/internal/buildkey"
	"github.com/gantryci/gantry/internal/gitsrc"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// BuildRequest is one build task attempt.
type BuildRequest struct {
	Spec *gv1.BuildSpec
	// Name names the checkout directory, e.g. "jobid-task-attempt".
	Name string
	// Secrets holds the values of the secrets the spec names (build
	// secrets, registry credentials, Git credentials), by secret name. A
	// name missing from it fails the build (a job failure).
	Secrets map[string][]byte
}

// Build runs the build to the end and pushes the image when the spec says
// so. Canceling ctx cancels the solve.
func (e *Executor) Build(ctx context.Context, req BuildRequest, out Sink) Result {
	spec := req.Spec
	if spec == nil {
		return jobFailure(errors.New("build spec is missing"))
	}
	secrets, err := buildSecrets(spec.GetSecrets(), req.Secrets)
	if err != nil {
		return jobFailure(err)
	}
	creds, err := registryCredentials("build.registry_auth", spec.GetRegistryAuth(), req.Secrets)
	if err != nil {
		return jobFailure(err)
	}
	var gitCred []byte
	if name := spec.GetContext().GetGit().GetSecret(); name != "" {
		if gitCred, err = lookup(req.Secrets, "build.context.git.secret", name); err != nil {
			return jobFailure(err)
		}
	}
	outputs := map[string]string{}
	dir := spec.GetContext().GetDir()
	if g := spec.GetContext().GetGit(); g.GetUrl() != "" {
		checkout, err := os.MkdirTemp(e.root, sanitize(req.Name)+"-")
		if err != nil {
			return Result{ExitCode: -1, Class: gv1.FailureClass_FAILURE_CLASS_INFRA, Err: fmt.Errorf("create checkout directory: %w", err)}
		}
		defer os.RemoveAll(checkout)
		rev, err := gitsrc.Clone(ctx, g.GetUrl(), g.GetRevision(), checkout, gitCred)
		if err != nil {
			return jobFailure(err)
		}
		out.Write(gv1.LogStream_LOG_STREAM_SYSTEM, fmt.Appendf(nil, "checked out %s at %s\n", gitsrc.Redact(g.GetUrl()), rev))
		outputs[OutputRevision] = rev
		dir = checkout
	}
	if dir == "" {
		return jobFailure(errors.New("build.context: git or dir is required"))
	}
	push, err := expandRevision(spec.GetPush(), outputs[OutputRevision])
	if err != nil {
		return jobFailure(err)
	}
	ctxFS, err := fsutil.NewFS(dir)
	if err != nil {
		return jobFailure(fmt.Errorf("build context %s: %w", dir, err))
	}
	c, fail := e.connect(ctx)
	if fail != nil {
		return *fail
	}
	defer c.Close()

	opt := solveOpt(spec, push, ctxFS)
	opt.Session = attachables(secrets, creds)
	ch := make(chan *bkclient.SolveStatus)
	prog := newProgress(out)
	var resp *bkclient.SolveResponse
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(ectx, nil, opt, ch)
		return err
	})
	eg.Go(func() error {
		prog.consume(ch)
		return nil
	})
	if err := eg.Wait(); err != nil {
		return classify(ctx, "build", err)
	}
	e.markWarm(buildkey.For(spec))
	if push != "" {
		d := resp.ExporterResponse[exptypes.ExporterImageDigestKey]
		if d == "" {
			return jobFailure(errors.New("build: the image exporter returned no digest"))
		}
		outputs[OutputDigest] = d
		outputs[OutputRef] = repository(push) + "@" + d
		out.Write(gv1.LogStream_LOG_STREAM_SYSTEM, fmt.Appendf(nil, "pushed %s\n", outputs[OutputRef]))
	}
	e.log.Debug("build done", zap.String("push", push), zap.Any("outputs", outputs))
	return Result{Outputs: outputs}
}

func solveOpt(spec *gv1.BuildSpec, push string, ctxFS fsutil.FS) bkclient.SolveOpt {
	dockerfile := spec.GetDockerfile()
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	attrs := map[string]string{"filename": dockerfile}
	if spec.GetTarget() != "" {
		attrs["target"] = spec.GetTarget()
	}
	for _, k := range slices.Sorted(maps.Keys(spec.GetArgs())) {
		attrs["build-arg:"+k] = spec.GetArgs()[k]
	}
	opt := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": ctxFS},
	}
	if push != "" {
		opt.Exports = []bkclient.ExportEntry{{Type: bkclient.ExporterImage, Attrs: map[string]string{
			"name": push, "push": "true", "registry.insecure": "true",
		}}}
	}
	if ref := spec.GetCache().GetRef(); ref != "" {
		opt.CacheImports = []bkclient.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": ref, "registry.insecure": "true"}}}
		opt.CacheExports = []bkclient.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": ref, "mode": "max", "registry.insecure": "true"}}}
	}
	return opt
}

// expandRevision substitutes {{ .Revision }} in the push reference, the one
// template the leader leaves for the agent.
func expandRevision(push, rev string) (string, error) {
	if !strings.Contains(push, "{{") {
		return push, nil
	}
	tmpl, err := template.New("push").Option("missingkey=error").Parse(push)
	if err != nil {
		return "", fmt.Errorf("build.push: %w", err)
	}
	data := map[string]any{}
	if rev != "" {
		data["Revision"] = rev
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("build.push: %w (.Revision is known only for a Git context)", err)
	}
	return b.String(), nil
}

// repository strips the tag or digest from an image reference.
func repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '-' || c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "build"
	}
	return filepath.Base(string(b))
}
