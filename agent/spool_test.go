package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func spoolReport(job string, attempt int32) *gv1.Report {
	return &gv1.Report{Ref: &gv1.TaskRef{JobId: job, Task: "t", Attempt: attempt}, Success: true,
		Outputs: map[string]string{"k": strings.Repeat("v", 100)}, FinishedAt: timestamppb.Now(), Agent: "a1"}
}

func heldJobs(sp *spool) map[string]bool {
	out := map[string]bool{}
	for _, r := range sp.list() {
		out[fmt.Sprintf("%s/%d", r.Ref.JobId, r.Ref.Attempt)] = true
	}
	return out
}

// The spool's log gives back, after a restart, exactly the results not
// acknowledged: also after a torn last append, and after the log was
// rewritten many times.
func TestSpoolLogSurvivesRestartsAndTornAppends(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []string{"a", "b", "c"} {
		if err := sp.put(spoolReport(j, 1)); err != nil {
			t.Fatal(err)
		}
	}
	sp.remove(keyOf(&gv1.TaskRef{JobId: "b", Task: "t", Attempt: 1}))
	sp.close()
	// A crash in the middle of an append leaves part of a record.
	rec, err := record(recordPut, spoolReport("torn", 1))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, spoolLog), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(rec[:len(rec)-3]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sp, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := heldJobs(sp), map[string]bool{"a/1": true, "c/1": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restart the spool holds %v; want %v", got, want)
	}
	// Many results come and go: the log is rewritten and stays small.
	for i := range 20000 {
		r := spoolReport(fmt.Sprintf("j%d", i), 2)
		if err := sp.put(r); err != nil {
			t.Fatal(err)
		}
		if i%1000 != 999 { // one in a thousand stays unacknowledged
			sp.remove(keyOf(r.Ref))
		}
	}
	info, err := os.Stat(filepath.Join(dir, spoolLog))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() > 2*spoolCompactAt {
		t.Errorf("spool log is %d bytes after 20,000 results, 20 of them held; want it rewritten under %d", info.Size(), 2*spoolCompactAt)
	}
	want := heldJobs(sp)
	if len(want) != 22 {
		t.Fatalf("spool holds %d results; want 22", len(want))
	}
	sp.close()
	sp, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := heldJobs(sp); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restart the spool holds %v; want %v", got, want)
	}
}

// Results an older agent spooled a file each are taken into the log, and
// the files removed.
func TestSpoolTakesOlderFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := marshal(spoolReport("old", 3))
	if err != nil {
		t.Fatal(err)
	}
	path := legacyFile(dir, refKey{"old", "t", 3})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sp, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sp.has(refKey{"old", "t", 3}) {
		t.Fatal("the older agent's result was not taken")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the older agent's file is still there: %v", err)
	}
	sp.close()
	if sp, err = openSpool(dir); err != nil || !sp.has(refKey{"old", "t", 3}) {
		t.Fatalf("after another restart the older agent's result is gone (%v)", err)
	}
}
