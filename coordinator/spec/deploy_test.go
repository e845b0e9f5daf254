package spec

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const deployYAML = `name: release
tasks:
  - name: image
    build:
      context: {dir: /src/app}
      push: "127.0.0.1:5000/web:1"
  - name: deploy
    needs: [image]
    deploy:
      app: web
      cluster: local
      namespace: shop
      source:
        git: {url: "file:///srv/config.git", revision: main}
        path: envs/prod
      images:
        127.0.0.1:5000/web: "{{ .Tasks.image.Outputs.ref }}"
      prune: true
      health_timeout: 90s
`

func TestParseDeploy(t *testing.T) {
	t.Parallel()
	got, err := Parse([]byte(deployYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &gv1.DeploySpec{
		App: "web", Cluster: "local", Namespace: "shop",
		Source:        &gv1.ManifestSource{Git: &gv1.GitSource{Url: "file:///srv/config.git", Revision: "main"}, Path: "envs/prod"},
		Images:        map[string]string{"127.0.0.1:5000/web": "{{ .Tasks.image.Outputs.ref }}"},
		Prune:         true,
		HealthTimeout: durationpb.New(90 * time.Second),
	}
	if d := got.GetTasks()[1].GetDeploy(); !proto.Equal(d, want) {
		t.Errorf("deploy:\ngot  %v\nwant %v", d, want)
	}
}

func TestParseDeployErrors(t *testing.T) {
	t.Parallel()
	task := func(body string) string { return "name: j\ntasks:\n  - name: a\n    " + body + "\n" }
	for _, tt := range []struct {
		name string
		yaml string
		want []wantErr
	}{
		{"no cluster", task("deploy: {source: {inline: x}}"), []wantErr{{"tasks[0].deploy.cluster", 4, "required"}}},
		{"no source", task("deploy: {cluster: local}"), []wantErr{{"tasks[0].deploy.source", 4, "required"}}},
		{"two sources", task("deploy: {cluster: local, source: {inline: x, dir: /m}}"), []wantErr{{"tasks[0].deploy.source", 4, "set one of"}}},
		{"bad namespace", task("deploy: {cluster: local, namespace: Shop_1, source: {inline: x}}"), []wantErr{{"tasks[0].deploy.namespace", 4, "invalid namespace"}}},
		{"path escapes", task("deploy: {cluster: local, source: {git: {url: u}, path: ../x}}"), []wantErr{{"tasks[0].deploy.source.path", 4, "inside the repository"}}},
		{"prune not bool", task("deploy: {cluster: local, source: {inline: x}, prune: yes please}"), []wantErr{{"tasks[0].deploy.prune", 4, "true or false"}}},
		{"image with tag", task("deploy:\n      cluster: local\n      source: {inline: x}\n      images: {\"web:1\": x}"), nil},
		{"unknown field", task("deploy: {cluster: local, source: {inline: x}, helm: {}}"), []wantErr{{"tasks[0].deploy.helm", 4, "unknown field"}}},
		{"trigger set", task("deploy: {cluster: local, source: {inline: x}, trigger: commit}"), []wantErr{{"tasks[0].deploy.trigger", 4, "unknown field"}}},
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

func TestPromote(t *testing.T) {
	js, err := Parse([]byte(`name: p
tasks:
  - name: promote
    promote:
      repo: {url: "http://forge.example/acme/config.git", credential: CONFIG_TOKEN}
      branch: main
      file: apps/web/deployment.yaml
      image: {name: "registry.example/web", ref: "{{ .Tasks.image.Outputs.ref }}"}
`))
	if err == nil {
		t.Fatalf("a template reading a task the promote does not need was accepted: %v", js)
	}
	js, err = Parse([]byte(`name: p
tasks:
  - name: image
    exec: {command: ["true"]}
  - name: promote
    needs: [image]
    promote:
      repo: {url: "http://forge.example/acme/config.git", credential: CONFIG_TOKEN}
      branch: main
      file: apps/web/deployment.yaml
      image: {name: "registry.example/web", ref: "{{ .Tasks.image.Outputs.ref }}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	pr := js.Tasks[1]
	if got := SecretRefs(pr); len(got) != 1 || got[0] != "CONFIG_TOKEN" {
		t.Errorf("secret refs %v, want CONFIG_TOKEN", got)
	}
	if pr.Concurrency != PromoteConcurrency("http://forge.example/acme/config.git", "main") {
		t.Errorf("concurrency %q: promotions to one branch are not serialized", pr.Concurrency)
	}
	_, err = Parse([]byte(`name: p
tasks:
  - name: promote
    promote: {repo: {url: "u"}, branch: main, file: ../x, image: {name: n}}
`))
	for _, want := range []string{"promote.file", "promote.image.ref"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad promote: %v, want a problem with %s", err, want)
		}
	}
}

func TestApproval(t *testing.T) {
	js, err := Parse([]byte(`name: p
tasks:
  - name: test
    exec: {command: ["true"]}
  - name: gate
    needs: [test]
    approval: {roles: [developer], message: "ship it?"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := js.Tasks[1].GetApproval(); a == nil || a.Roles[0] != "developer" || a.Message != "ship it?" {
		t.Fatalf("approval %v", js.Tasks[1])
	}
	_, err = Parse([]byte(`name: p
tasks:
  - name: gate
    approval: {roles: [root]}
`))
	if err == nil || !strings.Contains(err.Error(), `tasks[0].approval.roles[0]: unknown role "root"`) {
		t.Fatalf("unknown role: %v", err)
	}
}
