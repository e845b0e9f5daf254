package render

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func buildTask(push string) *gv1.TaskSpec {
	return &gv1.TaskSpec{Name: "image", Needs: []string{"prep"}, Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{
		Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: "file:///r.git", Revision: "{{ .Tasks.prep.Outputs.branch }}"}},
		Args:    map[string]string{"VERSION": "{{ .Tasks.prep.Outputs.version }}", "PLAIN": "x"},
		Push:    push,
		Cache:   &gv1.BuildCache{Ref: "r:5000/app:cache"},
	}}}
}

func TestTaskBuild(t *testing.T) {
	t.Parallel()
	in := buildTask("r:5000/app:{{ .Revision }}-{{ .Tasks.prep.Outputs.version }}")
	orig := proto.Clone(in)
	got, err := Task(in, map[string]map[string]string{"prep": {"branch": "main", "version": "1.2.3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := got.GetBuild()
	if b.Context.Git.Revision != "main" || b.Args["VERSION"] != "1.2.3" || b.Args["PLAIN"] != "x" {
		t.Errorf("rendered %v", b)
	}
	// The agent substitutes the revision of its own checkout.
	if b.Push != "r:5000/app:{{ .Revision }}-1.2.3" {
		t.Errorf("push = %q", b.Push)
	}
	if !proto.Equal(in, orig) {
		t.Errorf("Task changed its input: %v", in)
	}
}

func TestTaskRun(t *testing.T) {
	t.Parallel()
	in := &gv1.TaskSpec{Name: "test", Needs: []string{"other", "image"}, Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{
		Image:   "{{ .Tasks.image.Outputs.ref }}",
		Command: []string{"/bin/check", "{{ .Revision }}", "{{ \"{{\" }}literal"},
		Env:     map[string]string{"DIGEST": "{{ .Tasks.image.Outputs.digest }}"},
	}}}
	got, err := Task(in, map[string]map[string]string{
		"image": {"ref": "r/app@sha256:ab", "digest": "sha256:ab", "revision": "c0ffee"},
		"other": {"x": "y"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := got.GetRun()
	if r.Image != "r/app@sha256:ab" || !slices.Equal(r.Command, []string{"/bin/check", "c0ffee", "{{literal"}) || r.Env["DIGEST"] != "sha256:ab" {
		t.Errorf("rendered %v", r)
	}
}

func TestTaskErrors(t *testing.T) {
	t.Parallel()
	run := func(image string, needs ...string) *gv1.TaskSpec {
		return &gv1.TaskSpec{Name: "t", Needs: needs, Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: image, Command: []string{"x"}}}}
	}
	outputs := map[string]map[string]string{"image": {"digest": "sha256:ab"}, "failed": nil}
	for _, tc := range []struct {
		name string
		task *gv1.TaskSpec
		want string
	}{
		{"missing output", run("{{ .Tasks.image.Outputs.ref }}", "image"), `run.image: template: `},
		{"missing output names the key", run("{{ .Tasks.image.Outputs.ref }}", "image"), `map has no entry for key "ref"`},
		{"task without outputs", run("{{ .Tasks.failed.Outputs.ref }}", "failed"), `map has no entry for key "ref"`},
		{"unknown task", run("{{ .Tasks.nope.Outputs.ref }}"), `map has no entry for key "nope"`},
		{"no revision", run("app:{{ .Revision }}", "image"), ".Revision is the revision output"},
		{"syntax", run("{{ .Tasks.image.Outputs.ref "), "run.image: template: "},
		{"revision outside push", &gv1.TaskSpec{Name: "b", Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{
			Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: "u"}}, Target: "{{ .Revision }}",
		}}}, "build.target: template"},
	} {
		_, err := Task(tc.task, outputs, nil)
		if err == nil || !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrTemplate containing %q", tc.name, err, tc.want)
		}
	}
}

func TestTaskExecUntouched(t *testing.T) {
	t.Parallel()
	in := &gv1.TaskSpec{Name: "e", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "docker inspect -f '{{ .Id }}' x"}}}
	got, err := Task(in, nil, nil)
	if err != nil || got != in {
		t.Errorf("exec spec: %v, %v", got, err)
	}
}

func TestRefs(t *testing.T) {
	t.Parallel()
	for s, want := range map[string][]string{
		"plain":                      nil,
		"{{ .Tasks.a.Outputs.ref }}": {"a"},
		"{{ .Tasks.a.Outputs.x }}-{{ .Tasks.b.Outputs.y }}-{{ .Tasks.a.Outputs.z }}": {"a", "b"},
		"{{ if .Tasks.c.Outputs.x }}{{ .Revision }}{{ end }}":                        {"c"},
		"{{ .Revision }}": nil,
	} {
		got, err := Refs(s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Refs(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := Refs("{{ .Tasks"); err == nil {
		t.Error("Refs of a broken template succeeded")
	}
}

func TestTriggerFields(t *testing.T) {
	in := &gv1.TaskSpec{Name: "img", Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{
		Image:   "app:{{ .Revision }}",
		Command: []string{"{{ .Branch }}", "{{ .Event }}", "{{ if .PullRequest }}pr-{{ .PullRequest }}{{ else }}no-pr{{ end }}", "t={{ .Tag }}"},
	}}}
	tr := &gv1.Trigger{Event: "push", Branch: "main", Sha: "c0ffee"}
	got, err := Task(in, nil, tr)
	if err != nil {
		t.Fatal(err)
	}
	r := got.GetRun()
	if r.Image != "app:c0ffee" || strings.Join(r.Command, " ") != "main push no-pr t=" {
		t.Fatalf("rendered %q %q", r.Image, r.Command)
	}
	tr = &gv1.Trigger{Event: "pull_request", Branch: "main", Sha: "c0ffee", PullRequest: 7}
	if got, err = Task(in, nil, tr); err != nil || got.GetRun().Command[2] != "pr-7" {
		t.Fatalf("pull request: %v %v", got.GetRun().GetCommand(), err)
	}
	// Outside a project's build, trigger fields do not exist.
	in.GetRun().Image = "app"
	if _, err := Task(in, nil, nil); err == nil || !strings.Contains(err.Error(), "only in a project's builds") {
		t.Fatalf("without trigger: %v", err)
	}
}
