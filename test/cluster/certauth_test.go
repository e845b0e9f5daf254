package cluster

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// asCert is a client of node i of a TLS cluster that authenticates with a
// client certificate of the cluster's CA carrying role (none when empty),
// and no token.
func asCert(t *testing.T, c *testcluster.Cluster, i int, kind pki.Kind, name, role string) gv1.GantryServiceClient {
	t.Helper()
	l := c.TLS()
	ca, err := pki.LoadCA(l.CAFile(), filepath.Join(l.Dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.Request{Kind: kind, Name: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c-key.pem")
	if err := kp.Write(cert, key, false); err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ClientTLS(l.CAFile(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New([]string{c.Config(i).GRPCAddr}, client.WithRetryTimeout(0), client.WithTLS(tc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl.Raw()
}

// TestClientCertificateAuth: a client certificate with a role stands for a
// token of that role, on the node that received the call and on the leader
// a follower forwards it to; other certificates are no identity.
func TestClientCertificateAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, TLS: true})
	lead := c.Leader()
	follower := (lead + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := &gv1.SubmitJobRequest{Spec: shellSpec("by-cert", shellTask("t", "true"))}

	viewer := asCert(t, c, lead, pki.Client, "dash", "viewer")
	if _, err := viewer.ListJobs(ctx, &gv1.ListJobsRequest{}); err != nil {
		t.Fatalf("a viewer certificate lists jobs: %v", err)
	}
	_, err := viewer.SubmitJob(ctx, spec)
	wantCode(t, "a viewer certificate submits", err, codes.PermissionDenied, "developer")

	// Through a follower: the leader authorizes the forwarded call as the
	// certificate's holder.
	dev := asCert(t, c, follower, pki.Client, "ci-bot", "developer")
	resp, err := dev.SubmitJob(ctx, spec)
	if err != nil {
		t.Fatalf("a developer certificate submits through a follower: %v", err)
	}
	if owner := resp.GetJob().GetOwner(); owner != "cert-ci-bot" {
		t.Errorf("job owner %q, want cert-ci-bot", owner)
	}
	audit, err := c.Client(lead).ListAudit(ctx, &gv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range audit.GetEvents() {
		found = found || (e.GetMethod() == "SubmitJob" && e.GetActor().GetName() == "certificate ci-bot" && e.GetResult() == "ok")
	}
	if !found {
		t.Error("the audit log does not name the certificate's holder")
	}

	// No role, or an agent's certificate: no identity.
	_, err = asCert(t, c, lead, pki.Client, "norole", "").ListJobs(ctx, &gv1.ListJobsRequest{})
	wantCode(t, "a client certificate without a role", err, codes.Unauthenticated, "token")
	_, err = asCert(t, c, lead, pki.Agent, "a9", "").ListJobs(ctx, &gv1.ListJobsRequest{})
	wantCode(t, "an agent certificate", err, codes.Unauthenticated, "token")
	if !strings.Contains(err.Error(), "token") {
		t.Errorf("refusal does not say what is needed: %v", err)
	}
}
