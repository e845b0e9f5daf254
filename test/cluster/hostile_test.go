package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestHostileAgentMessages floods a 3-node cluster with what a rogue NATS
// client can send today: heartbeats under thousands of made-up agent names
// and with oversized fields, garbage bytes on every agent subject, forged
// reports for a running task. Every node's fleet view stays bounded, the
// running job is untouched and finishes, and every acknowledged job is on
// every node.
func TestHostileAgentMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := newCluster(t, 3, nil)
	c.StartAgent("good", 2, nil)
	lead := c.Leader()
	c.WaitAgents(lead, "good")
	cl := c.Client(lead)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resp, err := cl.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("victim", shellTask("slow", "sleep 3; echo done"))})
	if err != nil {
		t.Fatal(err)
	}
	victim := resp.GetJob().GetId()
	waitFor(t, 15*time.Second, "the victim task running", func() bool {
		j, ok := c.Job(lead, victim)
		return ok && j.GetTasks()[0].GetState() == gv1.TaskState_TASK_STATE_RUNNING
	})

	nc, err := nats.Connect(c.NATSURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ns := subject.New("test")
	// Heartbeats for 3,000 made-up agents, a third of them malformed.
	for i := range 3000 {
		info := &gv1.AgentInfo{Name: fmt.Sprintf("rogue-%d", i), Slots: 1000, Session: "x"}
		switch i % 3 {
		case 1:
			info.Labels = map[string]string{"k": strings.Repeat("v", limit.LabelValue+1)}
		case 2:
			info.Name = "../rogue" // not a name; the subject says otherwise
		}
		data, _ := proto.Marshal(&gv1.Heartbeat{Agent: info, SentAt: timestamppb.Now()})
		if err := nc.Publish(ns.Heartbeat(fmt.Sprintf("rogue-%d", i)), data); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage on every subject an agent publishes to.
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for _, s := range []string{ns.Heartbeat("good"), ns.Drift("good"), ns.NodeStatus("n1")} {
		if err := nc.Publish(s, junk); err != nil {
			t.Fatal(err)
		}
	}
	// Forged reports for the running task: from another agent, with too
	// many outputs, and with a stale attempt; refusals of it (which would
	// requeue it) from another agent and for a stale attempt.
	forged := []*gv1.Report{
		{Ref: &gv1.TaskRef{JobId: victim, Task: "slow", Attempt: 1}, Success: true, Agent: "rogue-0"},
		{Ref: &gv1.TaskRef{JobId: victim, Task: "slow", Attempt: 1}, Success: true, Agent: "good", Outputs: bigOutputs()},
		{Ref: &gv1.TaskRef{JobId: victim, Task: "slow", Attempt: 7}, Success: true, Agent: "good"},
		{Ref: &gv1.TaskRef{JobId: victim, Task: "slow", Attempt: 1}, Refused: true, Agent: "rogue-0"},
		{Ref: &gv1.TaskRef{JobId: victim, Task: "slow", Attempt: 7}, Refused: true, Agent: "good"},
	}
	subjects := []string{ns.Report("rogue-0"), ns.Report("good"), ns.Report("good"), ns.Report("rogue-0"), ns.Report("good")}
	for i, r := range forged {
		r.FinishedAt = timestamppb.Now()
		data, _ := proto.Marshal(r)
		// The flood may cost the cluster its leader for a moment (reports
		// are answered by the leader): ask until one answers.
		var msg *nats.Msg
		waitFor(t, 20*time.Second, "a leader answering forged reports", func() bool {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			defer rcancel()
			msg, err = nc.RequestWithContext(rctx, subjects[i], data)
			return err == nil
		})
		var reply gv1.ReportReply
		if err := proto.Unmarshal(msg.Data, &reply); err != nil || reply.Accepted {
			t.Errorf("forged report %d: accepted=%v reason=%q, want refused", i, reply.Accepted, reply.Reason)
		}
	}
	nc.Flush()

	// The victim job finishes as its real agent reports it.
	waitFor(t, 30*time.Second, "the victim job to succeed", func() bool {
		j, ok := c.Job(lead, victim)
		return ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED && len(j.GetTasks()[0].GetOutputs()) == 0
	})
	for i := range 3 {
		a, err := c.Client(i).ListAgents(ctx, &gv1.ListAgentsRequest{})
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		for _, s := range a.GetAgents() {
			if strings.Contains(s.GetInfo().GetName(), "/") || len(s.GetInfo().GetLabels()["k"]) > limit.LabelValue {
				t.Errorf("node %d keeps a malformed agent: %q", i+1, s.GetInfo().GetName())
			}
		}
		if n := len(a.GetAgents()); n > limit.Agents {
			t.Errorf("node %d: %d agents in its view, more than %d", i+1, n, limit.Agents)
		}
		if j, ok := c.Job(i, victim); ok && j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
			waitFor(t, 10*time.Second, fmt.Sprintf("node %d to apply the victim's end", i+1), func() bool {
				j, _ := c.Job(i, victim)
				return j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED
			})
		}
	}
	// Another job still runs end to end.
	resp, err = cl.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("after", shellTask("t", "true"))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a job after the flood", func() bool {
		j, ok := c.Job(lead, resp.GetJob().GetId())
		return ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED
	})
}

func bigOutputs() map[string]string {
	out := map[string]string{}
	for i := range limit.ReportOutputs + 1 {
		out[fmt.Sprintf("k%d", i)] = "v"
	}
	return out
}
