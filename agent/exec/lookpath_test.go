package exec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// script writes an executable shell script named name into dir that prints
// what.
func script(t *testing.T, dir, name, what string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\necho "+what+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestProgramsFoundInTheTasksPath(t *testing.T) {
	t.Parallel()
	r := newRunner(t, 0)
	tools, other := t.TempDir(), t.TempDir()
	script(t, tools, "gantry-tool", "from-tools")
	run := func(path string) (Result, *recorder) {
		var rec recorder
		res := r.Run(context.Background(), Request{Spec: &gv1.ExecSpec{
			Command: []string{"gantry-tool"},
			Env:     map[string]string{"PATH": path},
		}}, &rec)
		return res, &rec
	}
	// The spec's PATH, not the agent's, finds the program.
	if res, rec := run(tools + ":/usr/bin:/bin"); !res.Success() || strings.TrimSpace(rec.get(stdout)) != "from-tools" {
		t.Fatalf("spec PATH with the tool: %+v, stdout %q", res, rec.get(stdout))
	}
	// A path kept from the last lookup that is gone is looked up again.
	if err := os.Remove(filepath.Join(tools, "gantry-tool")); err != nil {
		t.Fatal(err)
	}
	script(t, other, "gantry-tool", "from-other")
	if res, rec := run(tools + ":" + other); !res.Success() || strings.TrimSpace(rec.get(stdout)) != "from-other" {
		t.Fatalf("tool moved to a later PATH entry: %+v, stdout %q", res, rec.get(stdout))
	}
	// Relative entries are not searched.
	res, _ := run(".:relative")
	if res.Class != gv1.FailureClass_FAILURE_CLASS_INFRA || res.Err == nil || !strings.Contains(res.Err.Error(), "not found") {
		t.Fatalf("PATH of relative entries only: %+v; want not found", res)
	}
}
