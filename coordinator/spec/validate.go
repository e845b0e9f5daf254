package spec

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Validate checks a JobSpec however it was built (YAML or gRPC API). On
// failure it returns an *Error or, when there are several problems, an
// ErrorList; the errors carry no line.
func Validate(s *gv1.JobSpec) error { return validate(s).err() }

func validate(s *gv1.JobSpec) errs {
	var l errs
	if s == nil {
		l.add("", "job spec is missing")
		return l
	}
	if n := proto.Size(s); n > MaxSpecSize {
		l.add("", "job spec is %d bytes, more than the %s allowed", n, size(MaxSpecSize))
		return l
	}
	token(&l, "name", s.Name, true)
	if s.Priority < MinPriority || s.Priority > MaxPriority {
		l.add("priority", "must be between %d and %d, got %d", MinPriority, MaxPriority, s.Priority)
	}
	switch n := len(s.Tasks); {
	case n == 0:
		l.add("tasks", "at least one task is required")
		return l
	case n > MaxTasks:
		l.add("tasks", "at most %d tasks are allowed, got %d", MaxTasks, n)
		return l
	}
	tc := newTemplates(s.Tasks)
	if tc.tooMany {
		l.add("tasks", "at most %d different templates are allowed in a job, got more", MaxTemplates)
	}
	byName := make(map[string]int, len(s.Tasks))
	for i, t := range s.Tasks {
		p := index("tasks", i)
		if t == nil {
			l.add(p, "task is missing")
			continue
		}
		validateTask(&l, t, p, tc)
		if t.Name == "" {
			continue
		}
		if first, ok := byName[t.Name]; ok {
			l.add(p+".name", "duplicate task name %q, also used by tasks[%d]", clip(t.Name), first)
			continue
		}
		byName[t.Name] = i
	}
	for i, t := range s.Tasks {
		if len(t.GetNeeds()) > MaxNeeds {
			continue // reported by validateTask
		}
		p := index("tasks", i) + ".needs"
		seen := make(map[string]bool, len(t.GetNeeds()))
		for j, need := range t.GetNeeds() {
			switch _, ok := byName[need]; {
			case need == t.Name:
				l.add(index(p, j), "a task cannot need itself")
			case !ok:
				l.add(index(p, j), "unknown task %q", clip(need))
			case seen[need]:
				l.add(index(p, j), "%q is listed twice", clip(need))
			}
			seen[need] = true
		}
	}
	field, cycle := findCycle(s.Tasks, byName)
	validateRefs(&l, s.Tasks, byName, cycle == nil, tc)
	if cycle != nil {
		l.add(field, "cycle: %s", strings.Join(cycle, " -> "))
	}
	return l
}

func validateTask(l *errs, t *gv1.TaskSpec, path string, tc *templates) {
	token(l, path+".name", t.Name, true)
	for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
		if k == "" {
			l.add(mapKey(path+".labels", k), "label names must not be empty")
		}
	}
	if t.Retries < 0 || t.Retries > MaxRetries {
		l.add(path+".retries", "must be between 0 and %d, got %d", MaxRetries, t.Retries)
	}
	if t.Timeout != nil {
		if err := t.Timeout.CheckValid(); err != nil {
			l.add(path+".timeout", "invalid duration: %v", err)
		} else if d := t.Timeout.AsDuration(); d < 0 {
			l.add(path+".timeout", "must not be negative, got %s", d)
		}
	}
	token(l, path+".concurrency", t.Concurrency, false)
	validateWhen(l, t.GetWhen(), path+".when")
	checkSizes(l, t, path)
	if t.Executor == nil {
		keys := make([]string, len(executors))
		for i, ex := range executors {
			keys[i] = ex.key
		}
		l.add(path, "missing executor; set one of: %s", strings.Join(keys, ", "))
		return
	}
	for _, ex := range executors {
		if ex.validate(l, t, path) {
			checkTemplates(l, t, path, tc)
			if n := len(SecretRefs(t)); n > MaxSecrets {
				l.add(path, "refers to %d secrets, at most %d are allowed", n, MaxSecrets)
			}
			return
		}
	}
	l.add(path, "unsupported executor %T", t.Executor)
}

// token checks a name that becomes a NATS subject token.
func token(l *errs, field, s string, required bool) {
	if s == "" {
		if required {
			l.add(field, "required")
		}
		return
	}
	if err := name.Token(s); err != nil {
		l.add(field, "%v", err)
	}
}

// findCycle finds a cycle among the needs of tasks, following only needs
// that name another existing task. It returns the field of the need that
// closes the cycle and the task names along it, first and last the same.
func findCycle(tasks []*gv1.TaskSpec, byName map[string]int) (field string, cycle []string) {
	const (
		unvisited = iota
		onPath
		done
	)
	state := make([]int, len(tasks))
	var path []int
	var visit func(u int) bool
	visit = func(u int) bool {
		state[u] = onPath
		path = append(path, u)
		for k, need := range tasks[u].GetNeeds() {
			v, ok := byName[need]
			if !ok || v == u {
				continue
			}
			switch state[v] {
			case onPath:
				// path ends v ... u and u needs v: report u -> v ... -> u
				// so that the field (u's need) is the first arrow.
				field = index(index("tasks", u)+".needs", k)
				cycle = []string{tasks[u].Name}
				for _, w := range path[slices.Index(path, v):] {
					cycle = append(cycle, tasks[w].Name)
				}
				return true
			case unvisited:
				if visit(v) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		state[u] = done
		return false
	}
	for u, t := range tasks {
		if t != nil && state[u] == unvisited && visit(u) {
			return field, cycle
		}
	}
	return "", nil
}

// Events a project's build can have, for when.events.
var Events = []string{"push", "tag", "pull_request", "manual", "cron"}

func validateWhen(l *errs, w *gv1.When, path string) {
	if w == nil {
		return
	}
	if len(w.Branches) > MaxWhen {
		l.add(path+".branches", "at most %d branches are allowed, got %d", MaxWhen, len(w.Branches))
	}
	for i, b := range w.Branches {
		if err := BranchGlob(b); err != nil {
			l.add(index(path+".branches", i), "%v", err)
		}
	}
	for i, e := range w.Events {
		if !slices.Contains(Events, e) {
			l.add(index(path+".events", i), "unknown event %q; events are %s", clip(e), strings.Join(Events, ", "))
		}
	}
}

// MaxWhen bounds the branches of a when condition.
const MaxWhen = 32

// BranchGlob checks a branch glob (path.Match syntax, or "**").
func BranchGlob(g string) error {
	if g == "" {
		return errors.New("empty branch pattern")
	}
	if len(g) > 255 {
		return fmt.Errorf("branch pattern is %d bytes, more than 255", len(g))
	}
	if g == "**" {
		return nil
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("branch pattern %q: %w", clip(g), err)
	}
	return nil
}
