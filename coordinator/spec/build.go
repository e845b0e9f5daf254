package spec

import (
	"maps"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The build and run executors: an image built with BuildKit, and a command
// run inside an image. Their string fields may hold templates (package
// render), checked here for syntax and for naming only tasks upstream.

func decodeBuild(d *decoder, n *yaml.Node, p string, t *gv1.TaskSpec) {
	b := &gv1.BuildSpec{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"context":       func(p string, v *yaml.Node) { b.Context = decodeContext(d, v, p) },
		"dockerfile":    func(p string, v *yaml.Node) { b.Dockerfile = d.str(v, p) },
		"target":        func(p string, v *yaml.Node) { b.Target = d.str(v, p) },
		"args":          func(p string, v *yaml.Node) { b.Args = d.strMap(v, p, MaxBuildArgs, "build arguments") },
		"push":          func(p string, v *yaml.Node) { b.Push = d.str(v, p) },
		"secrets":       func(p string, v *yaml.Node) { b.Secrets = d.strMap(v, p, MaxSecrets, "entries") },
		"registry_auth": func(p string, v *yaml.Node) { b.RegistryAuth = d.strMap(v, p, MaxSecrets, "entries") },
		"cache": func(p string, v *yaml.Node) {
			b.Cache = &gv1.BuildCache{}
			d.fields(v, p, map[string]func(string, *yaml.Node){
				"ref": func(p string, v *yaml.Node) { b.Cache.Ref = d.str(v, p) },
			})
		},
	})
	t.Executor = &gv1.TaskSpec_Build{Build: b}
}

func decodeContext(d *decoder, n *yaml.Node, p string) *gv1.BuildContext {
	c := &gv1.BuildContext{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"git": func(p string, v *yaml.Node) { c.Git = decodeGit(d, v, p) },
		"dir": func(p string, v *yaml.Node) { c.Dir = d.str(v, p) },
	})
	return c
}

func validateBuild(l *errs, t *gv1.TaskSpec, p string) bool {
	x, ok := t.Executor.(*gv1.TaskSpec_Build)
	if !ok {
		return false
	}
	p += ".build"
	b := x.Build
	if b == nil {
		l.add(p, "required")
		return true
	}
	c := b.GetContext()
	switch {
	case c == nil:
		l.add(p+".context", "required: {git: {url: ..., revision: ...}} or {dir: /path/on/agent}")
	case c.Git != nil && c.Dir != "":
		l.add(p+".context", "set either git or dir, not both")
	case c.Git != nil:
		if strings.TrimSpace(c.Git.GetUrl()) == "" {
			l.add(p+".context.git.url", "required")
		}
	case c.Dir == "":
		l.add(p+".context", "git or dir is required")
	case !strings.HasPrefix(c.Dir, "/") && !strings.Contains(c.Dir, "{{"):
		l.add(p+".context.dir", "must be an absolute path on the agent, got %q", clip(c.Dir))
	}
	if df := b.GetDockerfile(); df != "" && !strings.Contains(df, "{{") {
		if path.IsAbs(df) || path.Clean(df) == ".." || strings.HasPrefix(path.Clean(df), "../") {
			l.add(p+".dockerfile", "must be a path inside the context, got %q", clip(df))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.GetArgs())) {
		if !envName(k) {
			l.add(mapKey(p+".args", k), "invalid build argument name; use letters, digits and '_', not starting with a digit")
		}
	}
	if b.GetPush() != "" && strings.TrimSpace(b.GetPush()) != b.GetPush() {
		l.add(p+".push", "must not have surrounding spaces")
	}
	if b.GetCache() != nil && b.GetCache().GetRef() == "" {
		l.add(p+".cache.ref", "required")
	}
	validateSecretMap(l, p+".secrets", b.GetSecrets(), secretID)
	validateSecretMap(l, p+".registry_auth", b.GetRegistryAuth(), registryHost)
	if g := c.GetGit(); g != nil && g.GetSecret() != "" {
		secretName(l, p+".context.git.secret", g.GetSecret())
	}
	return true
}

func decodeRun(d *decoder, n *yaml.Node, path string, t *gv1.TaskSpec) {
	r := &gv1.RunSpec{}
	d.fields(n, path, map[string]func(string, *yaml.Node){
		"image": func(p string, v *yaml.Node) { r.Image = d.str(v, p) },
		"command": func(p string, v *yaml.Node) {
			r.Command = d.strs(v, p, " (argv; for a script use [\"/bin/sh\", \"-c\", \"...\"])")
		},
		"env":           func(p string, v *yaml.Node) { r.Env, r.SecretEnv = d.env(v, p, path+".secret_env") },
		"dir":           func(p string, v *yaml.Node) { r.Dir = d.str(v, p) },
		"registry_auth": func(p string, v *yaml.Node) { r.RegistryAuth = d.strMap(v, p, MaxSecrets, "entries") },
	})
	t.Executor = &gv1.TaskSpec_Run{Run: r}
}

func validateRun(l *errs, t *gv1.TaskSpec, p string) bool {
	x, ok := t.Executor.(*gv1.TaskSpec_Run)
	if !ok {
		return false
	}
	p += ".run"
	r := x.Run
	if r == nil {
		l.add(p, "required")
		return true
	}
	if strings.TrimSpace(r.GetImage()) == "" {
		l.add(p+".image", "required, e.g. \"{{ .Tasks.build.Outputs.ref }}\"")
	}
	switch {
	case len(r.GetCommand()) == 0:
		l.add(p+".command", "required")
	case r.GetCommand()[0] == "":
		l.add(index(p+".command", 0), "program name must not be empty")
	}
	for _, k := range slices.Sorted(maps.Keys(r.GetEnv())) {
		if !envName(k) {
			l.add(mapKey(p+".env", k), "invalid environment variable name; use letters, digits and '_', not starting with a digit")
		}
	}
	if r.GetDir() != "" && !strings.HasPrefix(r.GetDir(), "/") && !strings.Contains(r.GetDir(), "{{") {
		l.add(p+".dir", "must be an absolute path inside the image, got %q", clip(r.GetDir()))
	}
	validateSecretEnv(l, p, r.GetEnv(), r.GetSecretEnv())
	validateSecretMap(l, p+".registry_auth", r.GetRegistryAuth(), registryHost)
	return true
}
