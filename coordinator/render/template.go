package render

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template/parse"

	"github.com/gantryci/gantry/internal/limit"
)

// Bounds of templates and of what they render to. A template prints only
// outputs of tasks and the revision, each at most limit.OutputValue long,
// so what it renders to is bounded by its text and the number of values it
// prints (Bound): a spec that could render past MaxRendered is refused at
// submit, and Task enforces the bounds again on what it renders.
const (
	// MaxTemplate is the longest template (a string containing "{{").
	MaxTemplate = 4 << 10
	// MaxActions is the most actions ("{{") of a template: more could not
	// print values within MaxRendered anyway, and each costs time to parse.
	MaxActions = 16
	// MaxRendered is the longest string a template may render to.
	MaxRendered = 64 << 10
	// MaxTask is the largest rendered task spec (its protobuf size): it
	// travels to the agent in one message of at most limit.Message bytes,
	// together with the values of the task's secrets.
	MaxTask = 1 << 20
)

// allowed is what a template may contain, for error messages.
const allowed = "a template may only print {{ .Tasks.NAME.Outputs.KEY }}, {{ .Revision }}, a trigger field ({{ .Branch }}, {{ .Tag }}, {{ .Event }}, {{ .PullRequest }}) or a quoted string, and test them with {{ if }}"

// triggerFields are the fields of a project build's trigger templates may
// print.
var triggerFields = []string{"Branch", "Tag", "Event", "PullRequest"}

// errTooLong is returned by capped once its limit is reached.
var errTooLong = errors.New("too long")

// Refs parses s as a template and returns the names of the tasks it reads
// outputs of ({{ .Tasks.NAME... }}), in order of appearance. A string
// without "{{" is no template and has none. It refuses templates longer
// than MaxTemplate and any construct beyond the few a task spec needs:
// printing {{ .Tasks.NAME.Outputs.KEY }}, {{ .Revision }} or a quoted
// string, and {{ if }}/{{ else }} on them. Functions, variables, range,
// with, define, template and block are refused: they could make a short
// template render gigabytes.
func Refs(s string) ([]string, error) {
	a, err := analyze(s)
	return a.refs, err
}

// Inspect returns what Refs does and an upper bound of the length of s
// rendered: its text and quoted strings, plus limit.OutputValue for every
// value it prints. It refuses what Refs refuses.
func Inspect(s string) (refs []string, bound int, err error) {
	a, err := analyze(s)
	return a.refs, a.bound, err
}

// analysis is what analyze learns of a template.
type analysis struct {
	refs  []string
	bound int
}

func analyze(s string) (analysis, error) {
	if !strings.Contains(s, "{{") {
		return analysis{bound: len(s)}, nil
	}
	if len(s) > MaxTemplate {
		return analysis{}, fmt.Errorf("template is %d bytes, more than the %d allowed", len(s), MaxTemplate)
	}
	if n := strings.Count(s, "{{"); n > MaxActions {
		return analysis{}, fmt.Errorf("template has %d actions ({{ ... }}), more than the %d allowed", n, MaxActions)
	}
	const name = "template"
	t := parse.New(name)
	// Functions are refused below with a better message than "not
	// defined".
	t.Mode = parse.SkipFuncCheck
	trees := map[string]*parse.Tree{}
	if _, err := t.Parse(s, "", "", trees); err != nil {
		return analysis{}, err
	}
	// A {{ define }} or {{ block }} adds a tree, or replaces the empty
	// top-level one.
	if len(trees) != 1 || trees[name] != t {
		return analysis{}, errors.New("define and block are not allowed; " + allowed)
	}
	var a analysis
	if err := a.list(t.Root); err != nil {
		return analysis{}, err
	}
	return a, nil
}

func (a *analysis) list(l *parse.ListNode) error {
	if l == nil {
		return nil
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			a.bound += len(n.Text)
		case *parse.ActionNode:
			if err := a.pipe(n.Pipe, true); err != nil {
				return err
			}
		case *parse.IfNode:
			if err := a.pipe(n.Pipe, false); err != nil {
				return err
			}
			if err := a.list(n.List); err != nil {
				return err
			}
			if err := a.list(n.ElseList); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is not allowed; %s", describe(n), allowed)
		}
	}
	return nil
}

// pipe checks the pipeline of an action (printed) or of an if: one field
// or string, no variables, functions or further commands.
func (a *analysis) pipe(p *parse.PipeNode, printed bool) error {
	if len(p.Decl) > 0 {
		return fmt.Errorf("variables are not allowed; %s", allowed)
	}
	if len(p.Cmds) != 1 {
		return fmt.Errorf("pipelines (|) are not allowed; %s", allowed)
	}
	args := p.Cmds[0].Args
	if len(args) == 0 {
		return errors.New("empty action")
	}
	if len(args) != 1 {
		if id, ok := args[0].(*parse.IdentifierNode); ok {
			return fmt.Errorf("functions (%s) are not allowed; %s", id.Ident, allowed)
		}
		return fmt.Errorf("%s is not allowed; %s", clip(p.String()), allowed)
	}
	switch n := args[0].(type) {
	case *parse.StringNode:
		if printed {
			a.bound += len(n.Text)
		}
		return nil
	case *parse.FieldNode:
		id := n.Ident
		switch {
		case len(id) == 1 && (id[0] == "Revision" || slices.Contains(triggerFields, id[0])):
		case len(id) == 4 && id[0] == "Tasks" && id[2] == "Outputs":
			if !slices.Contains(a.refs, id[1]) {
				a.refs = append(a.refs, id[1])
			}
		default:
			return fmt.Errorf("%s is not allowed; %s", clip(n.String()), allowed)
		}
		if printed {
			a.bound += limit.OutputValue
		}
		return nil
	case *parse.IdentifierNode:
		return fmt.Errorf("functions (%s) are not allowed; %s", n.Ident, allowed)
	}
	return fmt.Errorf("%s is not allowed; %s", clip(args[0].String()), allowed)
}

// describe names a node that is not allowed.
func describe(n parse.Node) string {
	switch n.(type) {
	case *parse.RangeNode:
		return "range"
	case *parse.WithNode:
		return "with"
	case *parse.TemplateNode:
		return "template"
	case *parse.BreakNode:
		return "break"
	case *parse.ContinueNode:
		return "continue"
	case *parse.CommentNode:
		return "a comment"
	}
	return clip(n.String())
}

// clip shortens s for an error message.
func clip(s string) string { return limit.Prefix(s, 40) }

// capped collects what a template renders and refuses to grow past max
// bytes, so that execution stops as soon as the output is too long.
type capped struct {
	b   strings.Builder
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if c.b.Len()+len(p) > c.max {
		return 0, errTooLong
	}
	return c.b.Write(p)
}
