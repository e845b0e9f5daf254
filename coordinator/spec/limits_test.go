package spec

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Alias bombs: small documents that expand to much more.
func stringBomb() string {
	var b strings.Builder
	b.WriteString("name: j\ntasks:\n  - {name: t0, exec: {shell: &s \"" + strings.Repeat("a", 90000) + "\"}}\n")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&b, "  - {name: t%d, exec: {shell: *s}}\n", i)
	}
	return b.String()
}

func listBomb() string {
	var b strings.Builder
	b.WriteString("name: j\ntasks:\n  - {name: t0, exec: {command: &c [")
	b.WriteString(strings.Repeat(`"",`, 30000))
	b.WriteString("x]}}\n")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&b, "  - {name: t%d, exec: {command: *c}}\n", i)
	}
	return b.String()
}

func errorBomb() string {
	var b strings.Builder
	b.WriteString("name: j\ntasks:\n  - &m {name: a, exec: {shell: x}")
	for i := range 10000 {
		fmt.Fprintf(&b, ", k%d: 0", i)
	}
	b.WriteString("}\n")
	for range 999 {
		b.WriteString("  - *m\n")
	}
	return b.String()
}

func nestedBomb() string {
	var b strings.Builder
	b.WriteString("name: j\ntasks:\n  - name: a\n    labels: {a0: &a0 [x,x,x,x,x,x,x,x,x,x]}\n    exec:\n      command: &a9 [")
	// Lists of lists are not strings, but each is still visited once.
	for i := range 10 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*a0")
	}
	b.WriteString("]\n")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&b, "  - {name: t%d, exec: {command: *a9}}\n", i)
	}
	return b.String()
}

// An alias bomb is refused, naming the limit, and parsing it allocates
// little (the measure needs the test not to run in parallel).
func TestParseAliasBombs(t *testing.T) {
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"string", stringBomb(), "document too large: the pipeline expands to more than 1 MiB (YAML aliases count every time they are used)"},
		{"list", listBomb(), "document too large: the pipeline expands to more than 262144 values (YAML aliases count every time they are used)"},
		{"errors", errorBomb(), "unknown field"},
		{"nested", nestedBomb(), "must be a string, got a list"},
	} {
		if n := len(tt.doc); n > 200<<10 {
			t.Fatalf("%s: the bomb is %d bytes", tt.name, n)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Parse([]byte(tt.doc))
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %.300v, want %q", tt.name, err, tt.want)
		}
		if len(err.Error()) > 64<<10 {
			t.Errorf("%s: error of %d bytes", tt.name, len(err.Error()))
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 50<<20 {
			t.Errorf("%s: parsing a %d byte document allocated %d MB", tt.name, len(tt.doc), alloc>>20)
		}
	}
}

func TestParseDocumentLimit(t *testing.T) {
	t.Parallel()
	doc := "name: j\ntasks: [{name: a, exec: {shell: x}}]\n# " + strings.Repeat("x", MaxDocument) + "\n"
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "document too large: 524336 bytes, more than the 512 KiB allowed") {
		t.Errorf("large document: %v", err)
	}
}

