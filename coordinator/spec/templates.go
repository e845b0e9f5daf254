package spec

import (
	"iter"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/render"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Templates (package render) in the string fields of build, run and deploy
// specs: which fields hold them, and that they read outputs only of tasks
// upstream.

// fieldValue is a string field of a spec: its value and its path, made
// only when needed for an error (a command may have many arguments).
type fieldValue struct {
	value string
	// path is the path of the field, or of the list or mapping holding it
	// when index is not negative or inMap is set.
	path  string
	index int
	key   string
	inMap bool
}

// field returns the path of the field.
func (f fieldValue) field() string {
	switch {
	case f.index >= 0:
		return index(f.path, f.index)
	case f.inMap:
		return mapKey(f.path, f.key)
	}
	return f.path
}

// templated yields the string fields of t that package render renders;
// path is the task's.
func templated(t *gv1.TaskSpec, p string) iter.Seq[fieldValue] {
	return func(yield func(fieldValue) bool) {
		more := true
		add := func(f fieldValue) {
			if more && f.value != "" {
				more = yield(f)
			}
		}
		one := func(field, v string) { add(fieldValue{value: v, path: field, index: -1}) }
		addMap := func(field string, m map[string]string) {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				add(fieldValue{value: m[k], path: field, index: -1, key: k, inMap: true})
			}
		}
		switch x := t.Executor.(type) {
		case *gv1.TaskSpec_Build:
			b, q := x.Build, p+".build"
			one(q+".context.git.url", b.GetContext().GetGit().GetUrl())
			one(q+".context.git.revision", b.GetContext().GetGit().GetRevision())
			one(q+".context.dir", b.GetContext().GetDir())
			one(q+".dockerfile", b.GetDockerfile())
			one(q+".target", b.GetTarget())
			addMap(q+".args", b.GetArgs())
			one(q+".push", b.GetPush())
			one(q+".cache.ref", b.GetCache().GetRef())
		case *gv1.TaskSpec_Run:
			r, q := x.Run, p+".run"
			one(q+".image", r.GetImage())
			for i, a := range r.GetCommand() {
				if !more {
					return
				}
				add(fieldValue{value: a, path: q + ".command", index: i})
			}
			addMap(q+".env", r.GetEnv())
			one(q+".dir", r.GetDir())
		case *gv1.TaskSpec_Deploy:
			d, q := x.Deploy, p+".deploy"
			one(q+".source.git.url", d.GetSource().GetGit().GetUrl())
			one(q+".source.git.revision", d.GetSource().GetGit().GetRevision())
			one(q+".source.path", d.GetSource().GetPath())
			one(q+".source.dir", d.GetSource().GetDir())
			addMap(q+".images", d.GetImages())
		case *gv1.TaskSpec_Promote:
			q := p + ".promote"
			one(q+".image.ref", x.Promote.GetImage().GetRef())
			one(q+".message", x.Promote.GetMessage())
		}
	}
}

// checkTemplates checks the templates of t (path is the task's): their
// grammar, and that neither one of them nor the task as a whole can render
// past the bounds of package render, whatever the outputs they read.
func checkTemplates(l *errs, t *gv1.TaskSpec, p string, tc *templates) {
	grow := 0
	for f := range templated(t, p) {
		if strings.IndexByte(f.value, 0) >= 0 {
			l.add(f.field(), "must not contain a NUL byte")
		}
		a, ok := tc.get(f.value)
		if !ok {
			return
		}
		bound, err := a.bound, a.err
		if err != nil {
			l.add(f.field(), "invalid template: %v", err)
			continue
		}
		if bound > render.MaxRendered {
			l.add(f.field(), "template may render to %d bytes, more than the %s allowed (each value it prints counts as %s, the longest output)",
				bound, size(render.MaxRendered), size(limit.OutputValue))
		}
		grow += max(bound-len(f.value), 0)
	}
	if n := proto.Size(t) + grow; n > render.MaxTask {
		l.add(p, "task may render to %d bytes, more than the %s allowed (each value its templates print counts as %s, the longest output)",
			n, size(render.MaxTask), size(limit.OutputValue))
	}
}

