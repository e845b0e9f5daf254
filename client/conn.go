package client

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/internal/wire"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Back-off between attempts of a call refused as Unavailable.
const (
	firstWait = 50 * time.Millisecond
	maxWait   = time.Second
)

// conn is the connection of a Client: one gRPC channel per coordinator
// address. It is a grpc.ClientConnInterface, so the generated client (and
// with it Raw) behaves like the typed methods:
//
//   - every call carries the bearer token and the highest state index seen
//     so far (honest reads), and every answer's index is remembered;
//   - a call refused as Unavailable moves on to the next address and, when
//     it is safe to repeat, is tried again with back-off (see retryUntil);
//   - a server stream that fails as Unavailable before its first message is
//     opened again the same way;
//   - a unary call only the leader serves goes to the leader's address once
//     an answer named it (see route).
type conn struct {
	ccs      []*grpc.ClientConn
	addrs    []string      // the address of each channel, as given
	next     atomic.Uint32 // the address calls go to
	index    atomic.Uint64 // the highest state index seen
	token    string
	retryFor time.Duration
	route    route
}

// route sends the calls only the leader serves straight to it. Followers
// forward such calls to the leader, a hop that costs the call about half a
// millisecond and both coordinators their share of its work. Answers name
// the coordinator that served them and, for leader-only methods, the
// leader (wire.LeaderHeader, wire.LeaderAddrHeader); the leader's channel
// is the one dialed at the address it announced, or one whose answers came
// from a node of its ID. Only the addresses the client was given are ever
// used: an answer cannot send calls elsewhere.
type route struct {
	mu       sync.Mutex
	nodes    []string        // the node ID each channel's answers named
	down     []bool          // channels that failed as Unavailable since they last answered
	leaderID string          // the leader the last leader-only answer named
	leader   int             // its channel; -1 while unknown or down
	methods  map[string]bool // methods whose answers named a leader
}

// pickFor returns the channel a unary call of method goes to.
func (c *conn) pickFor(method string) int {
	r := &c.route
	r.mu.Lock()
	at := r.leader
	if !r.methods[method] {
		at = -1
	}
	r.mu.Unlock()
	if at >= 0 {
		return at
	}
	return c.pick()
}

// heard records who answered a call of method on channel at.
func (c *conn) heard(at int, method string, md metadata.MD) {
	node, lead, addr := first(md, wire.NodeHeader), first(md, wire.LeaderHeader), first(md, wire.LeaderAddrHeader)
	if node == "" && lead == "" {
		return
	}
	r := &c.route
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init(len(c.ccs))
	r.down[at] = false
	if node != "" {
		r.nodes[at] = node
	}
	if lead == "" {
		if node != "" && node == r.leaderID {
			r.leader = at
		}
		return
	}
	r.methods[method] = true
	r.leaderID, r.leader = lead, -1
	for i := range c.ccs {
		if !r.down[i] && ((addr != "" && c.addrs[i] == addr) || r.nodes[i] == lead) {
			r.leader = i
			break
		}
	}
}

func (r *route) init(n int) {
	if r.nodes == nil {
		r.nodes, r.down, r.leader, r.methods = make([]string, n), make([]bool, n), -1, map[string]bool{}
	}
}

