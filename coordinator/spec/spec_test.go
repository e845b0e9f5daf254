package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const fullYAML = `name: hello
priority: -10
tasks:
  - name: greet
    exec: {command: ["sh", "-c", "echo hello"]}
  - name: after
    needs: [greet]
    labels: {os: linux, arch: arm64}
    retries: 2
    timeout: 1m30s
    concurrency: deploy-prod
    exec:
      shell: "echo hi && echo there"
      env: {K: V, PORT: 8080, _x1: ""}
      dir: /tmp
  - name: last
    needs: [greet, after]
    timeout: 0s
    exec:
      command: [sleep, 5]
`

func fullSpec() *gv1.JobSpec {
	return &gv1.JobSpec{
		Name:     "hello",
		Priority: -10,
		Tasks: []*gv1.TaskSpec{
			{
				Name:     "greet",
				Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"sh", "-c", "echo hello"}}},
			},
			{
				Name:        "after",
				Needs:       []string{"greet"},
				Labels:      map[string]string{"os": "linux", "arch": "arm64"},
				Retries:     2,
				Timeout:     durationpb.New(90 * time.Second),
				Concurrency: "deploy-prod",
				Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{
					Shell: "echo hi && echo there",
					Env:   map[string]string{"K": "V", "PORT": "8080", "_x1": ""},
					Dir:   "/tmp",
				}},
			},
			{
				Name:     "last",
				Needs:    []string{"greet", "after"},
				Timeout:  durationpb.New(0),
				Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"sleep", "5"}}},
			},
		},
	}
}

func TestParseFull(t *testing.T) {
	t.Parallel()
	got, err := Parse([]byte(fullYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := fullSpec(); !proto.Equal(got, want) {
		t.Errorf("Parse:\ngot  %v\nwant %v", got, want)
	}
	if err := Validate(got); err != nil {
		t.Errorf("Validate(Parse(...)): %v", err)
	}
}

// Null means unset, as in Go's YAML decoding; anchors and aliases work.
func TestParseNullsAndAliases(t *testing.T) {
	t.Parallel()
	in := "name: j\ntasks:\n" +
		"  - name: a\n    needs:\n    labels:\n    retries:\n    timeout:\n    concurrency: ~\n" +
		"    exec: &e {command: [make, ~], env: {A: }}\n" +
		"  - {name: b, labels: &l {os: linux}, exec: *e}\n" +
		"  - {name: c, labels: *l, exec: {shell: x}}\n"
	exec := func() *gv1.TaskSpec_Exec {
		return &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Command: []string{"make", ""}, Env: map[string]string{"A": ""}}}
	}
	want := &gv1.JobSpec{Name: "j", Tasks: []*gv1.TaskSpec{
		{Name: "a", Executor: exec()},
		{Name: "b", Labels: map[string]string{"os": "linux"}, Executor: exec()},
		{Name: "c", Labels: map[string]string{"os": "linux"}, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "x"}}},
	}}
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("Parse:\ngot  %v\nwant %v", got, want)
	}
}

// wantErr is an expected problem: field and line exactly, msg a substring.
type wantErr struct {
	field string
	line  int
	msg   string
}

// task wraps YAML task fields (indented for a list item) into a pipeline.
func task(fields string) string { return "name: j\ntasks:\n  - " + fields + "\n" }

