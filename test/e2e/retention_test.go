package e2e

import (
	"strings"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestJobRetention checks that ended jobs are forgotten after the retention
// while a running one is kept, and that a restart replays the prune: the
// pruned job stays gone.
func TestJobRetention(t *testing.T) {
	skipShort(t)
	d := newDevNode(t)
	d.extra = []string{"--job-retention", "2s"}
	d.start(t)
	done := submittedID(t, mustGantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, helloPipeline), "--wait"))
	slow := strings.TrimSpace(mustGantry(t, d.grpcAddr, "submit", "-f", writePipeline(t, "name: slow\ntasks:\n  - {name: wait, exec: {shell: \"sleep 30\"}}\n")).stdout)
	waitFor(t, 30*time.Second, func() (bool, string) {
		_, err := tryGetJob(t, d.grpcAddr, done)
		return err != nil && strings.Contains(err.Error(), "no job"), "job " + done + " still there"
	})
	if j := getJob(t, d.grpcAddr, slow); j.GetState() != gv1.JobState_JOB_STATE_RUNNING {
		t.Errorf("running job %s is %s", slow, j.GetState())
	}
	mustGantry(t, d.grpcAddr, "cancel", slow)
	if !d.proc.stop(t, 20*time.Second) {
		t.Error("dev did not stop on SIGTERM")
	}
	d.start(t)
	if _, err := tryGetJob(t, d.grpcAddr, done); err == nil {
		t.Errorf("pruned job %s is back after a restart", done)
	}
}