// lost records that a call on channel at failed as Unavailable. Until that
// channel answers again, calls do not go there for being the leader's: a
// leader that died stays named by followers until they elect another, and
// a follower forwards a write to whichever leader there is by then (a
// write sent to a dead leader fails; one sent to a follower waits for the
// election).
func (c *conn) lost(at int) {
	r := &c.route
	r.mu.Lock()
	r.init(len(c.ccs))
	r.down[at] = true
	if r.leader == at {
		r.leader = -1
	}
	r.mu.Unlock()
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

var _ grpc.ClientConnInterface = (*conn)(nil)

func (c *conn) close() error {
	var first error
	for _, cc := range c.ccs {
		if err := cc.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// pick returns the address calls go to now.
func (c *conn) pick() int { return int(c.next.Load()) % len(c.ccs) }

// failed moves calls on from address at, unless another call already did.
func (c *conn) failed(at int) {
	c.next.CompareAndSwap(uint32(at), uint32((at+1)%len(c.ccs)))
}

// outgoing adds the token and the index to a call's metadata.
func (c *conn) outgoing(ctx context.Context) context.Context {
	var kv []string
	token := c.token
	if t, ok := ctx.Value(callTokenKey{}).(string); ok {
		token = t
	}
	if token != "" {
		kv = append(kv, wire.Authorization, "Bearer "+token)
	}
	if n := c.index.Load(); n > 0 {
		kv = append(kv, wire.MinIndexHeader, strconv.FormatUint(n, 10))
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// seen remembers the index an answer was served from.
func (c *conn) seen(md metadata.MD) {
	for _, v := range md.Get(wire.IndexHeader) {
		n, err := strconv.ParseUint(v, 10, 64)
		for err == nil {
			old := c.index.Load()
			if n <= old || c.index.CompareAndSwap(old, n) {
				break
			}
		}
	}
}

// retrier paces the attempts of one call. The call is tried again for up
// to retryFor after the first attempt, never past its context's deadline.
// Moving on to another address costs no wait; a full round of the
// addresses does.
type retrier struct {
	c        *conn
	deadline time.Time
	wait     time.Duration
	tries    int
}

func (c *conn) retrier(ctx context.Context) *retrier {
	r := &retrier{c: c, wait: firstWait, deadline: time.Now().Add(c.retryFor)}
	if d, ok := ctx.Deadline(); ok && d.Before(r.deadline) {
		r.deadline = d
	}
	return r
}

// again reports whether to try once more after an attempt failed as
// Unavailable, having waited if it is time to.
func (r *retrier) again(ctx context.Context) bool {
	if r.c.retryFor <= 0 {
		return false
	}
	r.tries++
	if r.tries%len(r.c.ccs) != 0 {
		return ctx.Err() == nil && time.Now().Before(r.deadline)
	}
	if time.Until(r.deadline) < r.wait {
		// Report the server's refusal, not the deadline.
		return false
	}
	t := time.NewTimer(r.wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	r.wait = min(2*r.wait, maxWait)
	return true
}

// repeatable reports whether a unary call may be sent again after it was
// refused as Unavailable, when it may have been carried out nonetheless.
// Reads may; so may writes whose repetition leaves the same state (cancel,
// drain, set and delete by name). A submit may only with an idempotency
// key: the key makes a second submit return the first job. Creating a
// token may not: the first token's secret, shown once, would be lost.
func repeatable(req any) bool {
	switch r := req.(type) {
	case *gv1.SubmitJobRequest:
		return r.GetIdempotencyKey() != ""
	case *gv1.CreateTokenRequest, *gv1.BootstrapACLRequest:
		return false
	}
	return true
}

// Invoke sends a unary call.
func (c *conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	again := repeatable(args)
	r := c.retrier(ctx)
	for {
		at := c.pickFor(method)
		var md metadata.MD
		err := c.ccs[at].Invoke(c.outgoing(ctx), method, args, reply, append(opts, grpc.Header(&md))...)
		c.seen(md)
		c.heard(at, method, md)
		if status.Code(err) != codes.Unavailable {
			return err
		}
		c.lost(at)
		c.failed(at)
		if !again || !r.again(ctx) {
			return err
		}
	}
}

// NewStream opens a stream. Opening is retried on Unavailable: nothing has
// been sent yet.
func (c *conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	r := c.retrier(ctx)
	s := &stream{c: c, ctx: ctx, desc: desc, method: method, opts: opts, r: r}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// stream records the index of a stream's answer and moves on to another
// address when the stream fails as Unavailable. A server stream that fails
// so before its first message is opened again and sent its request anew.
type stream struct {
	grpc.ClientStream
	c      *conn
	ctx    context.Context // the caller's, for reopening
	desc   *grpc.StreamDesc
	method string
	opts   []grpc.CallOption
	r      *retrier
	at     int
	once   *sync.Once
	req    any  // the request of a server stream
	got    bool // a message arrived: no more reopening
}

func (s *stream) open() error {
	for {
		s.at = s.c.pick()
		cs, err := s.c.ccs[s.at].NewStream(s.c.outgoing(s.ctx), s.desc, s.method, s.opts...)
		if err == nil {
			s.ClientStream, s.once = cs, &sync.Once{}
			return nil
		}
		if status.Code(err) != codes.Unavailable {
			return err
		}
		s.c.lost(s.at)
		s.c.failed(s.at)
		if !s.r.again(s.ctx) {
			return err
		}
	}
}

func (s *stream) SendMsg(m any) error {
	if s.desc.ServerStreams && !s.desc.ClientStreams {
		s.req = m
	}
	return s.ClientStream.SendMsg(m)
}

func (s *stream) RecvMsg(m any) error {
	for {
		err := s.ClientStream.RecvMsg(m)
		s.once.Do(func() {
			if md, herr := s.ClientStream.Header(); herr == nil {
				s.c.seen(md)
				s.c.heard(s.at, s.method, md)
			}
		})
		if err == nil {
			s.got = true
			return nil
		}
		if status.Code(err) != codes.Unavailable {
			return err
		}
		s.c.lost(s.at)
		s.c.failed(s.at)
		if s.got || s.req == nil || !s.r.again(s.ctx) {
			return err
		}
		if oerr := s.open(); oerr != nil {
			return oerr
		}
		// A stream that breaks at once says why in its RecvMsg.
		_ = s.ClientStream.SendMsg(s.req)
		_ = s.ClientStream.CloseSend()
	}
}
