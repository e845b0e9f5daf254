package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/wire"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestClientSendsWritesToTheLeader: a follower's answer to a write names
// itself and the leader (its ID and announced API address); a client given
// several coordinators' addresses then sends writes straight to the leader
// instead of through the follower, and its reads stay where they were.
func TestClientSendsWritesToTheLeader(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3, nil)
	leader := c.Leader()
	follower := (leader + 1) % 3
	ctx := context.Background()
	one := func(md metadata.MD, k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	// The leader's address is known once its announcement arrived.
	var md metadata.MD
	waitFor(t, 15*time.Second, "the follower naming the leader and its address", func() bool {
		md = nil
		if _, err := c.Client(follower).SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("route", shellTask("a", "true"))}, grpc.Header(&md)); err != nil {
			t.Logf("submit through the follower: %v", err)
			return false
		}
		return one(md, wire.LeaderAddrHeader) != ""
	})
	if got, want := []string{one(md, wire.NodeHeader), one(md, wire.LeaderHeader), one(md, wire.LeaderAddrHeader)},
		[]string{c.Config(follower).NodeID, c.Config(leader).NodeID, c.Node(leader).GRPCAddr()}; !slices.Equal(got, want) {
		t.Fatalf("a follower's answer names node, leader, leader address %q, want %q", got, want)
	}
	var mu sync.Mutex
	var sent []string // "method target" of each call
	record := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		sent = append(sent, method[len("/gantry.v1.GantryService/"):]+" "+cc.Target())
		mu.Unlock()
		return invoke(ctx, method, req, reply, cc, opts...)
	})
	cl := c.APIOf([]int{follower, leader}, client.WithDialOptions(record))
	var id string
	for range 3 {
		resp, err := cl.Raw().SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("route", shellTask("a", "true"))})
		if err != nil {
			t.Fatal(err)
		}
		id = resp.Job.Id
	}
	if _, err := cl.Raw().GetJob(ctx, &gv1.GetJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	// A read names only the node that served it: any node serves reads.
	md = nil
	if _, err := c.Client(follower).GetJob(ctx, &gv1.GetJobRequest{JobId: id}, grpc.Header(&md)); err != nil {
		t.Fatal(err)
	}
	if one(md, wire.NodeHeader) != c.Config(follower).NodeID || one(md, wire.LeaderHeader) != "" {
		t.Errorf("a read's answer: node %q, leader %q; want %s and none", one(md, wire.NodeHeader), one(md, wire.LeaderHeader), c.Config(follower).NodeID)
	}
	f, l := c.Config(follower).GRPCAddr, c.Config(leader).GRPCAddr
	want := []string{"SubmitJob " + f, "SubmitJob " + l, "SubmitJob " + l, "GetJob " + f}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sent, want) {
		t.Errorf("calls went to %q, want %q", sent, want)
	}
}
