package api

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/internal/wire"
)

// Metadata keys of honest reads. Every answer carries the index of the
// state it was served from (IndexHeader); a client that sends the highest
// index it has seen (MinIndexHeader) is never answered from an older state,
// whichever coordinator it reaches.
const (
	IndexHeader    = wire.IndexHeader
	MinIndexHeader = wire.MinIndexHeader
)

// minIndexWait is how long a call waits for this replica to reach the
// client's index before it is refused as Unavailable.
const minIndexWait = 2 * time.Second

// Readiness says whether the node may serve reads: after a restart, not
// before it has applied the log it had acknowledged (see
// coordinator.catchUp). The message explains a refusal.
type Readiness func() (ready bool, why string)

// gate refuses reads while the node catches up and waits for the client's
// minimum index.
func (s *Server) gate(ctx context.Context, method string, ready Readiness) error {
	if !methods[methodName(method)].read {
		return nil
	}
	if ok, why := ready(); !ok {
		return status.Error(codes.Unavailable, why)
	}
	return s.waitMinIndex(ctx)
}

// waitMinIndex waits up to minIndexWait for this replica to reach the
// index the client has seen (MinIndexHeader).
func (s *Server) waitMinIndex(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(MinIndexHeader)
	if len(v) == 0 {
		return nil
	}
	want, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "%s: %q is not an index", MinIndexHeader, v[0])
	}
	if s.d.FSM.AppliedIndex() >= want {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, minIndexWait)
	defer cancel()
	for {
		changed := s.d.FSM.Changed()
		have := s.d.FSM.AppliedIndex()
		if have >= want {
			return nil
		}
		select {
		case <-changed:
		case <-wctx.Done():
			return status.Errorf(codes.Unavailable, "this coordinator has applied the log up to %d, behind index %d that you have already seen; retry or ask another coordinator", have, want)
		}
	}
}

// answerHeader is the metadata of every answer: the index it was served
// from, this node and, for calls only the leader serves, the leader (see
// wire.LeaderHeader).
func (s *Server) answerHeader(method string) metadata.MD {
	md := metadata.Pairs(IndexHeader, strconv.FormatUint(s.d.FSM.AppliedIndex(), 10))
	if s.d.Cluster == nil {
		return md
	}
	md.Set(wire.NodeHeader, s.d.Cluster.Self())
	if methods[methodName(method)].leader {
		id, addr := s.d.Cluster.Leader()
		if id != "" {
			md.Set(wire.LeaderHeader, id)
		}
		if addr != "" {
			md.Set(wire.LeaderAddrHeader, addr)
		}
	}
	return md
}

// UnaryInterceptor is the chain every unary call runs through, whether a
// client of this node made it or a follower forwarded it: authentication,
// authorization and audit (auth.go), honest reads, then forwarding of
// leader-only methods (forward.go).
func (s *Server) UnaryInterceptor(ready Readiness) grpc.UnaryServerInterceptor {
	s.ready.Store(&ready)
	honest := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := s.gate(ctx, info.FullMethod, ready); err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		_ = grpc.SetHeader(ctx, s.answerHeader(info.FullMethod))
		return resp, err
	}
	chain := chainUnary(s.aclUnary, honest, s.forwardUnary)
	s.chain.Store(&chain)
	return chain
}

// StreamInterceptor is the same chain for streaming calls: authentication,
// authorization and audit, honest reads, and leader-only streams kept on
// the leader.
func (s *Server) StreamInterceptor(ready Readiness) grpc.StreamServerInterceptor {
	honest := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := s.gate(ss.Context(), info.FullMethod, ready); err != nil {
			return err
		}
		_ = ss.SetHeader(s.answerHeader(info.FullMethod))
		return s.forwardStream(srv, ss, info, handler)
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return s.aclStream(srv, ss, info, func(srv any, ss grpc.ServerStream) error { return honest(srv, ss, info, handler) })
	}
}
