package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gantryci/gantry/internal/bench/sim"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestAgentBeforeQuietAssignmentsIsAsked: an agent that announces no
// protocol revision (a build from before quiet assignments) gets every
// assignment as a request, and its answers and reports run jobs as before.
func TestAgentBeforeQuietAssignmentsIsAsked(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3, nil)
	labels := map[string]string{"pool": "old"}
	old, err := sim.Start(sim.Config{Cluster: c.Name(), NATS: c.NATSURLs(), Prefix: "old", Count: 1, Slots: 2,
		Labels: labels, Heartbeat: 200 * time.Millisecond, Requests: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	lead := c.Leader()
	c.WaitAgents(lead, "old-0")
	var tasks []*gv1.TaskSpec
	for i := range 6 {
		tk := shellTask(fmt.Sprintf("t%d", i), "true")
		tk.Labels = labels
		tasks = append(tasks, tk)
	}
	resp, err := c.Client(lead).SubmitJob(context.Background(), &gv1.SubmitJobRequest{Spec: shellSpec("old", tasks...)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the job on the old agent to succeed, or an assignment published to it", func() bool {
		j, ok := c.Job(lead, resp.GetJob().GetId())
		return old.Unasked.Load() > 0 || ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED
	})
	if n := old.Unasked.Load(); n > 0 {
		t.Fatalf("%d assignments were published to an agent that answers requests", n)
	}
	// The job ends when the last report commits; its answer reaches the
	// agent a moment later.
	waitFor(t, 10*time.Second, "the old agent's six reports answered", func() bool { return old.Finished.Load() == 6 })
}
