package spec

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func shell(name, script string, needs ...string) *gv1.TaskSpec {
	return &gv1.TaskSpec{
		Name:     name,
		Needs:    needs,
		Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: script}},
	}
}

func TestValidateBuilt(t *testing.T) {
	t.Parallel()
	if err := Validate(fullSpec()); err != nil {
		t.Errorf("Validate(full spec): %v", err)
	}
	ok := &gv1.JobSpec{Name: "deploy_1", Priority: MaxPriority, Tasks: []*gv1.TaskSpec{
		shell("build", "make"),
		shell("test", "make test", "build"),
		shell("ship", "make ship", "test", "build"),
	}}
	if err := Validate(ok); err != nil {
		t.Errorf("Validate(diamond): %v", err)
	}
}

func TestValidateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// edit breaks a valid spec of tasks a and b (b needs a).
		edit func(s *gv1.JobSpec)
		want []wantErr
	}{
		{"nil spec", nil, []wantErr{{"", 0, "job spec is missing"}}},
		{"no name", func(s *gv1.JobSpec) { s.Name = "" }, []wantErr{{"name", 0, "required"}}},
		{"bad name", func(s *gv1.JobSpec) { s.Name = "a*" }, []wantErr{{"name", 0, `invalid name: "a*" has '*'`}}},
		{"priority", func(s *gv1.JobSpec) { s.Priority = MinPriority - 1 }, []wantErr{{"priority", 0, "must be between -1000 and 1000, got -1001"}}},
		{"no tasks", func(s *gv1.JobSpec) { s.Tasks = nil }, []wantErr{{"tasks", 0, "at least one task is required"}}},
		{"too many tasks", func(s *gv1.JobSpec) { s.Tasks = make([]*gv1.TaskSpec, MaxTasks+1) }, []wantErr{{"tasks", 0, "at most 1000 tasks"}}},
		{"nil task", func(s *gv1.JobSpec) { s.Tasks = append(s.Tasks, nil) }, []wantErr{{"tasks[2]", 0, "task is missing"}}},
		{"no executor", func(s *gv1.JobSpec) { s.Tasks[0].Executor = nil }, []wantErr{{"tasks[0]", 0, "missing executor; set one of: exec, build, run"}}},
		{"nil exec", func(s *gv1.JobSpec) { s.Tasks[0].Executor = &gv1.TaskSpec_Exec{} }, []wantErr{{"tasks[0].exec", 0, "required"}}},
		{"command and shell", func(s *gv1.JobSpec) { s.Tasks[0].GetExec().Command = []string{"true"} },
			[]wantErr{{"tasks[0].exec", 0, "set either command or shell, not both"}}},
		{"neither", func(s *gv1.JobSpec) { s.Tasks[1].GetExec().Shell = "" }, []wantErr{{"tasks[1].exec", 0, "command or shell is required"}}},
		{"env", func(s *gv1.JobSpec) { s.Tasks[0].GetExec().Env = map[string]string{"B-2": "", "A": "x\x00", "": ""} },
			[]wantErr{{`tasks[0].exec.env[""]`, 0, "invalid environment variable name"}, {`tasks[0].exec.env["A"]`, 0, "NUL"}, {`tasks[0].exec.env["B-2"]`, 0, "invalid environment variable name"}}},
		{"dir NUL", func(s *gv1.JobSpec) { s.Tasks[0].GetExec().Dir = "/tmp\x00" }, []wantErr{{"tasks[0].exec.dir", 0, "NUL"}}},
		{"labels", func(s *gv1.JobSpec) { s.Tasks[0].Labels = map[string]string{"": "x", "os": "linux"} }, []wantErr{{`tasks[0].labels[""]`, 0, "must not be empty"}}},
		{"retries", func(s *gv1.JobSpec) { s.Tasks[1].Retries = MaxRetries + 1 }, []wantErr{{"tasks[1].retries", 0, "must be between 0 and 100, got 101"}}},
		{"negative timeout", func(s *gv1.JobSpec) { s.Tasks[0].Timeout = durationpb.New(-time.Second) }, []wantErr{{"tasks[0].timeout", 0, "must not be negative"}}},
		{"invalid timeout", func(s *gv1.JobSpec) { s.Tasks[0].Timeout = &durationpb.Duration{Seconds: 1, Nanos: -1} }, []wantErr{{"tasks[0].timeout", 0, "invalid duration"}}},
		{"concurrency", func(s *gv1.JobSpec) { s.Tasks[0].Concurrency = "a.b" }, []wantErr{{"tasks[0].concurrency", 0, "invalid name"}}},
		{"duplicate", func(s *gv1.JobSpec) { s.Tasks[1].Name = "a" }, []wantErr{{"tasks[1].name", 0, "duplicate task name"}, {"tasks[1].needs[0]", 0, "cannot need itself"}}},
		{"unknown need", func(s *gv1.JobSpec) { s.Tasks[1].Needs = []string{"a", "z"} }, []wantErr{{"tasks[1].needs[1]", 0, `unknown task "z"`}}},
		{"cycle", func(s *gv1.JobSpec) { s.Tasks[0].Needs = []string{"b"} }, []wantErr{{"tasks[1].needs[0]", 0, "cycle: b -> a -> b"}}},
		{"long cycle", func(s *gv1.JobSpec) {
			s.Tasks = append(s.Tasks, shell("c", "x", "b"), shell("d", "x", "c"))
			s.Tasks[0].Needs = []string{"d"}
		}, []wantErr{{"tasks[1].needs[0]", 0, "cycle: b -> a -> d -> c -> b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s *gv1.JobSpec
			if tt.edit != nil {
				s = &gv1.JobSpec{Name: "j", Tasks: []*gv1.TaskSpec{shell("a", "x"), shell("b", "y", "a")}}
				tt.edit(s)
			}
			err := Validate(s)
			if err == nil {
				t.Fatalf("Validate succeeded: %v", s)
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

// Validate must not change the spec; the coordinator stores what it checked.
func TestValidateReadOnly(t *testing.T) {
	t.Parallel()
	s := fullSpec()
	s.Tasks[0].Needs = []string{"last"} // a cycle, so every check runs
	want := proto.Clone(s)
	if err := Validate(s); err == nil {
		t.Fatal("Validate accepted a cycle")
	}
	if !proto.Equal(s, want) {
		t.Errorf("Validate changed the spec:\ngot  %v\nwant %v", s, want)
	}
}
