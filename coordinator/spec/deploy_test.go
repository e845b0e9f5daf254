package spec

import (
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
