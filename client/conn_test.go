package client_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/wire"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fakeAPI is a coordinator that refuses as told and records what it was
// sent, to check the client's side of the protocol without a cluster.
type fakeAPI struct {
	gv1.UnimplementedGantryServiceServer
	mu      sync.Mutex
	index   uint64
	refuse  int           // refuse this many calls as Unavailable
	calls   []metadata.MD // metadata of every call, in order
	submits []string      // idempotency keys
	// logs is what TaskLogs sends per call: chunk seqs, then an error code
	// (OK ends the stream).
	logs []logCall
	// node names this coordinator in every answer; leader (ID, then API
	// address) is the leader its submit answers name.
	node   string
	leader []string
}

type logCall struct {
	seqs []uint64
	end  codes.Code
}

func (f *fakeAPI) arrive(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	f.calls = append(f.calls, md)
	if f.refuse > 0 {
		f.refuse--
		return status.Error(codes.Unavailable, "no leader elected")
	}
	f.index += 10
	out := metadata.Pairs(wire.IndexHeader, strconv.FormatUint(f.index, 10))
	if f.node != "" {
		out.Set(wire.NodeHeader, f.node)
	}
	return grpc.SetHeader(ctx, out)
}

func (f *fakeAPI) GetJob(ctx context.Context, req *gv1.GetJobRequest) (*gv1.GetJobResponse, error) {
	if err := f.arrive(ctx); err != nil {
		return nil, err
	}
	return &gv1.GetJobResponse{Job: &gv1.Job{Id: req.JobId}}, nil
}

func (f *fakeAPI) SubmitJob(ctx context.Context, req *gv1.SubmitJobRequest) (*gv1.SubmitJobResponse, error) {
	f.mu.Lock()
	f.submits = append(f.submits, req.IdempotencyKey)
	f.mu.Unlock()
	if err := f.arrive(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	lead := f.leader
	f.mu.Unlock()
	if len(lead) == 2 {
		if err := grpc.SetHeader(ctx, metadata.Pairs(wire.LeaderHeader, lead[0], wire.LeaderAddrHeader, lead[1])); err != nil {
			return nil, err
		}
	}
	return &gv1.SubmitJobResponse{Job: &gv1.Job{Id: "j1"}}, nil
}

func (f *fakeAPI) TaskLogs(req *gv1.TaskLogsRequest, stream gv1.GantryService_TaskLogsServer) error {
	f.mu.Lock()
	md, _ := metadata.FromIncomingContext(stream.Context())
	f.calls = append(f.calls, md)
	if len(f.logs) == 0 {
		f.mu.Unlock()
		return status.Error(codes.Internal, "no more log calls scripted")
	}
	call := f.logs[0]
	f.logs = f.logs[1:]
	f.mu.Unlock()
	for _, seq := range call.seqs {
		chunk := &gv1.LogChunk{Ref: &gv1.TaskRef{JobId: req.JobId, Task: "t", Attempt: 1}, Seq: seq, Data: []byte(strconv.FormatUint(seq, 10) + "\n")}
		if err := stream.Send(&gv1.TaskLogsResponse{Chunk: chunk}); err != nil {
			return err
		}
	}
	if call.end == codes.OK {
		return nil
	}
	return status.Error(call.end, "log stream: broken")
}

func (f *fakeAPI) nCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// serveFake serves f on a loopback port and returns its address.
func serveFake(t *testing.T, f *fakeAPI) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	gv1.RegisterGantryServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func newClient(t *testing.T, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewNeedsAnAddress(t *testing.T) {
	t.Parallel()
	if _, err := client.New([]string{" ", ","}); err != client.ErrNoAddress {
		t.Fatalf("New without addresses = %v, want ErrNoAddress", err)
	}
}

// TestPlainTextOnlyToLoopback: without TLS a client may talk only to this
// machine unless WithInsecure says otherwise, so a token never crosses a
// network in clear by accident.
func TestPlainTextOnlyToLoopback(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"127.0.0.1:7420", "localhost:7420", "[::1]:7420", "127.0.0.1:1,localhost:2"} {
		c, err := client.New([]string{a})
		if err != nil {
			t.Errorf("New(%q) without TLS: %v", a, err)
			continue
		}
		c.Close()
	}
	for _, a := range []string{"10.0.0.1:7420", "gantry.example:7420", "127.0.0.1:1,10.0.0.2:7420"} {
		if _, err := client.New([]string{a}); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("New(%q) without TLS: %v, want a refusal", a, err)
		}
		c, err := client.New([]string{a}, client.WithInsecure())
		if err != nil {
			t.Errorf("New(%q, WithInsecure): %v", a, err)
			continue
		}
		c.Close()
	}
}

