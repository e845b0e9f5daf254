package render

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestRefsRefused(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]string{
		`{{ define "x" }}a{{ end }}{{ template "x" }}`:             "define and block are not allowed",
		`{{ define "template" }}{{ .Tasks.a.Outputs.x }}{{ end }}`: "define and block are not allowed",
		`{{ block "x" . }}a{{ end }}`:                              "define and block are not allowed",
		`{{ template "x" }}`:                                       "template is not allowed",
		`{{ range .Tasks }}x{{ end }}`:                             "range is not allowed",
		`{{ with .Tasks.a.Outputs }}{{ .x }}{{ end }}`:             "with is not allowed",
		`{{ printf "%0999999d" 1 }}`:                               "functions (printf) are not allowed",
		`{{ .Tasks.a.Outputs.x | printf "%s" }}`:                   "pipelines (|) are not allowed",
		`{{ $x := .Revision }}`:                                    "variables are not allowed",
		`{{ $ }}`:                                                  "$ is not allowed",
		`{{ . }}`:                                                  ". is not allowed",
		`{{ .Tasks }}`:                                             ".Tasks is not allowed",
		`{{ .Tasks.a.Outputs }}`:                                   ".Tasks.a.Outputs is not allowed",
		`{{ .Tasks.a.Outputs.x.y }}`:                               "is not allowed",
		`{{ (.Tasks).a }}`:                                         "is not allowed",
		`{{ 1 }}`:                                                  "1 is not allowed",
		`{{ if len .Tasks }}x{{ end }}`:                            "functions (len) are not allowed",
		"{{ .Revision }}" + strings.Repeat("x", MaxTemplate):       "more than the 4096 allowed",
	} {
		_, err := Refs(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Refs(%.60q) = %v, want an error containing %q", s, err, want)
		}
		if _, _, err2 := Inspect(s); err2 == nil {
			t.Errorf("Inspect(%.60q) succeeded", s)
		}
		// Task refuses the same, as a defence in depth.
		task := &gv1.TaskSpec{Name: "t", Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: s, Command: []string{"x"}}}}
		if _, err := Task(task, map[string]map[string]string{"a": {"x": "1"}}, nil); !errors.Is(err, ErrTemplate) {
			t.Errorf("Task(%.60q) = %v, want ErrTemplate", s, err)
		}
	}
}

func TestInspectBound(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]int{
		"plain":             5,
		"a{{ .Revision }}b": 2 + limit.OutputValue,
		`{{ "{{" }}x`:       3,
		"{{ .Tasks.a.Outputs.x }}{{ .Tasks.a.Outputs.x }}":               2 * limit.OutputValue,
		"{{ if .Tasks.a.Outputs.x }}y{{ else }}{{ .Revision }}{{ end }}": 1 + limit.OutputValue,
	} {
		_, got, err := Inspect(s)
		if err != nil || got != want {
			t.Errorf("Inspect(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}

// A template within its bound renders; one whose values make it longer
// than MaxRendered is refused with ErrTemplate.
func TestTaskRenderedCap(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("v", 60<<10) // longer than any output may be
	run := func(image string) *gv1.TaskSpec {
		return &gv1.TaskSpec{Name: "t", Needs: []string{"a"}, Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: image, Command: []string{"x"}}}}
	}
	got, err := Task(run("{{ .Tasks.a.Outputs.x }}"), map[string]map[string]string{"a": {"x": big}}, nil)
	if err != nil || got.GetRun().GetImage() != big {
		t.Fatalf("one value: %v", err)
	}
	_, err = Task(run("{{ .Tasks.a.Outputs.x }}{{ .Tasks.a.Outputs.x }}"), map[string]map[string]string{"a": {"x": big}}, nil)
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "run.image: template: renders to more than 65536 bytes") {
		t.Errorf("two values: %v", err)
	}
	// The whole rendered task is bounded too.
	tk := run("x")
	for range 20 {
		tk.GetRun().Command = append(tk.GetRun().Command, "{{ .Tasks.a.Outputs.x }}")
	}
	_, err = Task(tk, map[string]map[string]string{"a": {"x": big}}, nil)
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "rendered task is") {
		t.Errorf("large task: %v", err)
	}
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{
		"{{ .Tasks.a.Outputs.x }}", "r:5000/app:{{ .Revision }}", `{{ "{{" }}literal`,
		"{{ if .Tasks.a.Outputs.x }}{{ .Revision }}{{ else }}n{{ end }}",
		`{{ define "x" }}{{ .Tasks.a.Outputs.x }}{{ end }}{{ template "x" }}{{ template "x" }}`,
		`{{ range .Tasks }}{{ range .Outputs }}{{ . }}{{ end }}{{ end }}`,
		`{{ printf "%0999999d" 1 }}`, "{{ .Tasks", "{{- .Revision -}}",
	} {
		f.Add(s)
	}
	outputs := map[string]map[string]string{
		"a": {"x": strings.Repeat("x", limit.OutputValue), "revision": strings.Repeat("r", limit.OutputValue)},
		"b": {"y": "short"},
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, bound, berr := Inspect(s)
		task := &gv1.TaskSpec{Name: "t", Needs: []string{"a", "b"}, Executor: &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: s, Command: []string{"x"}}}}
		got, err := Task(task, outputs, nil)
		if err != nil {
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("Task(%q): %v is not ErrTemplate", s, err)
			}
			return
		}
		img := got.GetRun().GetImage()
		if len(img) > MaxRendered {
			t.Fatalf("Task(%q) rendered %d bytes", s, len(img))
		}
		if berr != nil {
			t.Fatalf("Task(%q) rendered what Inspect refuses: %v", s, berr)
		}
		if len(img) > bound {
			t.Fatalf("Task(%q) rendered %d bytes, Inspect said at most %d", s, len(img), bound)
		}
	})
}
