package spec

import (
	"maps"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gantryci/gantry/coordinator/render"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The build and run executors: an image built with BuildKit, and a command
// run inside an image. Their string fields may hold templates (package
// render), checked here for syntax and for naming only tasks upstream.

func decodeBuild(d *decoder, n *yaml.Node, p string, t *gv1.TaskSpec) {
	b := &gv1.BuildSpec{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"context":    func(p string, v *yaml.Node) { b.Context = decodeContext(d, v, p) },
		"dockerfile": func(p string, v *yaml.Node) { b.Dockerfile = d.str(v, p) },
		"target":     func(p string, v *yaml.Node) { b.Target = d.str(v, p) },
		"args":       func(p string, v *yaml.Node) { b.Args = d.strMap(v, p) },
		"push":       func(p string, v *yaml.Node) { b.Push = d.str(v, p) },
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
		"git": func(p string, v *yaml.Node) {
			c.Git = &gv1.GitSource{}
			d.fields(v, p, map[string]func(string, *yaml.Node){
				"url":      func(p string, v *yaml.Node) { c.Git.Url = d.str(v, p) },
				"revision": func(p string, v *yaml.Node) { c.Git.Revision = d.str(v, p) },
			})
		},
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
		l.add(p+".context.dir", "must be an absolute path on the agent, got %q", c.Dir)
	}
	if df := b.GetDockerfile(); df != "" && !strings.Contains(df, "{{") {
		if path.IsAbs(df) || path.Clean(df) == ".." || strings.HasPrefix(path.Clean(df), "../") {
			l.add(p+".dockerfile", "must be a path inside the context, got %q", df)
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
	for _, f := range templated(t, strings.TrimSuffix(p, ".build")) {
		noNUL(l, f.field, f.value)
		if _, err := render.Refs(f.value); err != nil {
			l.add(f.field, "invalid template: %v", err)
		}
	}
	return true
}

func decodeRun(d *decoder, n *yaml.Node, p string, t *gv1.TaskSpec) {
	r := &gv1.RunSpec{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"image": func(p string, v *yaml.Node) { r.Image = d.str(v, p) },
		"command": func(p string, v *yaml.Node) {
			r.Command = d.strs(v, p, " (argv; for a script use [\"/bin/sh\", \"-c\", \"...\"])")
		},
		"env": func(p string, v *yaml.Node) { r.Env = d.strMap(v, p) },
		"dir": func(p string, v *yaml.Node) { r.Dir = d.str(v, p) },
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
		l.add(p+".dir", "must be an absolute path inside the image, got %q", r.GetDir())
	}
	for _, f := range templated(t, strings.TrimSuffix(p, ".run")) {
		noNUL(l, f.field, f.value)
		if _, err := render.Refs(f.value); err != nil {
			l.add(f.field, "invalid template: %v", err)
		}
	}
	return true
}

// fieldValue is a string field of a spec and its path.
type fieldValue struct{ field, value string }

// templated lists the string fields of t that package render renders; path
// is the task's.
func templated(t *gv1.TaskSpec, p string) []fieldValue {
	var out []fieldValue
	add := func(field, v string) {
		if v != "" {
			out = append(out, fieldValue{field, v})
		}
	}
	addMap := func(field string, m map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			add(mapKey(field, k), m[k])
		}
	}
	switch x := t.Executor.(type) {
	case *gv1.TaskSpec_Build:
		b, q := x.Build, p+".build"
		add(q+".context.git.url", b.GetContext().GetGit().GetUrl())
		add(q+".context.git.revision", b.GetContext().GetGit().GetRevision())
		add(q+".context.dir", b.GetContext().GetDir())
		add(q+".dockerfile", b.GetDockerfile())
		add(q+".target", b.GetTarget())
		addMap(q+".args", b.GetArgs())
		add(q+".push", b.GetPush())
		add(q+".cache.ref", b.GetCache().GetRef())
	case *gv1.TaskSpec_Run:
		r, q := x.Run, p+".run"
		add(q+".image", r.GetImage())
		for i, a := range r.GetCommand() {
			add(index(q+".command", i), a)
		}
		addMap(q+".env", r.GetEnv())
		add(q+".dir", r.GetDir())
	case *gv1.TaskSpec_Deploy:
		d, q := x.Deploy, p+".deploy"
		add(q+".source.git.url", d.GetSource().GetGit().GetUrl())
		add(q+".source.git.revision", d.GetSource().GetGit().GetRevision())
		add(q+".source.path", d.GetSource().GetPath())
		add(q+".source.dir", d.GetSource().GetDir())
		addMap(q+".images", d.GetImages())
	}
	return out
}

// validateRefs checks that templates read outputs only of tasks upstream of
// their own (needed directly or through needs): only those have finished
// when the task is handed out.
func validateRefs(l *errs, tasks []*gv1.TaskSpec, byName map[string]int) {
	for i, t := range tasks {
		if t == nil {
			continue
		}
		var up map[string]bool
		for _, f := range templated(t, index("tasks", i)) {
			names, err := render.Refs(f.value)
			if err != nil {
				continue // reported by the executor's validation
			}
			for _, name := range names {
				if up == nil {
					up = upstream(tasks, byName, i)
				}
				switch _, known := byName[name]; {
				case !known:
					l.add(f.field, "template reads outputs of unknown task %q", name)
				case !up[name]:
					l.add(f.field, "template reads outputs of task %q, which this task does not need; add it to needs", name)
				}
			}
		}
	}
}

// upstream returns the tasks that task i needs, directly or transitively.
func upstream(tasks []*gv1.TaskSpec, byName map[string]int, i int) map[string]bool {
	seen := map[string]bool{}
	stack := slices.Clone(tasks[i].GetNeeds())
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		j, ok := byName[n]
		if seen[n] || !ok {
			continue
		}
		seen[n] = true
		stack = append(stack, tasks[j].GetNeeds()...)
	}
	return seen
}
