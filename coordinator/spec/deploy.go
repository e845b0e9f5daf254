package spec

import (
	"maps"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The deploy executor: Kubernetes manifests applied to a cluster by an agent
// that reaches it.

func decodeDeploy(d *decoder, n *yaml.Node, p string, t *gv1.TaskSpec) {
	x := &gv1.DeploySpec{}
	d.fields(n, p, map[string]func(string, *yaml.Node){
		"app":       func(p string, v *yaml.Node) { x.App = d.str(v, p) },
		"cluster":   func(p string, v *yaml.Node) { x.Cluster = d.str(v, p) },
		"namespace": func(p string, v *yaml.Node) { x.Namespace = d.str(v, p) },
		"source": func(p string, v *yaml.Node) {
			s := &gv1.ManifestSource{}
			d.fields(v, p, map[string]func(string, *yaml.Node){
				"git":    func(p string, v *yaml.Node) { s.Git = decodeGit(d, v, p) },
				"path":   func(p string, v *yaml.Node) { s.Path = d.str(v, p) },
				"dir":    func(p string, v *yaml.Node) { s.Dir = d.str(v, p) },
				"inline": func(p string, v *yaml.Node) { s.Inline = d.str(v, p) },
			})
			x.Source = s
		},
		"images":         func(p string, v *yaml.Node) { x.Images = d.strMap(v, p, MaxImages, "images") },
		"prune":          func(p string, v *yaml.Node) { x.Prune = d.boolean(v, p) },
		"health_timeout": func(p string, v *yaml.Node) { x.HealthTimeout = d.duration(v, p) },
		"no_rollback":    func(p string, v *yaml.Node) { x.NoRollback = d.boolean(v, p) },
	})
	t.Executor = &gv1.TaskSpec_Deploy{Deploy: x}
}

func validateDeploy(l *errs, t *gv1.TaskSpec, p string) bool {
	x, ok := t.Executor.(*gv1.TaskSpec_Deploy)
	if !ok {
		return false
	}
	p += ".deploy"
	dep := x.Deploy
	if dep == nil {
		l.add(p, "required")
		return true
	}
	if dep.GetCluster() == "" {
		l.add(p+".cluster", "required: the name of a cluster an agent reaches (e.g. local)")
	} else if err := name.Check(dep.GetCluster()); err != nil {
		l.add(p+".cluster", "invalid cluster name: %s", nameProblem(err))
	}
	if ns := dep.GetNamespace(); ns != "" && !dns1123Label(ns) {
		l.add(p+".namespace", "invalid namespace %q; use lower-case letters, digits and '-', at most 63 characters", clip(ns))
	}
	if a := dep.GetApp(); a != "" {
		if err := name.Check(a); err != nil {
			l.add(p+".app", "invalid application name: %s", nameProblem(err))
		}
	}
	s := dep.GetSource()
	n := 0
	if s.GetGit() != nil {
		n++
		if strings.TrimSpace(s.GetGit().GetUrl()) == "" {
			l.add(p+".source.git.url", "required")
		}
		if s.GetGit().GetSecret() != "" {
			secretName(l, p+".source.git.secret", s.GetGit().GetSecret())
		}
	}
	if s.GetDir() != "" {
		n++
		if !strings.HasPrefix(s.GetDir(), "/") && !strings.Contains(s.GetDir(), "{{") {
			l.add(p+".source.dir", "must be an absolute path on the agent, got %q", clip(s.GetDir()))
		}
	}
	if s.GetInline() != "" {
		n++
	}
	switch {
	case n == 0:
		l.add(p+".source", "required: one of git ({url, revision} with path), dir or inline")
	case n > 1:
		l.add(p+".source", "set one of git, dir or inline")
	}
	if pp := s.GetPath(); pp != "" && !strings.Contains(pp, "{{") {
		if path.IsAbs(pp) || path.Clean(pp) == ".." || strings.HasPrefix(path.Clean(pp), "../") {
			l.add(p+".source.path", "must be a relative path inside the repository, got %q", clip(pp))
		}
		if s.GetInline() != "" {
			l.add(p+".source.path", "applies to git or dir sources, not inline")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(dep.GetImages())) {
		if k == "" || strings.ContainsAny(k, " @") {
			l.add(mapKey(p+".images", k), "must be an image repository without tag or digest")
		}
		if strings.TrimSpace(dep.GetImages()[k]) == "" {
			l.add(mapKey(p+".images", k), "must be an image reference")
		}
	}
	if ht := dep.GetHealthTimeout(); ht != nil && ht.AsDuration() <= 0 {
		l.add(p+".health_timeout", "must be positive")
	}
	if dep.GetTrigger() != "" {
		l.add(p+".trigger", "is set by Gantry's GitOps controller, not in a pipeline")
	}
	return true
}

// validName accepts names of applications and clusters: they appear in
// subjects, labels and file names.
func validName(s string) bool {
	return name.Check(s) == nil
}

// ValidName reports whether s is a valid application or cluster name.
func ValidName(s string) bool { return validName(s) }

// dns1123Label reports whether s is a valid Kubernetes namespace name.
func dns1123Label(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// ValidNamespace reports whether s is a valid Kubernetes namespace name.
func ValidNamespace(s string) bool { return dns1123Label(s) }