// templates analyzes each different template of a job once.
type templates struct {
	seen map[string]*analysis
	// tooMany is set when the job has more than MaxTemplates: they are not
	// analyzed then.
	tooMany bool
}

// analysis is what render.Inspect says of a template.
type analysis struct {
	refs  []string
	bound int
	err   error
}

// newTemplates finds the different templates of tasks, stopping at more
// than MaxTemplates.
func newTemplates(tasks []*gv1.TaskSpec) *templates {
	tc := &templates{seen: map[string]*analysis{}}
	for _, t := range tasks {
		if t == nil {
			continue
		}
		for f := range templated(t, "") {
			if strings.Contains(f.value, "{{") {
				tc.seen[f.value] = nil
			}
			if len(tc.seen) > MaxTemplates {
				tc.tooMany = true
				return tc
			}
		}
	}
	return tc
}

// get returns the analysis of s, or false when templates are not analyzed.
func (tc *templates) get(s string) (*analysis, bool) {
	if !strings.Contains(s, "{{") {
		return &analysis{bound: len(s)}, true
	}
	if tc.tooMany {
		return nil, false
	}
	a := tc.seen[s]
	if a == nil {
		a = &analysis{}
		a.refs, a.bound, a.err = render.Inspect(s)
		tc.seen[s] = a
	}
	return a, true
}

// validateRefs checks that templates read outputs only of tasks upstream of
// their own (needed directly or through needs): only those have finished
// when the task is handed out. When the needs have a cycle (reported
// elsewhere) only references to unknown tasks are checked.
func validateRefs(l *errs, tasks []*gv1.TaskSpec, byName map[string]int, acyclic bool, tc *templates) {
	if tc.tooMany {
		return
	}
	var up *upstream
	for i, t := range tasks {
		if t == nil {
			continue
		}
		for f := range templated(t, index("tasks", i)) {
			a, ok := tc.get(f.value)
			if !ok || a.err != nil {
				continue // reported by the task's validation
			}
			for _, name := range a.refs {
				j, known := byName[name]
				if !known {
					l.add(f.field(), "template reads outputs of unknown task %q", name)
					continue
				}
				if !acyclic {
					continue
				}
				if up == nil {
					up = newUpstream(tasks, byName)
				}
				if !up.has(i, j) {
					l.add(f.field(), "template reads outputs of task %q, which this task does not need; add it to needs", name)
				}
			}
		}
	}
}

// upstream is the transitive closure of the needs of an acyclic graph of
// tasks, as one bit set per task, computed as asked: in time of the number
// of needs times the number of tasks / 64, where a search per task would
// take the number of needs times the number of tasks.
type upstream struct {
	tasks  []*gv1.TaskSpec
	byName map[string]int
	sets   [][]uint64
	done   []bool
}

func newUpstream(tasks []*gv1.TaskSpec, byName map[string]int) *upstream {
	return &upstream{tasks: tasks, byName: byName, sets: make([][]uint64, len(tasks)), done: make([]bool, len(tasks))}
}

// has reports whether task i needs task j, directly or transitively.
func (u *upstream) has(i, j int) bool {
	set := u.of(i)
	return set != nil && set[j/64]&(1<<(j%64)) != 0
}

func (u *upstream) of(i int) []uint64 {
	if u.done[i] {
		return u.sets[i]
	}
	u.done[i] = true
	set := make([]uint64, (len(u.tasks)+63)/64)
	for _, need := range u.tasks[i].GetNeeds() {
		j, ok := u.byName[need]
		if !ok || j == i {
			continue
		}
		set[j/64] |= 1 << (j % 64)
		for w, bits := range u.of(j) {
			set[w] |= bits
		}
	}
	u.sets[i] = set
	return set
}