// Each limit of Validate, on a spec built as the API would; Parse applies
// the same through Validate.
func TestValidateLimits(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("x", n) }
	strs := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	strMap := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("K%d", i)] = "v"
		}
		return m
	}
	exec := func(e *gv1.ExecSpec) func(s *gv1.JobSpec) {
		return func(s *gv1.JobSpec) { s.Tasks[0].Executor = &gv1.TaskSpec_Exec{Exec: e} }
	}
	run := func(r *gv1.RunSpec) func(s *gv1.JobSpec) {
		if r.Image == "" {
			r.Image = "x"
		}
		if r.Command == nil {
			r.Command = []string{"x"}
		}
		return func(s *gv1.JobSpec) { s.Tasks[1].Executor = &gv1.TaskSpec_Run{Run: r} }
	}
	build := func(b *gv1.BuildSpec) func(s *gv1.JobSpec) {
		b.Context = &gv1.BuildContext{Dir: "/x"}
		return func(s *gv1.JobSpec) { s.Tasks[0].Executor = &gv1.TaskSpec_Build{Build: b} }
	}
	deploy := func(d *gv1.DeploySpec) func(s *gv1.JobSpec) {
		d.Cluster = "c"
		if d.Source == nil {
			d.Source = &gv1.ManifestSource{Dir: "/m"}
		}
		return func(s *gv1.JobSpec) { s.Tasks[1].Executor = &gv1.TaskSpec_Deploy{Deploy: d} }
	}
	refs := func(n int) string { return strings.Repeat("{{ .Tasks.a.Outputs.ref }}", n) }
	tests := []struct {
		name string
		edit func(s *gv1.JobSpec)
		want wantErr
	}{
		{"spec size", exec(&gv1.ExecSpec{Shell: long(MaxSpecSize)}), wantErr{"", 0, "job spec is 1048"}},
		{"task name", func(s *gv1.JobSpec) { s.Tasks[1].Name = long(64) }, wantErr{"tasks[1].name", 0, "longer than 63 characters"}},
		{"needs", func(s *gv1.JobSpec) { s.Tasks[1].Needs = strs(MaxNeeds+1, func(int) string { return "a" }) }, wantErr{"tasks[1].needs", 0, "at most 100 needs are allowed, got 101"}},
		{"labels", func(s *gv1.JobSpec) { s.Tasks[0].Labels = strMap(MaxLabels + 1) }, wantErr{"tasks[0].labels", 0, "at most 64 labels are allowed, got 65"}},
		{"label value", func(s *gv1.JobSpec) { s.Tasks[0].Labels = map[string]string{"os": long(257)} }, wantErr{`tasks[0].labels["os"]`, 0, "longer than 256 bytes (257 bytes)"}},
		{"env", exec(&gv1.ExecSpec{Shell: "x", Env: strMap(150), SecretEnv: map[string]string{"S1": "s", "S2": "s"}}), wantErr{}},
		{"env and secret_env", exec(&gv1.ExecSpec{Shell: "x", Env: strMap(199), SecretEnv: map[string]string{"S1": "s", "S2": "s"}}),
			wantErr{"tasks[0].exec.env", 0, "at most 200 environment variables are allowed (env and secret_env together), got 201"}},
		{"env value", exec(&gv1.ExecSpec{Shell: "x", Env: map[string]string{"A": long(MaxEnvValue + 1)}}), wantErr{`tasks[0].exec.env["A"]`, 0, "longer than 32 KiB"}},
		{"shell", exec(&gv1.ExecSpec{Shell: long(MaxScript + 1)}), wantErr{"tasks[0].exec.shell", 0, "longer than 128 KiB (131073 bytes)"}},
		{"arguments", exec(&gv1.ExecSpec{Command: strs(MaxCommandArgs+1, func(int) string { return "x" })}), wantErr{"tasks[0].exec.command", 0, "at most 1000 arguments are allowed, got 1001"}},
		{"command length", exec(&gv1.ExecSpec{Command: []string{"sh", "-c", long(MaxScript)}}), wantErr{"tasks[0].exec.command", 0, "longer than 128 KiB, all arguments together"}},
		{"dir", exec(&gv1.ExecSpec{Shell: "x", Dir: "/" + long(MaxField)}), wantErr{"tasks[0].exec.dir", 0, "longer than 4 KiB"}},
		{"run image", run(&gv1.RunSpec{Image: long(MaxField + 1)}), wantErr{"tasks[1].run.image", 0, "longer than 4 KiB"}},
		{"run env", run(&gv1.RunSpec{Env: strMap(MaxEnv + 1)}), wantErr{"tasks[1].run.env", 0, "at most 200 environment variables"}},
		{"build args", build(&gv1.BuildSpec{Args: strMap(MaxBuildArgs + 1)}), wantErr{"tasks[0].build.args", 0, "at most 100 build arguments are allowed, got 101"}},
		{"build secrets", build(&gv1.BuildSpec{Secrets: strMap(MaxSecrets + 1)}), wantErr{"tasks[0].build.secrets", 0, "at most 32 entries are allowed, got 33"}},
		{"git url", build(&gv1.BuildSpec{Push: long(MaxField + 1)}), wantErr{"tasks[0].build.push", 0, "longer than 4 KiB"}},
		{"images", deploy(&gv1.DeploySpec{Images: strMap(MaxImages + 1)}), wantErr{"tasks[1].deploy.images", 0, "at most 100 images are allowed, got 101"}},
		{"inline", deploy(&gv1.DeploySpec{Source: &gv1.ManifestSource{Inline: long(MaxInline + 1)}}), wantErr{"tasks[1].deploy.source.inline", 0, "longer than 512 KiB"}},
		{"template length", run(&gv1.RunSpec{Image: "{{ .Revision }}" + long(4096)}), wantErr{"tasks[1].run.image", 0, "invalid template: template is 4111 bytes, more than the 4096 allowed"}},
		{"template define", run(&gv1.RunSpec{Image: `{{ define "x" }}{{ end }}`}), wantErr{"tasks[1].run.image", 0, "invalid template: define and block are not allowed"}},
		{"template range", run(&gv1.RunSpec{Image: `{{ range .Tasks }}x{{ end }}`}), wantErr{"tasks[1].run.image", 0, "invalid template: range is not allowed"}},
		{"template function", run(&gv1.RunSpec{Image: `{{ printf "%099999d" 1 }}`}), wantErr{"tasks[1].run.image", 0, "invalid template: functions (printf) are not allowed"}},
		{"template actions", run(&gv1.RunSpec{Image: refs(17)}), wantErr{"tasks[1].run.image", 0, "invalid template: template has 17 actions"}},
		{"template bound", run(&gv1.RunSpec{Image: "x" + refs(16)}), wantErr{"tasks[1].run.image", 0, "template may render to 65537 bytes, more than the 64 KiB allowed"}},
		{"task bound", run(&gv1.RunSpec{Command: strs(20, func(int) string { return refs(15) })}), wantErr{"tasks[1]", 0, "task may render to"}},
		{"templates per job", func(s *gv1.JobSpec) {
			s.Tasks[1].Executor = &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: "x", Command: strs(MaxCommandArgs, func(i int) string { return fmt.Sprintf("{{ .Revision }}%d", i) })}}
			s.Tasks = append(s.Tasks, &gv1.TaskSpec{Name: "c", Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: "{{ .Revision }}c", Command: []string{"x"}}}})
		}, wantErr{"tasks", 0, "at most 1000 different templates are allowed in a job"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &gv1.JobSpec{Name: "j", Tasks: []*gv1.TaskSpec{shell("a", "x"), shell("b", "y", "a")}}
			tt.edit(s)
			err := Validate(s)
			if tt.want.msg == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			got := problems(t, err)
			g := got[0]
			if len(got) != 1 || g.Field != tt.want.field || !strings.Contains(g.Msg, tt.want.msg) {
				t.Errorf("got %.500v, want one error {%q containing %q}", err, tt.want.field, tt.want.msg)
			}
		})
	}
}

// Limits are errors of Parse too, with the line.
func TestParseLimitLines(t *testing.T) {
	t.Parallel()
	var env strings.Builder
	for i := range MaxEnv + 1 {
		fmt.Fprintf(&env, "V%d: x, ", i)
	}
	wantProblems(t, task("name: a\n    exec:\n      shell: x\n      env: {"+env.String()+"}"),
		[]wantErr{{"tasks[0].exec.env", 6, "at most 200 environment variables are allowed, got 201"}})
	wantProblems(t, task("name: a\n    exec: {shell: x}\n    needs: ["+strings.Repeat("a, ", MaxNeeds)+"a]"),
		[]wantErr{{"tasks[0].needs", 5, "at most 100 needs are allowed, got 101"}})
	wantProblems(t, "name: j\ntasks:\n  - {name: a, build: {context: {dir: /x}}}\n  - name: b\n    needs: [a]\n    run:\n      image: x\n      command:\n        - x\n        - \"{{ range .Tasks }}{{ end }}\"\n",
		[]wantErr{{"tasks[1].run.command[1]", 10, "invalid template: range is not allowed"}})
}