func TestCallsCarryTokenAndIndex(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{}
	c := newClient(t, []string{serveFake(t, f)}, client.WithToken("s3cret"))
	ctx := testContext(t)
	for range 2 {
		if _, err := c.Job(ctx, "j1"); err != nil {
			t.Fatal(err)
		}
	}
	if c.Index() != 20 {
		t.Errorf("Index() = %d after two answers at 10 and 20", c.Index())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.calls[0].Get(wire.MinIndexHeader); len(got) != 0 {
		t.Errorf("first call sent %s %v before any answer", wire.MinIndexHeader, got)
	}
	if got := f.calls[1].Get(wire.MinIndexHeader); len(got) != 1 || got[0] != "10" {
		t.Errorf("second call sent %s %v, want [10]", wire.MinIndexHeader, got)
	}
	for i, md := range f.calls {
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
			t.Errorf("call %d: authorization %v", i, got)
		}
	}
}

func TestCallTokenReplacesTheClients(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{}
	c := newClient(t, []string{serveFake(t, f)}, client.WithToken("s3cret"))
	ctx := testContext(t)
	if _, err := c.Job(client.WithCallToken(ctx, "users"), "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Job(client.WithCallToken(ctx, ""), "j1"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.calls[0].Get("authorization"); len(got) != 1 || got[0] != "Bearer users" {
		t.Errorf("call with a token of its own: authorization %v", got)
	}
	if got := f.calls[1].Get("authorization"); len(got) != 0 {
		t.Errorf("call with an empty token: authorization %v", got)
	}
}

