package spec

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const buildYAML = `name: image
tasks:
  - name: image
    build:
      context: {git: {url: "file:///srv/repo.git", revision: main}}
      dockerfile: ci/Dockerfile
      target: test
      args: {VERSION: "1.2.3", N: 3}
      push: "127.0.0.1:5000/hello:{{ .Revision }}"
      cache: {ref: "127.0.0.1:5000/hello:cache"}
  - name: local
    build:
      context: {dir: /src/app}
  - name: test
    needs: [image]
    run:
      image: "{{ .Tasks.image.Outputs.ref }}"
      command: ["/bin/busybox", "cat", "/out/msg"]
      env: {K: V}
      dir: /out
`

func TestParseBuildAndRun(t *testing.T) {
	t.Parallel()
	got, err := Parse([]byte(buildYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &gv1.JobSpec{Name: "image", Tasks: []*gv1.TaskSpec{
		{Name: "image", Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{
			Context:    &gv1.BuildContext{Git: &gv1.GitSource{Url: "file:///srv/repo.git", Revision: "main"}},
			Dockerfile: "ci/Dockerfile",
			Target:     "test",
			Args:       map[string]string{"VERSION": "1.2.3", "N": "3"},
			Push:       "127.0.0.1:5000/hello:{{ .Revision }}",
			Cache:      &gv1.BuildCache{Ref: "127.0.0.1:5000/hello:cache"},
		}}},
		{Name: "local", Executor: &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{Context: &gv1.BuildContext{Dir: "/src/app"}}}},
		{Name: "test", Needs: []string{"image"}, Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{
			Image:   "{{ .Tasks.image.Outputs.ref }}",
			Command: []string{"/bin/busybox", "cat", "/out/msg"},
			Env:     map[string]string{"K": "V"},
			Dir:     "/out",
		}}},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("Parse:\ngot  %v\nwant %v", got, want)
	}
}

func TestParseBuildAndRunErrors(t *testing.T) {
	t.Parallel()
	task := func(body string) string { return "name: j\ntasks:\n  - name: a\n    " + body + "\n" }
	for _, tt := range []struct {
		name string
		yaml string
		want []wantErr
	}{
		{"no context", task("build: {dockerfile: Dockerfile}"), []wantErr{{"tasks[0].build.context", 4, "required"}}},
		{"both contexts", task("build:\n      context: {git: {url: u}, dir: /x}"), []wantErr{{"tasks[0].build.context", 5, "set either git or dir, not both"}}},
		{"no git url", task("build:\n      context:\n        git: {revision: main}"), []wantErr{{"tasks[0].build.context.git.url", 6, "required"}}},
		{"relative dir", task("build: {context: {dir: src}}"), []wantErr{{"tasks[0].build.context.dir", 4, "absolute path"}}},
		{"unknown context field", task("build:\n      context: {tarball: x}"), []wantErr{{"tasks[0].build.context.tarball", 5, "unknown field; known fields are dir, git"}}},
		{"unknown build field", task("build:\n      context: {dir: /x}\n      platforms: [a]"), []wantErr{{"tasks[0].build.platforms", 6, "unknown field"}}},
		{"dockerfile outside", task("build: {context: {dir: /x}, dockerfile: ../Dockerfile}"), []wantErr{{"tasks[0].build.dockerfile", 4, "inside the context"}}},
		{"bad arg name", task("build:\n      context: {dir: /x}\n      args:\n        1A: x"), []wantErr{{`tasks[0].build.args["1A"]`, 7, "invalid build argument name"}}},
		{"cache without ref", task("build: {context: {dir: /x}, cache: {}}"), []wantErr{{"tasks[0].build.cache.ref", 4, "required"}}},
		{"broken template", task("build:\n      context: {dir: /x}\n      push: \"r/app:{{ .Revision\""), []wantErr{{"tasks[0].build.push", 6, "invalid template"}}},
		{"exec and build", task("exec: {shell: x}\n    build: {context: {dir: /x}}"), []wantErr{{"tasks[0].build", 5, "only one executor per task; exec is already set"}}},
		{"run without image", task("run: {command: [x]}"), []wantErr{{"tasks[0].run.image", 4, "required"}}},
		{"run without command", task("run: {image: x}"), []wantErr{{"tasks[0].run.command", 4, "required"}}},
		{"run command string", task("run: {image: x, command: ls}"), []wantErr{{"tasks[0].run.command", 4, "must be a list of strings"}}},
		{"run relative dir", task("run: {image: x, command: [ls], dir: out}"), []wantErr{{"tasks[0].run.dir", 4, "absolute path inside the image"}}},
		{"run bad env", task("run:\n      image: x\n      command: [ls]\n      env: {\"A-B\": x}"), []wantErr{{`tasks[0].run.env["A-B"]`, 7, "invalid environment variable name"}}},
		{"template of unknown task", task("run: {image: \"{{ .Tasks.nope.Outputs.ref }}\", command: [x]}"),
			[]wantErr{{"tasks[0].run.image", 4, `template reads outputs of unknown task "nope"`}}},
		{"template of a task not needed", "name: j\ntasks:\n  - {name: b, build: {context: {dir: /x}}}\n  - name: a\n    run:\n      image: x\n      command: [\"{{ .Tasks.b.Outputs.ref }}\"]\n",
			[]wantErr{{"tasks[1].run.command[0]", 7, `task "b", which this task does not need; add it to needs`}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantProblems(t, tt.yaml, tt.want)
		})
	}
}

// wantProblems parses yaml and checks it is refused with exactly want.
func wantProblems(t *testing.T, yaml string, want []wantErr) {
	t.Helper()
	_, err := Parse([]byte(yaml))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	got := problems(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(got), len(want), err)
	}
	for i, w := range want {
		g := got[i]
		if g.Field != w.field || g.Line != w.line || !strings.Contains(g.Msg, w.msg) {
			t.Errorf("error %d = {%q %d %q}, want {%q %d containing %q}", i, g.Field, g.Line, g.Msg, w.field, w.line, w.msg)
		}
	}
}

func TestTemplateThroughNeeds(t *testing.T) {
	t.Parallel()
	// c reads a's output through b.
	y := "name: j\ntasks:\n" +
		"  - {name: a, build: {context: {dir: /x}, push: r/a}}\n" +
		"  - {name: b, needs: [a], exec: {shell: x}}\n" +
		"  - {name: c, needs: [b], run: {image: \"{{ .Tasks.a.Outputs.ref }}\", command: [x]}}\n"
	if _, err := Parse([]byte(y)); err != nil {
		t.Fatalf("Parse: %v", err)
	}
}