var parseErrorTests = []struct {
	name string
	yaml string
	want []wantErr
}{
	{"empty", "", []wantErr{{"", 0, "empty document"}}},
	{"comments only", "# nothing\n", []wantErr{{"", 0, "empty document"}}},
	{"null document", "---\n~\n", []wantErr{{"", 0, "empty document"}}},
	{"two documents", "name: a\n---\nname: b\n", []wantErr{{"", 2, "multiple documents"}}},
	{"syntax", "name: x\ntasks:\n  - name: a\n    exec: {command: [a]\n", []wantErr{{"", 4, "invalid YAML"}}},
	{"unclosed flow", "name: [\n", []wantErr{{"", 2, "invalid YAML: did not find expected node content"}}},
	{"missing key", "name: x\ntasks:\n  - name: a\n   exec: 1\n", []wantErr{{"", 3, "invalid YAML: did not find expected '-' indicator"}}},
	{"tab on line 1", "\tname: x\n", []wantErr{{"", 1, "invalid YAML: found character that cannot start any token"}}},
	{"tab on line 3", "name: x\ntasks:\n\t- a\n", []wantErr{{"", 3, "invalid YAML: found character that cannot start any token"}}},
	{"bad UTF-8", "name: \xff\n", []wantErr{{"", 0, "invalid YAML: invalid leading UTF-8 octet"}}},
	{"bad indent", "name: x\n  foo: bar\n", []wantErr{{"", 2, "invalid YAML: mapping values are not allowed"}}},
	{"unknown anchor", "name: *x\n", []wantErr{{"", 0, "invalid YAML: unknown anchor"}}},
	{"root list", "- a\n", []wantErr{{"", 1, "must be a mapping of name, priority and tasks, got a list"}}},
	{"root scalar", "hello\n", []wantErr{{"", 1, "got string \"hello\""}}},
	{"unknown top field", "name: j\nowner: me\ntasks: [{name: a, exec: {shell: x}}]\n",
		[]wantErr{{"owner", 2, "unknown field; known fields are name, priority, tasks"}}},
	{"unknown task field", task("name: a\n    comand: [x]\n    exec: {shell: x}"),
		[]wantErr{{"tasks[0].comand", 4, "unknown field"}}},
	{"unknown exec field", task("name: a\n    exec:\n      shell: x\n      user: root"),
		[]wantErr{{"tasks[0].exec.user", 6, "unknown field; known fields are command, dir, env, shell"}}},
	{"future executor", task("name: a\n    kube: {}"), []wantErr{{"tasks[0].kube", 4, "unknown field"}}},
	{"repeated key", "name: a\nname: b\ntasks: [{name: a, exec: {shell: x}}]\n",
		[]wantErr{{"name", 2, "repeated key; first set at line 1"}}},
	{"repeated executor", task("{name: a, exec: {shell: x}, exec: {shell: y}}"),
		[]wantErr{{"tasks[0].exec", 3, "repeated key"}}},
	{"merge key", "name: j\ntasks:\n  - <<: {name: a}\n    exec: {shell: x}\n",
		[]wantErr{{"tasks[0]", 3, "merge keys (<<) are not supported"}}},
	{"cycle", "name: j\ntasks:\n" +
		"  - {name: a, needs: [b], exec: {shell: x}}\n" +
		"  - {name: b, needs: [c], exec: {shell: x}}\n" +
		"  - {name: c, needs: [a], exec: {shell: x}}\n",
		[]wantErr{{"tasks[2].needs[0]", 5, "cycle: c -> a -> b -> c"}}},
	{"two-task cycle", "name: j\ntasks:\n" +
		"  - {name: a, needs: [b], exec: {shell: x}}\n" +
		"  - {name: b, needs: [a], exec: {shell: x}}\n",
		[]wantErr{{"tasks[1].needs[0]", 4, "cycle: b -> a -> b"}}},
	{"missing need", "name: j\ntasks:\n  - name: a\n    needs:\n      - a\n      - nope\n      - nope\n    exec: {shell: x}\n",
		[]wantErr{{"tasks[0].needs[0]", 5, "cannot need itself"}, {"tasks[0].needs[1]", 6, `unknown task "nope"`}, {"tasks[0].needs[2]", 7, `unknown task "nope"`}}},
	{"needs twice", "name: j\ntasks:\n  - {name: a, exec: {shell: x}}\n  - {name: b, needs: [a, a], exec: {shell: x}}\n",
		[]wantErr{{"tasks[1].needs[1]", 4, `"a" is listed twice`}}},
	{"bad duration", task("name: a\n    timeout: 3x\n    exec: {shell: x}"),
		[]wantErr{{"tasks[0].timeout", 4, `invalid duration "3x"`}}},
	{"duration without unit", task("name: a\n    timeout: 30\n    exec: {shell: x}"),
		[]wantErr{{"tasks[0].timeout", 4, `invalid duration "30"`}}},
	{"negative duration", task("name: a\n    timeout: -1s\n    exec: {shell: x}"),
		[]wantErr{{"tasks[0].timeout", 4, "must not be negative, got -1s"}}},
	{"duration list", task("name: a\n    timeout: [1s]\n    exec: {shell: x}"),
		[]wantErr{{"tasks[0].timeout", 4, "must be a duration such as 30s or 5m, got a list"}}},
	{"duplicate task", "name: j\ntasks:\n  - {name: a, exec: {shell: x}}\n  - {name: b, exec: {shell: x}}\n  - {name: a, exec: {shell: y}}\n",
		[]wantErr{{"tasks[2].name", 5, `duplicate task name "a", also used by tasks[0]`}}},
	{"missing exec", task("name: a\n    retries: 1"), []wantErr{{"tasks[0]", 3, "missing executor; set one of: exec, build, run"}}},
	{"empty exec", task("name: a\n    exec: {}"), []wantErr{{"tasks[0].exec", 4, "command or shell is required"}}},
	{"null exec", task("name: a\n    exec:"), []wantErr{{"tasks[0].exec", 4, "command or shell is required"}}},
	{"command and shell", task("name: a\n    exec:\n      command: [ls]\n      shell: ls"),
		[]wantErr{{"tasks[0].exec", 4, "set either command or shell, not both"}}},
	{"empty program", task("name: a\n    exec: {command: [\"\", x]}"), []wantErr{{"tasks[0].exec.command[0]", 4, "program name must not be empty"}}},
	{"blank shell", task("name: a\n    exec: {shell: \"  \"}"), []wantErr{{"tasks[0].exec.shell", 4, "script is blank"}}},
	{"NUL in argument", task("name: a\n    exec: {command: [ls, \"a\\0b\"]}"), []wantErr{{"tasks[0].exec.command[1]", 4, "NUL"}}},
	{"bad env name", task("name: a\n    exec:\n      shell: x\n      env:\n        OK: 1\n        1X: a"),
		[]wantErr{{`tasks[0].exec.env["1X"]`, 8, "invalid environment variable name"}}},
	{"empty label", task("name: a\n    labels: {\"\": x}\n    exec: {shell: x}"), []wantErr{{`tasks[0].labels[""]`, 4, "must not be empty"}}},
	{"missing name", "tasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"name", 1, "required"}}},
	{"bad job name", "name: a.b\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"name", 1, `invalid name: "a.b" has '.'`}}},
	{"long job name", "name: " + strings.Repeat("x", 65) + "\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"name", 1, "longer than 63"}}},
	{"bad task name", task("name: a b\n    exec: {shell: x}"), []wantErr{{"tasks[0].name", 3, `invalid name: "a b" has ' '`}}},
	{"missing task name", task("exec: {shell: x}"), []wantErr{{"tasks[0].name", 3, "required"}}},
	{"bad concurrency", task("name: a\n    concurrency: x>\n    exec: {shell: x}"), []wantErr{{"tasks[0].concurrency", 4, "invalid name"}}},
	{"no tasks", "name: j\n", []wantErr{{"tasks", 1, "at least one task is required"}}},
	{"empty tasks", "name: j\ntasks: []\n", []wantErr{{"tasks", 2, "at least one task is required"}}},
	{"priority range", "name: j\npriority: 1001\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"priority", 2, "must be between -1000 and 1000, got 1001"}}},
	{"priority huge", "name: j\npriority: 99999999999\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"priority", 2, "must be between -1000 and 1000"}}},
	{"retries range", task("name: a\n    retries: -1\n    exec: {shell: x}"), []wantErr{{"tasks[0].retries", 4, "must be between 0 and 100, got -1"}}},
	{"retries string", task("name: a\n    retries: \"x\"\n    exec: {shell: x}"), []wantErr{{"tasks[0].retries", 4, `must be an integer, got string "x"`}}},
	{"retries float", task("name: a\n    retries: 2.0\n    exec: {shell: x}"), []wantErr{{"tasks[0].retries", 4, `must be an integer, got number "2.0"`}}},
	{"retries boolean", task("name: a\n    retries: true\n    exec: {shell: x}"), []wantErr{{"tasks[0].retries", 4, `must be an integer, got boolean "true"`}}},
	{"tagged integer", "name: j\npriority: !!int zz\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"priority", 2, `invalid integer "zz"`}}},
	{"null name", "name: ~\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"name", 1, "required"}}},
	{"tasks mapping", "name: j\ntasks: {}\n", []wantErr{{"tasks", 2, "must be a list of tasks, got a mapping"}}},
	{"task scalar", "name: j\ntasks: [a]\n", []wantErr{{"tasks[0]", 2, `must be a mapping, got string "a"`}}},
	{"name list", "name: [a]\ntasks: [{name: a, exec: {shell: x}}]\n", []wantErr{{"name", 1, "must be a string, got a list"}}},
	{"command string", task("name: a\n    exec: {command: ls -l}"), []wantErr{{"tasks[0].exec.command", 4, "must be a list of strings, got string \"ls -l\" (use shell for a script)"}}},
	{"command item mapping", task("name: a\n    exec: {command: [ls, {a: b}]}"), []wantErr{{"tasks[0].exec.command[1]", 4, "must be a string, got a mapping"}}},
	{"needs string", task("name: a\n    needs: b\n    exec: {shell: x}"), []wantErr{{"tasks[0].needs", 4, "must be a list of strings"}}},
	{"env list", task("name: a\n    exec: {shell: x, env: [A]}"), []wantErr{{"tasks[0].exec.env", 4, "must be a mapping, got a list"}}},
	{"label key list", task("name: a\n    labels: {[a]: b}\n    exec: {shell: x}"), []wantErr{{"tasks[0].labels", 4, "keys must be strings, got a list"}}},
	{"several", "name: [a]\npriority: x\ntasks:\n  - {name: a, retries: [1], exec: {shell: x}}\n",
		[]wantErr{{"name", 1, "must be a string"}, {"priority", 2, "must be an integer"}, {"tasks[0].retries", 4, "must be an integer, got a list"}}},
	// Validation runs only on what decoded cleanly, so the needs below are
	// not reported yet.
	{"decoding first", "name: j\ntasks:\n  - {name: a, needs: [x], exec: {shell: x}}\n  - {name: b, retries: x, exec: {shell: x}}\n",
		[]wantErr{{"tasks[1].retries", 4, "must be an integer"}}},
	{"several invalid", "name: a.b\ntasks:\n  - {name: a, needs: [x], retries: 101, exec: {shell: x}}\n  - {name: a, exec: {}}\n",
		[]wantErr{{"name", 1, "invalid name"}, {"tasks[0].retries", 3, "must be between 0 and 100"}, {"tasks[0].needs[0]", 3, `unknown task "x"`},
			{"tasks[1].exec", 4, "command or shell is required"}, {"tasks[1].name", 4, "duplicate task name"}}},
}

// problems returns the *Errors of err, failing unless err is one of the
// two documented types.
func problems(t *testing.T, err error) []*Error {
	t.Helper()
	var list ErrorList
	if errors.As(err, &list) {
		if len(list) < 2 {
			t.Errorf("ErrorList of %d", len(list))
		}
		return list
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	t.Fatalf("error %v is %T, not *Error or ErrorList", err, err)
	return nil
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range parseErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %v", s)
			}
			if s != nil {
				t.Errorf("Parse returned a spec with error %v", err)
			}
			got := problems(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Field != w.field || g.Line != w.line || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("error %d = {%q %d %q}, want {%q %d containing %q}", i, g.Field, g.Line, g.Msg, w.field, w.line, w.msg)
				}
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	many.WriteString("name: j\ntasks:\n")
	for i := range MaxTasks + 1 {
		fmt.Fprintf(&many, "  - {name: t%d, exec: {shell: x}}\n", i)
	}
	_, err := Parse([]byte(many.String()))
	if err == nil || !strings.Contains(err.Error(), "line 2: tasks: at most 1000 tasks are allowed, got 1001") {
		t.Errorf("1001 tasks: %v", err)
	}

	// Aliases let a small document name a long list many times.
	var bomb strings.Builder
	bomb.WriteString("name: j\ntasks:\n  - {name: t0, exec: {command: &c [")
	bomb.WriteString(strings.Repeat("a,", 5000))
	bomb.WriteString("a]}}\n")
	for i := 1; i < MaxTasks; i++ {
		fmt.Fprintf(&bomb, "  - {name: t%d, exec: {command: *c}}\n", i)
	}
	_, err = Parse([]byte(bomb.String()))
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Errorf("alias expansion: %v", err)
	}
}

func TestParseManyErrors(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("name: j\ntasks:\n")
	for i := range 150 {
		fmt.Fprintf(&b, "  - {name: t%d, shel: x}\n", i)
	}
	_, err := Parse([]byte(b.String()))
	got := problems(t, err)
	if len(got) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(got), maxErrors+1)
	}
	if first := got[0].Error(); first != "line 3: tasks[0].shel: unknown field; known fields are approval, build, concurrency, deploy, exec, labels, name, needs, promote, retries, run, timeout, when" {
		t.Errorf("first error %q", first)
	}
	if last := got[maxErrors].Error(); last != "and 50 more problems" {
		t.Errorf("last error %q", last)
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	e := &Error{Field: "tasks[1].timeout", Line: 7, Msg: `invalid duration "3x"`}
	if got, want := e.Error(), `line 7: tasks[1].timeout: invalid duration "3x"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&Error{Field: "name", Msg: "required"}).Error(), "name: required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&Error{Line: 3, Msg: "invalid YAML: x"}).Error(), "line 3: invalid YAML: x"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	list := ErrorList{e, {Field: "name", Msg: "required"}}
	if got, want := list.Error(), `line 7: tasks[1].timeout: invalid duration "3x"; name: required`; got != want {
		t.Errorf("ErrorList.Error() = %q, want %q", got, want)
	}
	var first *Error
	if err := error(list); !errors.As(err, &first) || first != e {
		t.Errorf("errors.As(ErrorList, *Error) = %v", first)
	}
}
