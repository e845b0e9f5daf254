package cluster

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestSnapshotRestoreIntoNewCluster saves the state of one 3-node cluster
// and restores it into another: every node of the new cluster ends with the
// same jobs and applications, later writes build on the restored state,
// and a follower refuses to restore.
func TestSnapshotRestoreIntoNewCluster(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	old := newCluster(t, 3, nil)
	old.StartAgent("a1", 2, nil)
	old.WaitAgents(old.Leader(), "a1")
	oc := old.Client(old.Leader())
	var jobIDs []string
	for i := range 3 {
		j, err := submit(ctx, oc, shellSpec("j", shellTask("a", "echo hi")), "k"+string(rune('0'+i)))
		if err != nil {
			t.Fatal(err)
		}
		jobIDs = append(jobIDs, j.Id)
	}
	for _, name := range []string{"shop", "billing"} {
		if _, err := oc.CreateApp(ctx, &gv1.CreateAppRequest{Spec: &gv1.AppSpec{
			Name: name, Repo: "https://git.example/" + name + ".git", Cluster: "prod", Namespace: name,
		}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "jobs to succeed", func() bool {
		for _, id := range jobIDs {
			if j, ok := old.Job(old.Leader(), id); !ok || j.State != gv1.JobState_JOB_STATE_SUCCEEDED {
				return false
			}
		}
		return true
	})
	stream, err := oc.SaveSnapshot(ctx, &gv1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		saved.Write(ch.GetData())
	}

	fresh := newCluster(t, 3, nil)
	leader := fresh.Leader()
	restore := func(i int, data []byte) (*gv1.RestoreSnapshotResponse, error) {
		up, err := fresh.Client(i).RestoreSnapshot(ctx)
		if err != nil {
			return nil, err
		}
		if err := up.Send(&gv1.RestoreSnapshotRequest{Data: data}); err != nil {
			return nil, err
		}
		return up.CloseAndRecv()
	}
	if _, err := restore((leader+1)%3, saved.Bytes()); err == nil {
		t.Error("a follower accepted a restore")
	}
	if _, err := restore(leader, []byte("not a snapshot")); err == nil {
		t.Error("garbage accepted as a snapshot")
	}
	resp, err := restore(leader, saved.Bytes())
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if resp.Jobs != 3 || resp.Apps != 2 {
		t.Errorf("restored %d jobs and %d apps, want 3 and 2", resp.Jobs, resp.Apps)
	}
	for i := range 3 {
		waitFor(t, 20*time.Second, "node to hold the restored state", func() bool {
			apps, err := fresh.Client(i).ListApps(ctx, &gv1.ListAppsRequest{})
			if err != nil || len(apps.Apps) != 2 {
				return false
			}
			for _, id := range jobIDs {
				j, ok := fresh.Job(i, id)
				want, _ := old.Job(old.Leader(), id)
				if !ok || !proto.Equal(j.GetSpec(), want.GetSpec()) || j.State != gv1.JobState_JOB_STATE_SUCCEEDED {
					return false
				}
			}
			return true
		})
	}
	// The restored cluster carries on: an old idempotency key still finds
	// its job, a new application is added next to the restored ones.
	fc := fresh.Client(fresh.Leader())
	again, err := submit(ctx, fc, shellSpec("j", shellTask("a", "echo hi")), "k0")
	if err != nil || again.Id != jobIDs[0] {
		t.Errorf("resubmit of key k0 after restore = %v, %v; want job %s", again.GetId(), err, jobIDs[0])
	}
	if _, err := fc.CreateApp(ctx, &gv1.CreateAppRequest{Spec: &gv1.AppSpec{
		Name: "search", Repo: "https://git.example/search.git", Cluster: "prod", Namespace: "search",
	}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "three applications everywhere", func() bool {
		for i := range 3 {
			apps, err := fresh.Client(i).ListApps(ctx, &gv1.ListAppsRequest{})
			if err != nil || len(apps.Apps) != 3 {
				return false
			}
		}
		return true
	})
}
