package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/internal/pki"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// bearer sends a token with every call of a plain-text connection (the
// processes of these tests listen on loopback).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// rawClient is a gRPC client without Gantry's client-side retries: it sees
// every answer a script would.
func rawClient(t *testing.T, addr string) gv1.GantryServiceClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if ca, ok := tlsCAs.Load(addr); ok {
		cfg, err := pki.ClientTLS(ca.(string), "", "")
		if err != nil {
			t.Fatal(err)
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(bearer(adminToken)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return gv1.NewGantryServiceClient(conn)
}

// TestDevRestartReadsNeverGoBack restarts gantry dev and reads the job list
// as fast as it can from the moment the process starts: every answer must
// list every job acknowledged before the restart, or be Unavailable saying
// the node catches up. Before reads were gated, the list came back empty for
// about a second.
func TestDevRestartReadsNeverGoBack(t *testing.T) {
	skipShort(t)
	d := newDevNode(t)
	d.start(t)
	c := rawClient(t, d.grpcAddr)
	const jobs = 60
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range jobs {
		_, err := c.SubmitJob(ctx, &gv1.SubmitJobRequest{
			SpecYaml:       fmt.Sprintf("name: honest-%d\ntasks:\n  - name: t\n    exec: {command: [\"true\"]}\n", i),
			IdempotencyKey: fmt.Sprintf("honest-%d", i),
		})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if !d.proc.stop(t, 30*time.Second) {
		t.Fatal("dev did not stop within 30s")
	}

	d.launch(t)
	var refused, served, readyBefore int
	deadline := time.Now().Add(60 * time.Second)
	for served < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("after restart: only %d full answers in 60s (%d refused)", served, refused)
		}
		if d.proc.exited() {
			t.Fatalf("dev exited after restart: %v", d.proc.err)
		}
		code, _, _ := httpGet("http://" + d.httpAddr + "/readyz")
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.ListJobs(rctx, &gv1.ListJobsRequest{Limit: 1000})
		rcancel()
		switch {
		case err != nil:
			if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("ListJobs after restart: %v, want a list or Unavailable", err)
			}
			refused++
			// Only the server's own refusal counts: a client whose
			// connection is still backing off fails without asking.
			if code == http.StatusOK && strings.Contains(err.Error(), "catching up") {
				readyBefore++
			}
		case len(resp.GetJobs()) < jobs:
			t.Fatalf("ListJobs after restart showed %d jobs; %d were acknowledged before it (answer %d)", len(resp.GetJobs()), jobs, served+1)
		default:
			served++
		}
	}
	if readyBefore > 0 {
		t.Errorf("/readyz said ready %d times while the API refused reads", readyBefore)
	}
	t.Logf("after restart: %d reads refused while catching up, then %d full answers", refused, served)
}
