package cluster

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// asToken is a client of node i that presents token (none when empty) and
// does not retry.
func asToken(t *testing.T, c *testcluster.Cluster, i int, token string) gv1.GantryServiceClient {
	t.Helper()
	opts := []client.Option{client.WithRetryTimeout(0)}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	cl, err := client.New([]string{c.Config(i).GRPCAddr}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl.Raw()
}

func wantCode(t *testing.T, what string, err error, want codes.Code, mention string) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("%s: %v, want %s", what, err, want)
	}
	if mention != "" && !strings.Contains(status.Convert(err).Message(), mention) {
		t.Fatalf("%s: message %q does not say %q", what, status.Convert(err).Message(), mention)
	}
}

// TestTokensAndRolesOnEveryNode runs the API's authentication and
// authorization against a real 3-node cluster, calling followers as much as
// the leader: a follower forwards a write with the caller's token and the
// leader authorizes it again.
func TestTokensAndRolesOnEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	keys := t.TempDir() + "/secret-keys"
	if _, err := secret.Create(keys, false); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, func(cfg *coordinator.Config) { cfg.SecretKeys = keys })
	lead := c.Leader()
	f := (lead + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := c.Client(f)

	// Without a token, with a wrong one, with a malformed one: refused on
	// every node, reads and writes alike.
	for i := 0; i < 3; i++ {
		_, err := asToken(t, c, i, "").ListJobs(ctx, &gv1.ListJobsRequest{})
		wantCode(t, "ListJobs without a token", err, codes.Unauthenticated, "needs a token with role viewer")
		_, err = asToken(t, c, i, "").SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("p", shellTask("a", "true"))})
		wantCode(t, "SubmitJob without a token", err, codes.Unauthenticated, "developer")
		_, err = asToken(t, c, i, "gantry_nosuchid_"+strings.Repeat("x", 40)).ListJobs(ctx, &gv1.ListJobsRequest{})
		wantCode(t, "ListJobs with an unknown token", err, codes.Unauthenticated, "unknown or revoked")
		_, err = asToken(t, c, i, "hunter2").ListJobs(ctx, &gv1.ListJobsRequest{})
		wantCode(t, "ListJobs with a malformed token", err, codes.Unauthenticated, "not a Gantry token")
	}
	// The cluster is bootstrapped: bootstrap is refused.
	_, err := asToken(t, c, f, "").BootstrapACL(ctx, &gv1.BootstrapACLRequest{})
	wantCode(t, "second bootstrap", err, codes.FailedPrecondition, "already bootstrapped")

	// Tokens are made through a follower (forwarded with the admin's token).
	mk := func(name string, role gv1.Role, ttl int64) *gv1.CreateTokenResponse {
		resp, err := admin.CreateToken(ctx, &gv1.CreateTokenRequest{Name: name, Role: role, TtlSeconds: ttl})
		if err != nil {
			t.Fatalf("create %s token: %v", name, err)
		}
		return resp
	}
	viewer := mk("vera", gv1.Role_ROLE_VIEWER, 0)
	dev := mk("dave", gv1.Role_ROLE_DEVELOPER, 0)
	dev2 := mk("dora", gv1.Role_ROLE_DEVELOPER, 0)
	op := mk("olga", gv1.Role_ROLE_OPERATOR, 0)
	list, err := admin.ListTokens(ctx, &gv1.ListTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := protojson.Marshal(list)
	if len(list.Tokens) != 5 || bytes.Contains(raw, []byte(strings.TrimPrefix(dev.Secret, "gantry_"+dev.Token.Id+"_"))) {
		t.Fatalf("token list: %d tokens (want 5), or it shows a secret: %s", len(list.Tokens), raw)
	}

	for _, i := range []int{lead, f} {
		// A viewer reads but cannot submit.
		v := asToken(t, c, i, viewer.Secret)
		if _, err := v.ListJobs(ctx, &gv1.ListJobsRequest{}); err != nil {
			t.Fatalf("viewer ListJobs on node %d: %v", i, err)
		}
		_, err := v.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("p", shellTask("a", "true"))})
		wantCode(t, "viewer SubmitJob", err, codes.PermissionDenied, "needs role developer or above; token "+viewer.Token.Id+" (vera) has role viewer")

		// A developer submits and cancels its own job, not another's, and
		// cannot drain, restore, change membership or read the audit log.
		d := asToken(t, c, i, dev.Secret)
		sub, err := d.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("mine", shellTask("a", "sleep 600"))})
		if err != nil {
			t.Fatalf("developer SubmitJob on node %d: %v", i, err)
		}
		if sub.Job.Owner != dev.Token.Id {
			t.Fatalf("job owner %q, want the developer's token %s", sub.Job.Owner, dev.Token.Id)
		}
		_, err = asToken(t, c, i, dev2.Secret).CancelJob(ctx, &gv1.CancelJobRequest{JobId: sub.Job.Id})
		wantCode(t, "another developer cancels the job", err, codes.PermissionDenied, "cancels only its own jobs")
		if _, err := d.CancelJob(ctx, &gv1.CancelJobRequest{JobId: sub.Job.Id}); err != nil {
			t.Fatalf("developer cancels its own job on node %d: %v", i, err)
		}
		_, err = d.DrainAgent(ctx, &gv1.DrainAgentRequest{Name: "a1"})
		wantCode(t, "developer DrainAgent", err, codes.PermissionDenied, "operator")
		_, err = d.AddNode(ctx, &gv1.AddNodeRequest{Id: "evil", RaftAddr: "127.0.0.1:1"})
		wantCode(t, "developer AddNode", err, codes.PermissionDenied, "admin")
		_, err = asToken(t, c, i, op.Secret).AddNode(ctx, &gv1.AddNodeRequest{Id: "evil", RaftAddr: "127.0.0.1:1"})
		wantCode(t, "operator AddNode", err, codes.PermissionDenied, "admin")
		rs, err := d.RestoreSnapshot(ctx)
		if err == nil {
			_, err = rs.CloseAndRecv()
		}
		wantCode(t, "developer RestoreSnapshot", err, codes.PermissionDenied, "admin")
		_, err = d.ListAudit(ctx, &gv1.ListAuditRequest{})
		wantCode(t, "developer ListAudit", err, codes.PermissionDenied, "admin")

		// An operator cancels anyone's job.
		other, err := d.SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("theirs", shellTask("a", "sleep 600"))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := asToken(t, c, i, op.Secret).CancelJob(ctx, &gv1.CancelJobRequest{JobId: other.Job.Id}); err != nil {
			t.Fatalf("operator cancels a developer's job on node %d: %v", i, err)
		}
	}
	// The membership is what it was: the refused AddNode changed nothing.
	st, err := admin.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.GetNodes() {
		if n.GetId() == "evil" {
			t.Fatalf("a refused AddNode added a node: %v", st)
		}
	}

	// A secret set through a follower is audited by name, never by value.
	const value = "s3cr3t-value-never-audited"
	if _, err := asToken(t, c, f, op.Secret).SetSecret(ctx, &gv1.SetSecretRequest{Name: "db", Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}

	// Revoked through a follower: every node refuses the token once it
	// applied the revocation.
	if _, err := admin.RevokeToken(ctx, &gv1.RevokeTokenRequest{Id: dev.Token.Id}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d := asToken(t, c, i, dev.Secret)
		waitFor(t, 10*time.Second, "the revoked token refused", func() bool {
			_, err := d.ListJobs(ctx, &gv1.ListJobsRequest{})
			return status.Code(err) == codes.Unauthenticated
		})
	}
	// An expiring token stops working by itself.
	short := mk("brief", gv1.Role_ROLE_VIEWER, 1)
	b := asToken(t, c, lead, short.Secret)
	waitFor(t, 15*time.Second, "the expired token refused", func() bool {
		_, err := b.ListJobs(ctx, &gv1.ListJobsRequest{})
		return status.Code(err) == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "expired")
	})

	// The audit log: who, from where, what, the result, on every node.
	var events []*gv1.AuditEvent
	waitFor(t, 15*time.Second, "the refused submit in the audit log", func() bool {
		resp, err := asToken(t, c, (lead+2)%3, "").ListAudit(ctx, &gv1.ListAuditRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("ListAudit without a token: %v", err)
		}
		resp, err = c.Client((lead+2)%3).ListAudit(ctx, &gv1.ListAuditRequest{})
		if err != nil {
			return false
		}
		events = resp.Events
		for _, e := range events {
			if e.Method == "SubmitJob" && e.GetActor().GetTokenId() == viewer.Token.Id && strings.HasPrefix(e.Result, "PermissionDenied") {
				return true
			}
		}
		return false
	})
	auditRaw, _ := protojson.Marshal(&gv1.ListAuditResponse{Events: events})
	if bytes.Contains(auditRaw, []byte(value)) {
		t.Fatal("the audit log holds a secret value")
	}
	seen := map[string]bool{}
	for _, e := range events {
		if e.Result == "ok" {
			seen[e.Method+" "+e.GetActor().GetName()] = true
		}
		if e.GetActor().GetPeer() == "" && e.GetActor().GetTokenId() != "" {
			t.Errorf("event without the caller's address: %v", e)
		}
	}
	for _, want := range []string{"CreateToken bootstrap", "SubmitJob dave", "CancelJob dave", "CancelJob olga", "SetSecret olga", "RevokeToken bootstrap"} {
		if !seen[want] {
			t.Errorf("audit log lacks %q; has %v", want, seen)
		}
	}
}
