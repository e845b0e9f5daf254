package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestRestartedMemberReadsNeverGoBack restarts a follower of a 3-node
// cluster and reads the job list from it as fast as possible from the
// moment it starts: every answer lists every job acknowledged before, or is
// Unavailable while the node catches up.
func TestRestartedMemberReadsNeverGoBack(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := newCluster(t, 3, nil)
	lead := c.Leader()
	cl := c.Client(lead)
	const jobs = 40
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range jobs {
		if _, err := cl.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec(fmt.Sprintf("honest-%d", i), shellTask("t", "true"))}); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	f := (lead + 1) % 3
	fc := c.Client(f)
	waitFor(t, 10*time.Second, "the follower has every job", func() bool {
		resp, err := fc.ListJobs(ctx, &gv1.ListJobsRequest{Limit: 1000})
		return err == nil && len(resp.GetJobs()) == jobs
	})
	c.Stop(f)
	c.Restart(f)
	var refused, served int
	deadline := time.Now().Add(30 * time.Second)
	for served < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("restarted member: only %d full answers in 30s (%d refused)", served, refused)
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := fc.ListJobs(rctx, &gv1.ListJobsRequest{Limit: 1000})
		rcancel()
		switch {
		case err != nil:
			if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("ListJobs on the restarted member: %v", err)
			}
			refused++
		case len(resp.GetJobs()) < jobs:
			t.Fatalf("restarted member showed %d jobs; %d were acknowledged before", len(resp.GetJobs()), jobs)
		default:
			served++
		}
	}
	t.Logf("restarted member: %d reads refused while catching up, then %d full answers", refused, served)
}
