package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/agent/mask"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestHostileNamesRefused sends assignments whose names would reach a
// path or a subject: each is refused, naming the field, and nothing is
// written outside the agent's work directory.
func TestHostileNamesRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	outside := t.TempDir()
	sentinel := filepath.Join(outside, "etc")
	if err := os.Mkdir(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	a := f.start(func(c *Config) { c.WorkDir = filepath.Join(outside, "agent") })
	deploy := func(job, app string) *gv1.Assignment {
		return &gv1.Assignment{Ref: &gv1.TaskRef{JobId: job, Task: "deploy", Attempt: 1},
			Spec: &gv1.TaskSpec{Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{App: app, Cluster: "c"}}}}
	}
	for _, c := range []struct {
		as    *gv1.Assignment
		field string
	}{
		{execTask("../../etc", "t", &gv1.ExecSpec{Command: []string{"true"}}), "assignment.ref.job_id"},
		{execTask("..", "t", &gv1.ExecSpec{Command: []string{"true"}}), "assignment.ref.job_id"},
		{execTask("a.b", "t", &gv1.ExecSpec{Command: []string{"true"}}), "assignment.ref.job_id"},
		{execTask("j", "../x", &gv1.ExecSpec{Command: []string{"true"}}), "assignment.ref.task"},
		{execTask("j", "t*", &gv1.ExecSpec{Command: []string{"true"}}), "assignment.ref.task"},
		{execTask("j", strings.Repeat("t", 100), &gv1.ExecSpec{Command: []string{"true"}}), "assignment.ref.task"},
		{deploy("../../etc", "app"), "assignment.ref.job_id"},
		{deploy("j", "../../etc"), "assignment.spec.deploy.app"},
		{&gv1.Assignment{Ref: &gv1.TaskRef{JobId: "j", Task: "t"}}, "assignment.ref.attempt"},
		{&gv1.Assignment{Ref: &gv1.TaskRef{JobId: "j", Task: "t", Attempt: 1}, JobName: "a\nb"}, "assignment.job_name"},
		{&gv1.Assignment{Ref: &gv1.TaskRef{JobId: "j", Task: "t", Attempt: 1}, Secrets: map[string][]byte{"a b": nil}}, "assignment.secrets"},
	} {
		r := f.assign(c.as)
		if r.Accepted || !strings.HasPrefix(r.Reason, c.field+": invalid name") && !strings.HasPrefix(r.Reason, c.field+":") {
			t.Errorf("%v: accepted %v, reason %q; want a refusal naming %s", c.as.GetRef(), r.Accepted, r.Reason, c.field)
		}
	}
	if _, err := os.Stat(sentinel); err != nil {
		t.Errorf("the directory outside the work directory is gone: %v", err)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 2 {
		t.Errorf("%d entries next to the work directory, want etc and agent", len(entries))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.running) != 0 {
		t.Errorf("%d tasks running", len(a.running))
	}
}

func TestBoundOutputs(t *testing.T) {
	t.Parallel()
	m := mask.New([]byte("s3cret-value"))
	in := map[string]string{
		"digest":   "sha256:abc",
		"token":    "prefix s3cret-value",
		"bad.key":  "x",
		"bad/key":  "x",
		"long":     strings.Repeat("v", limit.OutputValue+1),
		"not_utf8": "a\xffb",
	}
	var notes []string
	out := boundOutputs(in, m, func(s string) { notes = append(notes, s) })
	want := map[string]string{"digest": "sha256:abc", "token": "prefix ***", "not_utf8": "a\uFFFDb"}
	if len(out) != len(want) {
		t.Errorf("outputs = %v, want %v", out, want)
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("outputs[%s] = %q, want %q", k, out[k], v)
		}
	}
	if len(notes) != 3 {
		t.Errorf("notes = %q, want one per dropped output", notes)
	}
	many := map[string]string{}
	for i := range limit.ReportOutputs + 5 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	notes = nil
	if out := boundOutputs(many, m, func(s string) { notes = append(notes, s) }); len(out) != limit.ReportOutputs || len(notes) != 5 {
		t.Errorf("%d outputs, %d notes; want %d and 5", len(out), len(notes), limit.ReportOutputs)
	}
}

func TestReportError(t *testing.T) {
	t.Parallel()
	m := mask.New([]byte("s3cret-value"))
	long := "clone https://x:s3cret-value@host: " + strings.Repeat("é", limit.ReportError) + " the end"
	got := reportError(errors.New(long), m)
	if len(got) > limit.ReportError || !strings.HasPrefix(got, "clone https://x:***@host") || !strings.HasSuffix(got, " the end") || strings.Contains(got, "s3cret") {
		t.Errorf("reportError = %d bytes: %.80q … %q", len(got), got, got[max(0, len(got)-20):])
	}
	if reportError(nil, m) != "" {
		t.Error("nil error reported")
	}
}

func TestSpoolRefusesAndDropsBadNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	bad := &gv1.Report{Ref: &gv1.TaskRef{JobId: "../x", Task: "t", Attempt: 1}, FinishedAt: timestamppb.Now()}
	if err := sp.put(bad); err == nil {
		t.Fatal("spooled a report with job id ../x")
	}
	good := &gv1.Report{Ref: &gv1.TaskRef{JobId: "j", Task: "t", Attempt: 1}, FinishedAt: timestamppb.Now()}
	if err := sp.put(good); err != nil {
		t.Fatal(err)
	}
	// A file an older agent wrote with an unchecked name is dropped.
	data, _ := marshal(&gv1.Report{Ref: &gv1.TaskRef{JobId: "a..b", Task: "t", Attempt: 1}})
	if err := os.WriteFile(filepath.Join(dir, "a..b_t_1.pb"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sp, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sp.len() != 1 || !sp.has(keyOf(good.Ref)) {
		t.Errorf("spool holds %d reports, want the good one", sp.len())
	}
	if _, err := os.Stat(filepath.Join(dir, "a..b_t_1.pb")); !os.IsNotExist(err) {
		t.Errorf("the bad file is still there: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := DefaultConfig()
	ok.Name = "a1"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for what, mutate := range map[string]func(*Config){
		"name":     func(c *Config) { c.Name = "-a" },
		"cluster":  func(c *Config) { c.Cluster = "a.b" },
		"label":    func(c *Config) { c.Labels = map[string]string{"a b": "v"} },
		"label ":   func(c *Config) { c.Labels = map[string]string{"k": strings.Repeat("v", limit.LabelValue+1)} },
		"pass env": func(c *Config) { c.PassEnv = []string{"A=B"} },
		"slots":    func(c *Config) { c.Slots = 0 },
		"kube":     func(c *Config) { c.Kube = []KubeCluster{{Name: "a/b"}} },
		"tls":      func(c *Config) { c.TLSCert, c.TLSKey = "a1.pem", "a1-key.pem" },
		"labels": func(c *Config) {
			c.Labels = map[string]string{}
			for i := range limit.Labels + 1 {
				c.Labels[fmt.Sprintf("l%d", i)] = ""
			}
		},
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), strings.TrimSpace(what)) {
			t.Errorf("%s: Validate = %v", what, err)
		}
	}
	for host, want := range map[string]string{"build-01.example.com": "build-01-example-com", "-x": "x", "": "agent", strings.Repeat("h", 80): strings.Repeat("h", 63)} {
		if got := sanitizeName(host); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", host, got, want)
		}
	}
}
