package spec

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const secretsYAML = `name: release
tasks:
  - name: image
    build:
      context: {git: {url: "https://git.example/app.git", revision: main, secret: git-token}}
      secrets: {npmrc: npm_token, pip: pypi}
      registry_auth: {"registry.example.com:5000": registry}
      push: "registry.example.com:5000/app:1"
  - name: test
    needs: [image]
    run:
      image: "{{ .Tasks.image.Outputs.ref }}"
      command: [make, test]
      env: {MODE: ci, TOKEN: {secret: api-token}}
      registry_auth: {registry.example.com: registry}
  - name: notify
    exec:
      shell: notify
      env:
        URL: https://hooks.example
        HOOK: {secret: hook}
  - name: deploy
    needs: [image]
    deploy:
      cluster: prod
      source: {git: {url: "git@git.example:shop/config.git", secret: deploy-key}, path: envs/prod}
`

func TestParseSecrets(t *testing.T) {
	t.Parallel()
	got, err := Parse([]byte(secretsYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wantBuild := &gv1.BuildSpec{
		Context:      &gv1.BuildContext{Git: &gv1.GitSource{Url: "https://git.example/app.git", Revision: "main", Secret: "git-token"}},
		Secrets:      map[string]string{"npmrc": "npm_token", "pip": "pypi"},
		RegistryAuth: map[string]string{"registry.example.com:5000": "registry"},
		Push:         "registry.example.com:5000/app:1",
	}
	if b := got.Tasks[0].GetBuild(); !proto.Equal(b, wantBuild) {
		t.Errorf("build:\ngot  %v\nwant %v", b, wantBuild)
	}
	wantRun := &gv1.RunSpec{
		Image:        "{{ .Tasks.image.Outputs.ref }}",
		Command:      []string{"make", "test"},
		Env:          map[string]string{"MODE": "ci"},
		SecretEnv:    map[string]string{"TOKEN": "api-token"},
		RegistryAuth: map[string]string{"registry.example.com": "registry"},
	}
	if r := got.Tasks[1].GetRun(); !proto.Equal(r, wantRun) {
		t.Errorf("run:\ngot  %v\nwant %v", r, wantRun)
	}
	wantExec := &gv1.ExecSpec{Shell: "notify", Env: map[string]string{"URL": "https://hooks.example"}, SecretEnv: map[string]string{"HOOK": "hook"}}
	if e := got.Tasks[2].GetExec(); !proto.Equal(e, wantExec) {
		t.Errorf("exec:\ngot  %v\nwant %v", e, wantExec)
	}
	if s := got.Tasks[3].GetDeploy().GetSource().GetGit().GetSecret(); s != "deploy-key" {
		t.Errorf("deploy git secret = %q", s)
	}
	for i, want := range [][]string{{"git-token", "npm_token", "pypi", "registry"}, {"api-token", "registry"}, {"hook"}, {"deploy-key"}} {
		if refs := SecretRefs(got.Tasks[i]); !slices.Equal(refs, want) {
			t.Errorf("SecretRefs(tasks[%d]) = %v, want %v", i, refs, want)
		}
	}
	if refs := SecretRefs(shell("a", "x")); refs != nil {
		t.Errorf("SecretRefs(no secrets) = %v", refs)
	}
}

func TestParseSecretErrors(t *testing.T) {
	t.Parallel()
	task := func(body string) string { return "name: j\ntasks:\n  - name: a\n    " + body + "\n" }
	for _, tt := range []struct {
		name string
		yaml string
		want []wantErr
	}{
		{"secret name with dot", task("exec:\n      shell: x\n      env: {T: {secret: a.b}}"),
			[]wantErr{{`tasks[0].exec.env["T"]`, 6, `invalid secret name: "a.b" has '.'`}}},
		{"secret name template", task("exec:\n      shell: x\n      env:\n        T: {secret: \"{{ .Revision }}\"}"),
			[]wantErr{{`tasks[0].exec.env["T"]`, 7, "templates are not expanded in them"}}},
		{"empty secret", task("run:\n      image: x\n      command: [x]\n      env: {T: {}}"),
			[]wantErr{{`tasks[0].run.env["T"]`, 7, "invalid secret name: empty"}}},
		{"unknown secret field", task("exec:\n      shell: x\n      env: {T: {value: x}}"),
			[]wantErr{{`tasks[0].exec.env["T"].value`, 6, "unknown field; known fields are secret"}}},
		{"secret as list", task("exec:\n      shell: x\n      env: {T: {secret: [a]}}"),
			[]wantErr{{`tasks[0].exec.env["T"].secret`, 6, "must be a string, got a list"}}},
		{"secret env name", task("exec:\n      shell: x\n      env: {1T: {secret: a}}"),
			[]wantErr{{`tasks[0].exec.env["1T"]`, 6, "invalid environment variable name"}}},
		{"build secret id", task("build:\n      context: {dir: /x}\n      secrets: {\"a/b\": s}"),
			[]wantErr{{`tasks[0].build.secrets["a/b"]`, 6, `invalid secret id: "a/b" has '/'`}}},
		{"build secret name", task("build:\n      context: {dir: /x}\n      secrets: {npm: \"../x\"}"),
			[]wantErr{{`tasks[0].build.secrets["npm"]`, 6, "invalid secret name"}}},
		{"registry scheme", task("build:\n      context: {dir: /x}\n      registry_auth: {\"https://r.example\": s}"),
			[]wantErr{{`tasks[0].build.registry_auth["https://r.example"]`, 6, "no scheme"}}},
		{"registry path", task("run:\n      image: x\n      command: [x]\n      registry_auth: {\"r.example/team\": s}"),
			[]wantErr{{`tasks[0].run.registry_auth["r.example/team"]`, 7, "no path"}}},
		{"registry port", task("run:\n      image: x\n      command: [x]\n      registry_auth: {\"r.example:99999\": s}"),
			[]wantErr{{`tasks[0].run.registry_auth["r.example:99999"]`, 7, `bad port "99999"`}}},
		{"registry host", task("run:\n      image: x\n      command: [x]\n      registry_auth: {\"r_x.example\": s}"),
			[]wantErr{{`tasks[0].run.registry_auth["r_x.example"]`, 7, "use a DNS name or IP address"}}},
		{"git secret", task("build: {context: {git: {url: u, secret: \"a b\"}}}"),
			[]wantErr{{"tasks[0].build.context.git.secret", 4, `invalid secret name: "a b" has ' '`}}},
		{"deploy git secret", task("deploy: {cluster: c, source: {git: {url: u, secret: \"\"}}}"), nil},
		{"deploy git secret bad", task("deploy: {cluster: c, source: {git: {url: u, secret: \"x*\"}}}"),
			[]wantErr{{"tasks[0].deploy.source.git.secret", 4, "invalid secret name"}}},
		{"unknown git field", task("build: {context: {git: {url: u, token: x}}}"),
			[]wantErr{{"tasks[0].build.context.git.token", 4, "unknown field; known fields are revision, secret, url"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.want == nil {
				if _, err := Parse([]byte(tt.yaml)); err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			wantProblems(t, tt.yaml, tt.want)
		})
	}
}

func TestRegistryHost(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"docker.io", "registry.example.com:5000", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "[fe80::1]", "r-1.example"} {
		if err := registryHost(h); err != nil {
			t.Errorf("registryHost(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", "https://r", "r/x", "r:", "r:0", "r:+1", "r:x", "-r", "r..x", "::1", "[::1", "[1.2.3.4]", "r x", strings.Repeat("a", 300)} {
		if err := registryHost(h); err == nil {
			t.Errorf("registryHost(%q) succeeded", h)
		}
	}
}

// Specs built through the API are held to the same rules.
func TestValidateSecrets(t *testing.T) {
	t.Parallel()
	exec := func(env, secretEnv map[string]string) *gv1.JobSpec {
		return &gv1.JobSpec{Name: "j", Tasks: []*gv1.TaskSpec{{Name: "a", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "x", Env: env, SecretEnv: secretEnv}}}}}
	}
	for _, tt := range []struct {
		name string
		spec *gv1.JobSpec
		want []wantErr
	}{
		{"both", exec(map[string]string{"T": "x"}, map[string]string{"T": "s"}),
			[]wantErr{{`tasks[0].exec.secret_env["T"]`, 0, "also set in env"}}},
		{"bad name", exec(nil, map[string]string{"T": "s.x"}),
			[]wantErr{{`tasks[0].exec.secret_env["T"]`, 0, "invalid secret name"}}},
		{"bad variable", exec(nil, map[string]string{"A-B": "s"}),
			[]wantErr{{`tasks[0].exec.secret_env["A-B"]`, 0, "invalid environment variable name"}}},
	} {
		got := problems(t, Validate(tt.spec))
		if len(got) != len(tt.want) {
			t.Fatalf("%s: got %v, want %d errors", tt.name, got, len(tt.want))
		}
		for i, w := range tt.want {
			if g := got[i]; g.Field != w.field || !strings.Contains(g.Msg, w.msg) {
				t.Errorf("%s: error %d = {%q %q}, want {%q containing %q}", tt.name, i, g.Field, g.Msg, w.field, w.msg)
			}
		}
	}
	// At most MaxSecrets different secrets per task.
	s := exec(nil, map[string]string{})
	for i := range MaxSecrets + 1 {
		s.Tasks[0].GetExec().SecretEnv[strings.Repeat("V", i+1)] = strings.Repeat("s", i+1)
	}
	got := problems(t, Validate(s))
	if len(got) != 1 || got[0].Field != "tasks[0]" || !strings.Contains(got[0].Msg, "refers to 33 secrets, at most 32 are allowed") {
		t.Errorf("too many secrets: %v", got)
	}
}
