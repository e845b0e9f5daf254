package promote

import (
	"errors"
	"strings"
	"testing"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

const deployment = `# The web application.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example/web:1 # promoted by gantry
          ports: [{containerPort: 8080}]
        - name: sidecar
          image: other/side:2
`

func TestSet(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, file, content, image, ref string
		want                            string   // the output; "" means content with old replaced by new
		old, new                        string   // for want == ""
		replaced                        []string // descriptions, in order
	}{
		{
			name: "deployment", file: "apps/web/deployment.yaml", content: deployment,
			image: "registry.example/web", ref: "registry.example/web@" + digestA,
			old: "registry.example/web:1 #", new: "registry.example/web@" + digestA + " #",
			replaced: []string{"apps/web/deployment.yaml: containers[web] registry.example/web:1 -> registry.example/web@" + digestA},
		},
		{
			name: "tag ref", file: "d.yaml", content: deployment,
			image: "registry.example/web", ref: "registry.example/web:2",
			old: "web:1", new: "web:2",
			replaced: []string{"d.yaml: containers[web] registry.example/web:1 -> registry.example/web:2"},
		},
		{
			name: "registry with port", file: "d.yaml",
			content: "spec:\n  containers:\n  - name: a\n    image: host:5000/web:1\n  - name: b\n    image: host:5000/webx:1\n  - name: c\n    image: host:5000/web/x:1\n  - name: d\n    image: host:5000/web\n",
			image:   "host:5000/web", ref: "host:5000/web@" + digestA,
			want: "spec:\n  containers:\n  - name: a\n    image: host:5000/web@" + digestA + "\n  - name: b\n    image: host:5000/webx:1\n  - name: c\n    image: host:5000/web/x:1\n  - name: d\n    image: host:5000/web@" + digestA + "\n",
			replaced: []string{
				"d.yaml: containers[a] host:5000/web:1 -> host:5000/web@" + digestA,
				"d.yaml: containers[d] host:5000/web -> host:5000/web@" + digestA,
			},
		},
		{
			name: "digest to digest", file: "d.yaml",
			content: "containers:\n- image: registry.example/web:1@" + digestA + "\n",
			image:   "registry.example/web", ref: "registry.example/web@" + digestB,
			want:     "containers:\n- image: registry.example/web@" + digestB + "\n",
			replaced: []string{"d.yaml: containers[0] registry.example/web:1@" + digestA + " -> registry.example/web@" + digestB},
		},
		{
			name: "no docker.io defaults", file: "d.yaml",
			content: "containers:\n- {name: a, image: docker.io/library/nginx:1}\n- {name: b, image: nginx:1}\n",
			image:   "nginx", ref: "nginx:2",
			want:     "containers:\n- {name: a, image: docker.io/library/nginx:1}\n- {name: b, image: nginx:2}\n",
			replaced: []string{"d.yaml: containers[b] nginx:1 -> nginx:2"},
		},
		{
			name: "multiple documents", file: "all.yaml",
			content: "---\n# service first\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Pod\nspec:\n  initContainers:\n  - name: migrate\n    image: 'registry.example/web:1'\n  containers:\n  - name: web\n    image: \"registry.example/web:1\"\n...\n---\nkind: ConfigMap\ndata:\n  image: registry.example/web:1\n",
			image:   "registry.example/web", ref: "registry.example/web@" + digestA,
			want: "---\n# service first\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Pod\nspec:\n  initContainers:\n  - name: migrate\n    image: 'registry.example/web@" + digestA + "'\n  containers:\n  - name: web\n    image: \"registry.example/web@" + digestA + "\"\n...\n---\nkind: ConfigMap\ndata:\n  image: registry.example/web:1\n",
			replaced: []string{
				"all.yaml: initContainers[migrate] registry.example/web:1 -> registry.example/web@" + digestA,
				"all.yaml: containers[web] registry.example/web:1 -> registry.example/web@" + digestA,
			},
		},
		{
			name: "cronjob", file: "cron.yaml",
			content: "apiVersion: batch/v1\nkind: CronJob\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          ephemeralContainers:\n          - name: debug\n            image: registry.example/web:1\n          containers:\n          - name: job\n            image: registry.example/web:1\n          - name: other\n            image: registry.example/other:1\n",
			image:   "registry.example/web", ref: "registry.example/web:2",
			want: "apiVersion: batch/v1\nkind: CronJob\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          ephemeralContainers:\n          - name: debug\n            image: registry.example/web:2\n          containers:\n          - name: job\n            image: registry.example/web:2\n          - name: other\n            image: registry.example/other:1\n",
			replaced: []string{
				"cron.yaml: ephemeralContainers[debug] registry.example/web:1 -> registry.example/web:2",
				"cron.yaml: containers[job] registry.example/web:1 -> registry.example/web:2",
			},
		},
		{
			name: "anchored image", file: "d.yaml",
			content: "x: &img registry.example/web:1\ncontainers:\n- name: a\n  image: *img\n- name: b\n  image: *img\n",
			image:   "registry.example/web", ref: "registry.example/web:2",
			want:     "x: &img registry.example/web:2\ncontainers:\n- name: a\n  image: *img\n- name: b\n  image: *img\n",
			replaced: []string{"d.yaml: containers[a] registry.example/web:1 -> registry.example/web:2"},
		},
		{
			name: "tagged", file: "d.yaml",
			content: "containers:\n- name: a\n  image: !!str   registry.example/web:1\n",
			image:   "registry.example/web", ref: "registry.example/web:2",
			want:     "containers:\n- name: a\n  image: !!str   registry.example/web:2\n",
			replaced: []string{"d.yaml: containers[a] registry.example/web:1 -> registry.example/web:2"},
		},
		{
			name: "block scalar is encoded again", file: "d.yaml",
			content: "# pod\nkind: Pod\nspec:\n    containers:\n    - name: a\n      image: >-\n        registry.example/web:1\n---\n# second\nkind: Service\n",
			image:   "registry.example/web", ref: "registry.example/web:2",
			want:     "# pod\nkind: Pod\nspec:\n  containers:\n    - name: a\n      image: >-\n        registry.example/web:2\n---\n# second\nkind: Service\n",
			replaced: []string{"d.yaml: containers[a] registry.example/web:1 -> registry.example/web:2"},
		},
		{
			name: "windows line ends", file: "d.yaml",
			content: "containers:\r\n- name: a\r\n  image: registry.example/web:1\r\n",
			image:   "registry.example/web", ref: "registry.example/web:2",
			want:     "containers:\r\n- name: a\r\n  image: registry.example/web:2\r\n",
			replaced: []string{"d.yaml: containers[a] registry.example/web:1 -> registry.example/web:2"},
		},
		{
			name: "kustomization tag to digest", file: "overlays/prod/kustomization.yaml",
			content: "resources:\n- ../../base\nimages:\n- name: registry.example/web\n  newTag: \"1\" # was\n- name: other/side\n  newTag: \"2\"\n",
			image:   "registry.example/web", ref: "registry.example/web@" + digestA,
			want:     "resources:\n- ../../base\nimages:\n- name: registry.example/web\n  digest: \"" + digestA + "\" # was\n- name: other/side\n  newTag: \"2\"\n",
			replaced: []string{"overlays/prod/kustomization.yaml: images[registry.example/web] registry.example/web:1 -> registry.example/web@" + digestA},
		},
		{
			name: "kustomization digest to digest", file: "kustomization.yml",
			content: "images:\n  - name: registry.example/web\n    digest: " + digestA + "\n",
			image:   "registry.example/web", ref: "registry.example/web@" + digestB,
			want:     "images:\n  - name: registry.example/web\n    digest: " + digestB + "\n",
			replaced: []string{"kustomization.yml: images[registry.example/web] registry.example/web@" + digestA + " -> registry.example/web@" + digestB},
		},
		{
			name: "kustomization tag and digest", file: "Kustomization",
			content: "# images\nimages:\n    - name: registry.example/web # the app\n      newTag: v1\n      digest: " + digestA + "\n",
			image:   "registry.example/web", ref: "registry.example/web@" + digestB,
			want:     "# images\nimages:\n  - name: registry.example/web # the app\n    digest: " + digestB + "\n",
			replaced: []string{"Kustomization: images[registry.example/web] registry.example/web:v1@" + digestA + " -> registry.example/web@" + digestB},
		},
		{
			name: "kustomization new name", file: "kustomization.yaml",
			content: "images:\n- name: registry.example/web\n  newTag: v1\n",
			image:   "registry.example/web", ref: "prod.example/web:1.0",
			want:     "images:\n  - name: registry.example/web\n    newTag: \"1.0\"\n    newName: prod.example/web\n",
			replaced: []string{"kustomization.yaml: images[registry.example/web] registry.example/web:v1 -> prod.example/web:1.0"},
		},
		{
			name: "kustomization drops new name and digest", file: "kustomization.yaml",
			content: "images:\n- name: registry.example/web\n  newName: prod.example/web\n  digest: " + digestA + "\n",
			image:   "registry.example/web", ref: "registry.example/web:1.0",
			want:     "images:\n  - name: registry.example/web\n    newTag: \"1.0\"\n",
			replaced: []string{"kustomization.yaml: images[registry.example/web] prod.example/web@" + digestA + " -> registry.example/web:1.0"},
		},
		{
			name: "kustomization digest to tag in place", file: "kustomization.yaml",
			content: "images:\n- name: registry.example/web\n  digest: " + digestA + "\n",
			image:   "registry.example/web", ref: "registry.example/web:1.0",
			want:     "images:\n- name: registry.example/web\n  newTag: \"1.0\"\n",
			replaced: []string{"kustomization.yaml: images[registry.example/web] registry.example/web@" + digestA + " -> registry.example/web:1.0"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want := c.want
			if want == "" {
				if !strings.Contains(c.content, c.old) {
					t.Fatalf("bad case: %q not in content", c.old)
				}
				want = strings.ReplaceAll(c.content, c.old, c.new)
			}
			out, replaced, err := Set(c.file, []byte(c.content), c.image, c.ref)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != want {
				t.Errorf("output:\n%s\nwant:\n%s", out, want)
			}
			if strings.Join(replaced, "\n") != strings.Join(c.replaced, "\n") {
				t.Errorf("replaced:\n%s\nwant:\n%s", strings.Join(replaced, "\n"), strings.Join(c.replaced, "\n"))
			}
			// The same promotion again changes nothing.
			again, replaced, err := Set(c.file, out, c.image, c.ref)
			if err != nil || string(again) != string(out) || len(replaced) != 0 {
				t.Errorf("second Set = %q, %q, %v; want the input and nothing replaced", again, replaced, err)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, file, content, image, ref string
		is                              error
		want                            string
	}{
		{"no container has it", "d.yaml", deployment, "registry.example/api", "registry.example/api:2", ErrNoImage, "d.yaml: no reference to the image registry.example/api"},
		{"not in a container", "d.yaml", "kind: ConfigMap\ndata:\n  image: registry.example/web:1\n", "registry.example/web", "registry.example/web:2", ErrNoImage, "d.yaml"},
		{"prefix is no match", "d.yaml", "containers:\n- image: registry.example/web-api:1\n", "registry.example/web", "registry.example/web:2", ErrNoImage, ""},
		{"kustomization without the name", "kustomization.yaml", "images:\n- name: other\n  newTag: x\n", "registry.example/web", "registry.example/web:2", ErrNoImage, "in images"},
		{"kustomization without images", "kustomization.yaml", "resources: [a.yaml]\n", "registry.example/web", "registry.example/web:2", ErrNoImage, ""},
		{"empty file", "d.yaml", "", "registry.example/web", "registry.example/web:2", ErrNoImage, ""},
		{"bad yaml", "apps/d.yaml", "containers:\n- name: a\n  image: x\n - name: b\n", "x", "x:1", nil, "apps/d.yaml, document 1: yaml: line 3:"},
		{"bad yaml in document 2", "d.yaml", "a: 1\n---\nb: [\n", "x", "x:1", nil, "d.yaml, document 2: yaml: line 3"},
		{"image with tag", "d.yaml", deployment, "registry.example/web:1", "registry.example/web:2", nil, "without tag or digest"},
		{"ref without tag", "d.yaml", deployment, "registry.example/web", "registry.example/web", nil, "no tag or digest"},
		{"bad digest", "d.yaml", deployment, "registry.example/web", "registry.example/web@sha256:abc", nil, "digest"},
		{"bad tag", "d.yaml", deployment, "registry.example/web", "registry.example/web:.x", nil, "invalid tag"},
		{"space in ref", "d.yaml", deployment, "registry.example/web", "registry.example/web x:1", nil, "invalid character"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Set(c.file, []byte(c.content), c.image, c.ref)
			if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Set = %v; want an error wrapping %v saying %q", err, c.is, c.want)
			}
		})
	}
}

func TestSplitRef(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]reference{
		"web":                          {repo: "web"},
		"web:1":                        {repo: "web", tag: "1"},
		"host:5000/web":                {repo: "host:5000/web"},
		"host:5000/web:1":              {repo: "host:5000/web", tag: "1"},
		"host:5000/a/web:1@" + digestA: {repo: "host:5000/a/web", tag: "1", digest: digestA},
		"web@" + digestA:               {repo: "web", digest: digestA},
	} {
		if got := splitRef(in); got != want || got.String() != in {
			t.Errorf("splitRef(%s) = %+v (%s), want %+v", in, got, got, want)
		}
	}
}
