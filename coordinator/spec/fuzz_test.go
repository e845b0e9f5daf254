package spec

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/render"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// FuzzParse checks that Parse never panics, that what it accepts Validate
// accepts too and is bounded in size, and that its templates render within
// the bounds of package render whatever the outputs they read.
func FuzzParse(f *testing.F) {
	for _, s := range []string{fullYAML, buildYAML, deployYAML, secretsYAML, stringBomb(), listBomb(), errorBomb(), nestedBomb()} {
		f.Add([]byte(s))
	}
	for _, tt := range parseErrorTests {
		f.Add([]byte(tt.yaml))
	}
	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(examples) == 0 {
		f.Fatalf("no examples: %v", err)
	}
	for _, name := range examples {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned a spec and error %v", err)
			}
			for _, e := range problems(t, err) {
				if e.Msg == "" || e.Line < 0 {
					t.Fatalf("bad error %#v", e)
				}
			}
			if n := len(err.Error()); n > 1<<20 {
				t.Fatalf("error of %d bytes", n)
			}
			return
		}
		if err := Validate(s); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v\n%s", err, data)
		}
		if n := proto.Size(s); n > MaxSpecSize {
			t.Fatalf("Parse accepted a spec of %d bytes", n)
		}
		if _, err := proto.Marshal(s); err != nil {
			t.Fatalf("Parse accepted what proto cannot marshal: %v\n%s", err, data)
		}
		renderWorst(t, s)
	})
}

var outputRef = regexp.MustCompile(`\.Tasks\.(\w+)\.Outputs\.(\w+)`)

// renderWorst renders every task of s with outputs of the longest length
// for every output its templates read: it may fail for a missing output,
// but never for the size of what it renders.
func renderWorst(t *testing.T, s *gv1.JobSpec) {
	t.Helper()
	long := strings.Repeat("v", limit.OutputValue)
	outputs := map[string]map[string]string{}
	for _, task := range s.Tasks {
		outputs[task.Name] = map[string]string{"revision": long}
		for f := range templated(task, "") {
			for _, m := range outputRef.FindAllStringSubmatch(f.value, -1) {
				if outputs[m[1]] == nil {
					outputs[m[1]] = map[string]string{}
				}
				outputs[m[1]][m[2]] = long
			}
		}
	}
	for _, task := range s.Tasks {
		got, err := render.Task(task, outputs, nil)
		if err != nil {
			if !errors.Is(err, render.ErrTemplate) || strings.Contains(err.Error(), "more than") {
				t.Fatalf("render %s: %v", task.Name, err)
			}
			continue
		}
		if n := proto.Size(got); n > render.MaxTask {
			t.Fatalf("render %s: %d bytes", task.Name, n)
		}
	}
}
