package spec

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Limits of a pipeline. A spec is kept in the replicated state and sent to
// agents, and Parse and Validate run on input from anyone who may submit a
// job: every count and length is bounded, so that neither can take more
// than milliseconds or megabytes. LIMITS.md explains each choice.
const (
	// MaxDocument is the largest pipeline YAML document.
	MaxDocument = 512 << 10
	// MaxExpanded bounds the bytes of the scalars of a YAML document after
	// expanding aliases: each use of an alias counts again.
	MaxExpanded = 1 << 20
	// MaxSpecSize is the largest JobSpec (its protobuf encoding).
	MaxSpecSize = 1 << 20

	MaxTasks    = 1000
	MinPriority = -1000
	MaxPriority = 1000
	MaxRetries  = 100
	// MaxNeeds is the most tasks one task may need.
	MaxNeeds = 100
	// MaxLabels is the most labels a task may select agents by.
	MaxLabels = limit.Labels
	// MaxEnv is the most environment variables of a task, env and
	// secret_env together.
	MaxEnv = 200
	// MaxBuildArgs is the most build arguments of a build.
	MaxBuildArgs = 100
	// MaxImages is the most entries of a deploy's images.
	MaxImages = 100
	// MaxSecrets is the most secrets one task may refer to, and the most
	// entries of build.secrets and of registry_auth.
	MaxSecrets = 32
	// MaxCommandArgs is the most arguments of a command.
	MaxCommandArgs = 1000
	// MaxTemplates is the most different templates of a job (the same
	// template in many places counts once): each takes time to check.
	MaxTemplates = 1000

	// MaxScript is the longest shell script, and the longest command, all
	// its arguments together.
	MaxScript = 128 << 10
	// MaxEnvValue is the longest value of an environment variable or build
	// argument.
	MaxEnvValue = 32 << 10
	// MaxInline is the longest inline manifest of a deploy.
	MaxInline = 512 << 10
	// MaxField is the longest of any other string: paths, URLs, image
	// references, revisions.
	MaxField = 4 << 10
)

// checkSizes checks the counts and lengths of t's fields that have no
// grammar of their own; path is the task's.
func checkSizes(l *errs, t *gv1.TaskSpec, p string) {
	count(l, p+".needs", "needs", len(t.GetNeeds()), MaxNeeds)
	if count(l, p+".labels", "labels", len(t.GetLabels()), MaxLabels) {
		for _, k := range slices.Sorted(maps.Keys(t.GetLabels())) {
			length(l, mapKey(p+".labels", k), k, limit.LabelValue)
			length(l, mapKey(p+".labels", k), t.GetLabels()[k], limit.LabelValue)
		}
	}
	switch x := t.GetExecutor().(type) {
	case *gv1.TaskSpec_Exec:
		e, q := x.Exec, p+".exec"
		command(l, q+".command", e.GetCommand())
		length(l, q+".shell", e.GetShell(), MaxScript)
		lengths(l, q+".env", e.GetEnv(), MaxEnvValue)
		length(l, q+".dir", e.GetDir(), MaxField)
	case *gv1.TaskSpec_Run:
		r, q := x.Run, p+".run"
		tlength(l, q+".image", r.GetImage(), MaxField)
		command(l, q+".command", r.GetCommand())
		tlengths(l, q+".env", r.GetEnv(), MaxEnvValue)
		tlength(l, q+".dir", r.GetDir(), MaxField)
	case *gv1.TaskSpec_Build:
		b, q := x.Build, p+".build"
		git(l, q+".context.git", b.GetContext().GetGit())
		tlength(l, q+".context.dir", b.GetContext().GetDir(), MaxField)
		tlength(l, q+".dockerfile", b.GetDockerfile(), MaxField)
		tlength(l, q+".target", b.GetTarget(), MaxField)
		if count(l, q+".args", "build arguments", len(b.GetArgs()), MaxBuildArgs) {
			tlengths(l, q+".args", b.GetArgs(), MaxEnvValue)
		}
		tlength(l, q+".push", b.GetPush(), MaxField)
		tlength(l, q+".cache.ref", b.GetCache().GetRef(), MaxField)
	case *gv1.TaskSpec_Promote:
		pr, q := x.Promote, p+".promote"
		git(l, q+".repo", pr.GetRepo())
		length(l, q+".branch", pr.GetBranch(), MaxField)
		length(l, q+".file", pr.GetFile(), MaxField)
		length(l, q+".image.name", pr.GetImage().GetName(), MaxField)
		tlength(l, q+".image.ref", pr.GetImage().GetRef(), MaxField)
		tlength(l, q+".message", pr.GetMessage(), MaxField)
	case *gv1.TaskSpec_Deploy:
		d, q := x.Deploy, p+".deploy"
		git(l, q+".source.git", d.GetSource().GetGit())
		tlength(l, q+".source.path", d.GetSource().GetPath(), MaxField)
		tlength(l, q+".source.dir", d.GetSource().GetDir(), MaxField)
		length(l, q+".source.inline", d.GetSource().GetInline(), MaxInline)
		if count(l, q+".images", "images", len(d.GetImages()), MaxImages) {
			for _, k := range slices.Sorted(maps.Keys(d.GetImages())) {
				length(l, mapKey(q+".images", k), k, MaxField)
				tlength(l, mapKey(q+".images", k), d.GetImages()[k], MaxField)
			}
		}
	}
}

// git checks the templated fields of a Git source.
func git(l *errs, p string, g *gv1.GitSource) {
	tlength(l, p+".url", g.GetUrl(), MaxField)
	tlength(l, p+".revision", g.GetRevision(), MaxField)
}

// count reports whether n is at most max, adding a problem if not.
func count(l *errs, field, what string, n, max int) bool {
	if n > max {
		l.add(field, "at most %d %s are allowed, got %d", max, what, n)
		return false
	}
	return true
}

// length checks that s is at most max bytes long.
func length(l *errs, field, s string, max int) {
	if len(s) > max {
		l.add(field, "longer than %s (%d bytes)", size(max), len(s))
	}
}

func lengths(l *errs, field string, m map[string]string, max int) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if len(m[k]) > max {
			length(l, mapKey(field, k), m[k], max)
		}
	}
}

// tlength is length for a field that package render renders: a template
// has its own, lower, bound (checkTemplates).
func tlength(l *errs, field, s string, max int) {
	if !strings.Contains(s, "{{") {
		length(l, field, s, max)
	}
}

func tlengths(l *errs, field string, m map[string]string, max int) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v := m[k]; len(v) > max && !strings.Contains(v, "{{") {
			length(l, mapKey(field, k), v, max)
		}
	}
}

// command checks the number of arguments of a command and their length
// together.
func command(l *errs, field string, args []string) {
	if !count(l, field, "arguments", len(args), MaxCommandArgs) {
		return
	}
	n := 0
	for _, a := range args {
		n += len(a)
	}
	if n > MaxScript {
		l.add(field, "longer than %s, all arguments together (%d bytes)", size(MaxScript), n)
	}
}

// size formats a number of bytes for messages: "4 KiB", "1 MiB".
func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// clip shortens a value quoted in a message.
func clip(s string) string { return limit.Prefix(s, 40) }
