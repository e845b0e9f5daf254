package cluster

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// agentStates is every agent's state as node i sees it.
func agentStates(t *testing.T, c *testcluster.Cluster, i int) map[string]gv1.AgentState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Client(i).ListAgents(ctx, &gv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]gv1.AgentState{}
	for _, a := range resp.GetAgents() {
		out[a.GetInfo().GetName()] = a.GetState()
	}
	return out
}

// TestAgentEnrollment: agents started with a join token receive their own
// certificates through any coordinator; they may claim only the labels the
// token allows; revoking the token disconnects them and refuses them, and
// the token, from then on.
func TestAgentEnrollment(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, TLS: true})
	lead := c.Leader()
	follower := (lead + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tok, err := c.Client(lead).CreateJoinToken(ctx, &gv1.CreateJoinTokenRequest{Name: "ci-pool", Labels: map[string]string{"pool": "ci"}})
	if err != nil {
		t.Fatal(err)
	}

	// A wrong token gets no certificate.
	for _, bad := range []string{"", "gjoin_nope_aaaaaaaaaaaaaaaaaaaaaaaa", tok.GetSecret() + "x", "gantry_" + tok.GetSecret()[len("gjoin_"):]} {
		_, err := c.StartEnrolledAgent(follower, "intruder", bad, nil)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("enroll with %q: %v, want Unauthenticated", bad, err)
		}
	}

	// Enrolled through a follower (the call is forwarded to the leader,
	// which signs): the agent runs a job that needs its label.
	if _, err := c.StartEnrolledAgent(follower, "e1", tok.GetSecret(), map[string]string{"pool": "ci"}); err != nil {
		t.Fatal(err)
	}
	c.WaitAgents(lead, "e1")
	spec := shellSpec("on-ci", shellTask("hello", "echo hello"))
	spec.Tasks[0].Labels = map[string]string{"pool": "ci"}
	job, err := c.Client(lead).SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the job to succeed on e1", func() bool {
		j, ok := c.Job(lead, job.GetJob().GetId())
		return ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED && j.GetTasks()[0].GetAgent() == "e1"
	})

	// An agent claiming a label its token does not allow is never taken
	// into the fleet (e1, enrolled the same way, is the control).
	if _, err := c.StartEnrolledAgent(lead, "e2", tok.GetSecret(), map[string]string{"pool": "gpu"}); err != nil {
		t.Fatal(err)
	}
	seen := 0
	waitFor(t, 15*time.Second, "e1's heartbeats to be seen while e2's are refused", func() bool {
		st := agentStates(t, c, lead)
		if _, ok := st["e2"]; ok {
			t.Fatalf("agent e2 claiming pool=gpu is in the fleet: %v", st)
		}
		if st["e1"] == gv1.AgentState_AGENT_STATE_ACTIVE {
			seen++
		}
		return seen >= 10
	})

	list, err := c.Client(lead).ListJoinTokens(ctx, &gv1.ListJoinTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetTokens()) != 1 || !slices.Equal(list.GetTokens()[0].GetAgents(), []string{"e1", "e2"}) {
		t.Fatalf("join tokens: %v", list.GetTokens())
	}

	// Revoked: e1 is disconnected and its certificate refused by NATS; the
	// token enrolls no one any more.
	rev, err := c.Client(follower).RevokeJoinToken(ctx, &gv1.RevokeJoinTokenRequest{Id: tok.GetToken().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rev.GetAgents(), []string{"e1", "e2"}) {
		t.Fatalf("revoked agents %v, want e1 and e2", rev.GetAgents())
	}
	waitFor(t, 30*time.Second, "e1 to leave the fleet", func() bool {
		return agentStates(t, c, lead)["e1"] != gv1.AgentState_AGENT_STATE_ACTIVE
	})
	e1Dir := filepath.Join(c.AgentWorkDir("e1"), "tls")
	nc, err := nats.Connect(c.NATSURLs(), nats.RootCAs(c.TLS().CAFile()),
		nats.ClientCert(filepath.Join(e1Dir, "agent.pem"), filepath.Join(e1Dir, "agent-key.pem")), nats.Timeout(5*time.Second))
	if err == nil {
		nc.Close()
		t.Fatal("NATS accepted the revoked agent's certificate")
	}
	if _, err := c.StartEnrolledAgent(lead, "e3", tok.GetSecret(), nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("enroll with a revoked token: %v, want Unauthenticated", err)
	}
}