func TestUnavailableIsRetried(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{refuse: 2}
	c := newClient(t, []string{serveFake(t, f)})
	if _, err := c.Job(testContext(t), "j1"); err != nil {
		t.Fatalf("Job after two refusals: %v", err)
	}
	if n := f.nCalls(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestRetryTimeoutZeroDoesNotRetry(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{refuse: 1}
	c := newClient(t, []string{serveFake(t, f)}, client.WithRetryTimeout(0))
	if _, err := c.Job(testContext(t), "j1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("Job = %v, want the refusal", err)
	}
	if n := f.nCalls(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

func TestRetryStopsBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{refuse: 1 << 30}
	c := newClient(t, []string{serveFake(t, f)})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Job(ctx, "j1")
	// The server's reason, not the deadline, is what the caller needs.
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "no leader elected" {
		t.Fatalf("Job = %v, want the server's refusal", err)
	}
}

func TestRetryTimeoutBoundsRetrying(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{refuse: 1 << 30}
	c := newClient(t, []string{serveFake(t, f)}, client.WithRetryTimeout(200*time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := c.Job(context.Background(), "j1")
		done <- err
	}()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Job = %v, want the refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call without a deadline was retried past its retry timeout")
	}
	if n := f.nCalls(); n < 2 {
		t.Errorf("%d calls, want retries", n)
	}
}

func TestSubmitWithoutKeyIsNotRepeated(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{refuse: 1}
	c := newClient(t, []string{serveFake(t, f)})
	ctx := testContext(t)
	// Through Raw, a submit without a key may not be sent twice.
	if _, err := c.Raw().SubmitJob(ctx, &gv1.SubmitJobRequest{SpecYaml: "x"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("raw submit = %v, want the refusal", err)
	}
	// Submit gives it a key, and then it may.
	f.mu.Lock()
	f.refuse = 1
	f.mu.Unlock()
	req := &gv1.SubmitJobRequest{SpecYaml: "x"}
	if _, err := c.Submit(ctx, req); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submits) != 3 || f.submits[0] != "" || f.submits[1] == "" || f.submits[1] != f.submits[2] || f.submits[1] != req.IdempotencyKey {
		t.Errorf("keys sent %q (request's %q): want one empty, then the same key twice", f.submits, req.IdempotencyKey)
	}
}

// TestWritesGoToTheLeader: once an answer names the leader at an address
// the client dials, the calls that answer named it for go there; reads
// stay where they were. An address the client was not given is never
// used, and a leader that stopped answering is not called again for being
// the leader until it answers.
func TestWritesGoToTheLeader(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	leader := &fakeAPI{node: "n2"}
	la := serveFake(t, leader)
	leader.leader = []string{"n2", la}
	follower := &fakeAPI{node: "n1", leader: []string{"n2", la}}
	fa := serveFake(t, follower)
	c := newClient(t, []string{fa, la}, client.WithRetryTimeout(5*time.Second))
	submit := func() {
		t.Helper()
		if _, err := c.Raw().SubmitJob(ctx, &gv1.SubmitJobRequest{SpecYaml: "x", IdempotencyKey: "k"}); err != nil {
			t.Fatalf("submit: %v", err)
		}
	}
	count := func(f *fakeAPI) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.submits)
	}
	for range 3 {
		submit()
	}
	if _, err := c.Job(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	if got, want := []int{count(follower), count(leader), follower.nCalls() - count(follower)}, []int{1, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("submits on the follower, on the leader, reads on the follower = %v, want %v", got, want)
	}

	// A leader named at an address the client was not given: the calls stay.
	other := &fakeAPI{node: "n1", leader: []string{"n9", "127.0.0.1:1"}}
	c2 := newClient(t, []string{serveFake(t, other), la})
	for range 3 {
		if _, err := c2.Raw().SubmitJob(ctx, &gv1.SubmitJobRequest{SpecYaml: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(other); n != 3 {
		t.Fatalf("submits on the first address with the leader elsewhere = %d, want 3", n)
	}

	// The leader stops answering: the write is tried again on the follower,
	// and the next one goes there too although the follower still names
	// the dead leader.
	leader.mu.Lock()
	leader.refuse = 100
	leader.mu.Unlock()
	submit()
	submit()
	if got := count(follower); got != 3 {
		t.Fatalf("submits on the follower after the leader refused = %d, want 3", got)
	}
	if got := leader.nCalls(); got != 3 {
		t.Fatalf("calls to the refusing leader = %d, want 3 (two answered, one refused)", got)
	}
}

func TestFailoverToTheNextAddress(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{}
	c := newClient(t, []string{deadAddr(t) + "," + serveFake(t, f)}, client.WithRetryTimeout(5*time.Second))
	ctx := testContext(t)
	if _, err := c.Job(ctx, "j1"); err != nil {
		t.Fatalf("Job with the first address dead: %v", err)
	}
	f.mu.Lock()
	f.logs = []logCall{{seqs: []uint64{1}}}
	f.mu.Unlock()
	if err := c.Logs(ctx, "j1", "", false, func(*gv1.LogChunk) error { return nil }); err != nil {
		t.Fatalf("Logs with the first address dead: %v", err)
	}
}

func TestLogStreamReopens(t *testing.T) {
	t.Parallel()
	f := &fakeAPI{logs: []logCall{
		{end: codes.Unavailable},                       // refused before any chunk: reopened at once
		{seqs: []uint64{1, 2}, end: codes.Unavailable}, // broke midway: followed again
		{seqs: []uint64{1, 2, 3}},                      // replays from the start, then ends
	}}
	c := newClient(t, []string{serveFake(t, f)})
	var got []uint64
	err := c.Logs(testContext(t), "j1", "", true, func(ch *gv1.LogChunk) error {
		got = append(got, ch.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("Logs = %v, want nil at the end of the log", err)
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Errorf("chunks %v, want 1 2 3 once each", got)
	}

	// Without follow, a stream broken midway is the caller's to handle.
	f.mu.Lock()
	f.logs = []logCall{{seqs: []uint64{1}, end: codes.Unavailable}}
	f.mu.Unlock()
	if err := c.Logs(testContext(t), "j1", "", false, func(*gv1.LogChunk) error { return nil }); status.Code(err) != codes.Unavailable {
		t.Errorf("Logs without follow = %v, want the stream's error", err)
	}
}
