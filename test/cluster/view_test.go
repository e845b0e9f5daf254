package cluster

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestJobViewBasicOverTheAPI asks a follower (which forwards writes to the
// leader) for the basic view of a job: the submit's answer, a read and a
// listing carry the job without its tasks' specs and otherwise equal the
// whole job; asking for nothing is the whole job.
func TestJobViewBasicOverTheAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := newCluster(t, 3, nil)
	c.StartAgent("a1", 2, nil)
	cl := c.Client((c.Leader() + 1) % 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := shellSpec("view", shellTask("a", "true"), shellTask("b", "true"))
	sub, err := cl.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
	if err != nil {
		t.Fatal(err)
	}
	j := sub.GetJob()
	if j.GetId() == "" || j.GetSpec().GetName() != "view" || len(j.GetTasks()) != 2 || j.GetTasks()[1].GetName() != "b" {
		t.Fatalf("basic answer to a submit lacks the job's id, name or tasks: %v", j)
	}
	if len(j.GetSpec().GetTasks()) != 0 || j.GetTasks()[0].GetSpec() != nil {
		t.Fatalf("basic answer to a submit carries specs: %v", j)
	}
	waitFor(t, 30*time.Second, "the job succeeded", func() bool {
		r, err := cl.GetJob(ctx, &gv1.GetJobRequest{JobId: j.GetId()})
		return err == nil && r.GetJob().GetState() == gv1.JobState_JOB_STATE_SUCCEEDED
	})
	full, err := cl.GetJob(ctx, &gv1.GetJobRequest{JobId: j.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if full.GetJob().GetTasks()[0].GetSpec().GetExec() == nil {
		t.Fatalf("a read without a view lacks the tasks' specs: %v", full.GetJob())
	}
	want := proto.CloneOf(full.GetJob())
	want.Spec.Tasks = nil
	for _, t := range want.Tasks {
		t.Spec = nil
	}
	basic, err := cl.GetJob(ctx, &gv1.GetJobRequest{JobId: j.GetId(), View: gv1.JobView_JOB_VIEW_BASIC})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(basic.GetJob(), want) {
		t.Fatalf("basic read:\n got %v\nwant %v", basic.GetJob(), want)
	}
	list, err := cl.ListJobs(ctx, &gv1.ListJobsRequest{Limit: 1, View: gv1.JobView_JOB_VIEW_BASIC})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetJobs()) != 1 || !proto.Equal(list.GetJobs()[0], want) {
		t.Fatalf("basic listing: %v, want [%v]", list.GetJobs(), want)
	}
}
