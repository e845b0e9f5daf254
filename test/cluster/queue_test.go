package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// ListQueue on a follower is forwarded to the leader, whose dispatcher alone
// knows why each task waits.
func TestListQueueOnFollowerHasLeaderReasons(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3, nil)
	c.StartAgent("linux-1", 1, map[string]string{"os": "linux"})
	leader := c.Leader()
	follower := (leader + 1) % 3
	c.WaitAgents(follower, "linux-1")
	cl := c.Client(follower)

	mac := &gv1.TaskSpec{Name: "sign", Labels: map[string]string{"os": "mac"}, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
	resp, err := cl.SubmitJob(context.Background(), &gv1.SubmitJobRequest{Spec: shellSpec("queue", mac, shellTask("ship", "true", "sign"))})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Job.Id
	var q *gv1.ListQueueResponse
	waitFor(t, 15*time.Second, "the reason sign waits, through the follower", func() bool {
		q, err = cl.ListQueue(context.Background(), &gv1.ListQueueRequest{})
		if err != nil {
			t.Logf("ListQueue on follower: %v", err)
			return false
		}
		for _, task := range q.Tasks {
			if task.JobId == id && task.Task == "sign" {
				return task.Reason == "no agent with labels os=mac"
			}
		}
		return false
	})
	var ship *gv1.QueuedTask
	for _, task := range q.Tasks {
		if task.JobId == id && task.Task == "ship" {
			ship = task
		}
	}
	if ship == nil || ship.State != gv1.TaskState_TASK_STATE_BLOCKED || !strings.Contains(ship.Reason, "sign") {
		t.Errorf("ship in the queue = %v, want blocked on sign", ship)
	}
	var sel []string
	for _, qs := range q.Queues {
		sel = append(sel, qs.Selector)
		if qs.Selector == "os=mac" && qs.Pending != 1 {
			t.Errorf("queue os=mac: %d pending, want 1", qs.Pending)
		}
	}
	if !strings.Contains(strings.Join(sel, " "), "os=mac") {
		t.Errorf("queues %v lack os=mac", sel)
	}
}
