package exec

import (
	"context"
	"os"
	"strings"
	"testing"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestRunOutputs(t *testing.T) {
	t.Parallel()
	r := newRunner(t, 0)
	rec := &recorder{}
	res := r.Run(context.Background(), Request{Name: "out", Spec: &gv1.ExecSpec{Shell: `
echo "context=/tmp/x y" >> "$GANTRY_OUTPUTS"
echo "ref=reg/app@sha256:1=2" >> "$GANTRY_OUTPUTS"
echo "not an output" >> "$GANTRY_OUTPUTS"
echo "bad key=1" >> "$GANTRY_OUTPUTS"
echo "$GANTRY_OUTPUTS"
`}}, rec)
	if !res.Success() {
		t.Fatalf("run: %+v", res)
	}
	if len(res.Outputs) != 2 || res.Outputs["context"] != "/tmp/x y" || res.Outputs["ref"] != "reg/app@sha256:1=2" {
		t.Errorf("outputs %v", res.Outputs)
	}
	sys := rec.get(sysout)
	if !strings.Contains(sys, "line 3 ignored") || !strings.Contains(sys, "line 4 ignored") {
		t.Errorf("system log does not name the bad lines:\n%s", sys)
	}
	path := strings.TrimSpace(rec.get(stdout))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("outputs file %s left behind: %v", path, err)
	}

	// A task that writes none reports none, and a file past the bound is
	// cut with a note.
	if res := r.Run(context.Background(), Request{Name: "none", Spec: &gv1.ExecSpec{Shell: "true"}}, nil); res.Outputs != nil {
		t.Errorf("no outputs written, got %v", res.Outputs)
	}
	rec = &recorder{}
	res = r.Run(context.Background(), Request{Name: "big", Spec: &gv1.ExecSpec{Shell: `echo a=1 > "$GANTRY_OUTPUTS"; head -c 400000 /dev/zero | tr '\0' x >> "$GANTRY_OUTPUTS"`}}, rec)
	if res.Outputs["a"] != "1" || !strings.Contains(rec.get(sysout), "the rest is ignored") {
		t.Errorf("oversized outputs file: %v\n%s", res.Outputs, rec.get(sysout))
	}
}

// A working directory its task left empty serves the next task; one with
// anything left in it, or its mode changed, is removed: every task starts
// in an empty directory of its own.
func TestWorkDirReuseOnlyWhenEmpty(t *testing.T) {
	t.Parallel()
	r := newRunner(t, 0)
	pwd := func(script string) string {
		rec := &recorder{}
		if res := r.Run(context.Background(), Request{Name: "w", Spec: &gv1.ExecSpec{Shell: "pwd; ls -A; " + script}}, rec); !res.Success() {
			t.Fatalf("run: %+v\n%s", res, rec.get(sysout))
		}
		lines := strings.Split(strings.TrimSpace(rec.get(stdout)), "\n")
		if len(lines) != 1 {
			t.Fatalf("working directory not empty at start: %q", lines)
		}
		return lines[0]
	}
	first := pwd("true")
	if second := pwd("touch left-behind"); second != first {
		t.Errorf("empty directory %s not reused (got %s)", first, second)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("directory with a file left in it kept: %v", err)
	}
	third := pwd("chmod 0777 .")
	if third == first {
		t.Errorf("removed directory came back")
	}
	if _, err := os.Stat(third); !os.IsNotExist(err) {
		t.Errorf("directory whose mode the task changed kept: %v", err)
	}
	pwd("true")
}
