package secret

import (
	"fmt"
	"strings"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
)

// Scope limits where a secret may be used. The zero Scope is everywhere.
type Scope struct {
	// Kind is "", "app", "job" or "label".
	Kind string
	// Name is the application or pipeline name, or the label key.
	Name string
	// Value is the label value (Kind "label" only).
	Value string
}

// ParseScope reads a scope: empty (every pipeline), "app:NAME", "job:NAME"
// (a pipeline's name) or "label:KEY=VALUE" (agents so labelled).
func ParseScope(s string) (Scope, error) {
	if s == "" {
		return Scope{}, nil
	}
	kind, val, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, fmt.Errorf("%q: want app:NAME, job:NAME or label:KEY=VALUE", s)
	}
	sc := Scope{Kind: kind, Name: val}
	switch kind {
	case "app", "job":
	case "label":
		k, v, ok := strings.Cut(val, "=")
		if !ok {
			return Scope{}, fmt.Errorf("%q: want label:KEY=VALUE", s)
		}
		if len(v) > limit.LabelValue {
			return Scope{}, fmt.Errorf("%q: label value longer than %d bytes", limit.Prefix(s, 40), limit.LabelValue)
		}
		sc.Name, sc.Value = k, v
	default:
		return Scope{}, fmt.Errorf("%q: unknown kind %q; want app, job or label", s, kind)
	}
	if err := name.Check(sc.Name); err != nil {
		return Scope{}, err
	}
	return sc, nil
}

// String is the scope as ParseScope reads it.
func (sc Scope) String() string {
	switch sc.Kind {
	case "":
		return ""
	case "label":
		return "label:" + sc.Name + "=" + sc.Value
	}
	return sc.Kind + ":" + sc.Name
}

// Allows reports whether a task may use a secret of this scope: app is the
// application a deploy task belongs to ("" for other tasks), job the
// pipeline's name, labels those of the agent the task goes to. A refusal
// says why.
func (sc Scope) Allows(app, job string, labels map[string]string) error {
	switch sc.Kind {
	case "":
		return nil
	case "app":
		if app == sc.Name {
			return nil
		}
		return fmt.Errorf("scoped to application %q; this task is not its deploy", sc.Name)
	case "job":
		if job == sc.Name {
			return nil
		}
		return fmt.Errorf("scoped to pipeline %q; this job is %q", sc.Name, job)
	case "label":
		if v, ok := labels[sc.Name]; ok && v == sc.Value {
			return nil
		}
		return fmt.Errorf("scoped to agents labelled %s=%s", sc.Name, sc.Value)
	}
	return fmt.Errorf("unknown scope %q", sc)
}
