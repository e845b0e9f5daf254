package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/vt"
	"github.com/gantryci/gantry/internal/wire"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Forwarding. A write reaching a follower is sent to the leader over NATS
// (subject Namespace.RPC(method)) by one interceptor, forwardUnary, for
// the methods marked leader in the table methods (methods.go); no handler
// checks leadership itself. The leader serves a forwarded call through the
// same interceptor chain as a call of its own gRPC clients
// (ServeForwarded), so whatever that chain enforces applies to both.

// NATS headers of a forwarded call's answer.
const (
	hdrCode    = "Gantry-Code"
	hdrMessage = "Gantry-Message"
	// hdrIndex is the leader's applied index once it served the call: the
	// follower answers its client after applying that far itself, so the
	// client reads its write on the follower next.
	hdrIndex = "Gantry-Index"
)

// NATS headers of a forwarded call: the caller's bearer token, which the
// leader authenticates again, and the client's address.
const (
	hdrAuthorization = "Gantry-Authorization"
	hdrPeer          = "Gantry-Peer"
	// hdrCertificate is the identity ("NAME ROLE") of a caller that
	// authenticated with a client certificate.
	hdrCertificate = "Gantry-Certificate"
)

// sealedSecret is the forwarded form of SetSecret: the follower seals the
// value with the shared keyring and forwards only the ciphertext.
const sealedSecret = "SetSealedSecret"

// forwardedKey marks the context of a call the leader serves for a
// follower: if leadership moved meanwhile, it is not forwarded again.
type forwardedKey struct{}

// forwardUnary runs leader-only methods on the leader: on a follower it
// forwards the call and answers once this replica applied the write.
func (s *Server) forwardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	name := methodName(info.FullMethod)
	if !methods[name].leader || s.isLeader() {
		return handler(ctx, req)
	}
	if ctx.Value(forwardedKey{}) != nil {
		return nil, status.Errorf(codes.Unavailable, "%s: leadership changed while the call was forwarded; retry", name)
	}
	msg, _ := req.(proto.Message)
	subjectName := name
	if methods[name].sealed {
		var err error
		if msg, err = s.sealSecret(req.(*gv1.SetSecretRequest)); err != nil {
			return nil, err
		}
		subjectName = sealedSecret
	}
	resp, err := newResponse(info.FullMethod)
	if err != nil {
		return nil, err
	}
	if c := CallerFrom(ctx); c != nil {
		c.forwarded.Store(true) // the leader records it
	}
	index, err := s.forward(ctx, subjectName, msg, resp)
	if err != nil {
		return nil, err
	}
	return resp, s.waitApplied(ctx, index)
}

// forwardStream refuses leader-only streams on a follower, naming the
// leader.
func (s *Server) forwardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if methods[methodName(info.FullMethod)].leader && !s.isLeader() {
		addr, id := s.d.Raft.Raft.LeaderWithID()
		return status.Errorf(codes.FailedPrecondition, "%s runs on the leader (%s at %s); send it there", methodName(info.FullMethod), id, addr)
	}
	return handler(srv, ss)
}

// unaryMethod is what forwarding needs of a unary method: its generated
// handler (which runs the interceptor chain) and its response type.
type unaryMethod struct {
	handler  grpc.MethodHandler
	response protoreflect.MessageType
}

// unaryMethods are the service's unary methods by short name, looked up
// once.
var unaryMethods = sync.OnceValue(func() map[string]unaryMethod {
	out := map[string]unaryMethod{}
	sd := gv1.File_gantry_v1_api_proto.Services().ByName("GantryService")
	for _, md := range gv1.GantryService_ServiceDesc.Methods {
		m := sd.Methods().ByName(protoreflect.Name(md.MethodName))
		t, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
		if err != nil {
			panic(fmt.Sprintf("response type of %s: %v", md.MethodName, err))
		}
		out[md.MethodName] = unaryMethod{handler: md.Handler, response: t}
	}
	return out
})

// newResponse makes an empty response message of a unary method.
func newResponse(fullMethod string) (proto.Message, error) {
	m, ok := unaryMethods()[methodName(fullMethod)]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "no unary method %s", fullMethod)
	}
	return m.response.New().Interface(), nil
}

// The pauses of a forwarded call while no leader answers: the first, and
// the longest.
const (
	forwardFirst = 10 * time.Millisecond
	forwardPoll  = 100 * time.Millisecond
)

// forward sends a call to the leader over NATS, decodes its answer into
// resp and returns the leader's applied index after serving it. While
// there is no leader (an election) it retries until ctx ends.
func (s *Server) forward(ctx context.Context, method string, req, resp proto.Message) (uint64, error) {
	data, err := vt.Marshal(req)
	if err != nil {
		return 0, status.Errorf(codes.Internal, "encode %s: %v", method, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	// While no leader answers, the call is sent again at a leader change
	// (the new leader may take a moment to subscribe), or after a pause
	// that grows to forwardPoll. (Pauses that grew to half a second kept a
	// call waiting up to 300 ms after the election that ended them.)
	wait := forwardFirst
	var changed <-chan struct{}
	pause := func() error {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			wait = forwardFirst
		case <-t.C:
			wait = min(2*wait, forwardPoll)
		}
		return nil
	}
	out := nats.NewMsg(s.d.Namespace.RPC(method))
	out.Data = data
	if c := CallerFrom(ctx); c != nil {
		if c.bearer != "" {
			out.Header.Set(hdrAuthorization, "Bearer "+c.bearer)
		} else if c.cert != "" {
			out.Header.Set(hdrCertificate, c.cert)
		}
		out.Header.Set(hdrPeer, c.Peer)
	}
	for {
		changed = s.leader.changed()
		msg, err := s.request(ctx, out)
		if errors.Is(err, errLeaderMoved) {
			return 0, status.Errorf(codes.Unavailable, "forward %s: %v; its outcome is unknown: retry (a submit with the same idempotency key returns the job if it was created)", method, err)
		}
		if errors.Is(err, nats.ErrNoResponders) {
			if pause() != nil {
				return 0, status.Errorf(codes.Unavailable, "%s: no leader elected", method)
			}
			continue
		}
		if err != nil {
			return 0, status.Errorf(codes.Unavailable, "forward %s to the leader: %v", method, err)
		}
		if c := msg.Header.Get(hdrCode); c != "" {
			n, _ := strconv.Atoi(c)
			if codes.Code(n) == codes.Unavailable && pause() == nil {
				// The leader stepped down between our request and its commit.
				continue
			}
			return 0, status.Error(codes.Code(n), msg.Header.Get(hdrMessage))
		}
		if err := proto.Unmarshal(msg.Data, resp); err != nil {
			return 0, status.Errorf(codes.Internal, "decode %s answer: %v", method, err)
		}
		index, _ := strconv.ParseUint(msg.Header.Get(hdrIndex), 10, 64)
		return index, nil
	}
}

// errLeaderMoved: the leader a forwarded call went to lost leadership (it
// died, say) before answering.
var errLeaderMoved = errors.New("the leader changed while the call was in flight")

// request sends a forwarded call to the leader and waits for its answer,
// but no longer than the leader it went to leads: once this node knows
// another leader, the first one cannot answer any more (it died, or will
// refuse as a follower), and waiting for the caller's deadline would only
// stretch a failover.
func (s *Server) request(ctx context.Context, out *nats.Msg) (*nats.Msg, error) {
	changed := s.leader.changed()
	_, sentTo := s.d.Raft.Raft.LeaderWithID()
	if sentTo == "" {
		return s.d.NATS.RequestMsgWithContext(ctx, out)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		for {
			select {
			case <-rctx.Done():
				return
			case <-changed:
				changed = s.leader.changed()
				if _, id := s.d.Raft.Raft.LeaderWithID(); id != "" && id != sentTo {
					cancel(fmt.Errorf("%w (from %s to %s)", errLeaderMoved, sentTo, id))
					return
				}
			}
		}
	}()
	msg, err := s.d.NATS.RequestMsgWithContext(rctx, out)
	if err != nil && ctx.Err() == nil {
		if cause := context.Cause(rctx); errors.Is(cause, errLeaderMoved) {
			return nil, cause
		}
	}
	return msg, err
}

// leaderWatch wakes forwarded calls when Raft reports a leader change
// (one observer per node, instead of each call polling Raft).
type leaderWatch struct {
	mu sync.Mutex
	ch chan struct{}
}

// changed is closed at the next leader change.
func (w *leaderWatch) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *leaderWatch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// watch registers the Raft observer that drives w.
func (w *leaderWatch) watch(r *raft.Raft) {
	obs := make(chan raft.Observation, 1)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	go func() {
		for range obs {
			w.fire()
		}
	}()
}

// ServeForwarded answers calls forwarded by followers; the leader
// subscribes it to the namespace's RPC subjects while it leads. The call
// runs through the same interceptor chain as the leader's own clients'.
func (s *Server) ServeForwarded(ctx context.Context, m *nats.Msg) {
	name := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	ctx = context.WithValue(ctx, forwardedKey{}, true)
	ctx = context.WithValue(ctx, peerKey{}, m.Header.Get(hdrPeer))
	ctx = context.WithValue(ctx, methodKey{}, name)
	if a := m.Header.Get(hdrAuthorization); a != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(wire.Authorization, a))
	} else if id := m.Header.Get(hdrCertificate); id != "" {
		ctx = context.WithValue(ctx, certKey{}, id)
	}
	resp, err := s.serveForwarded(ctx, name, m.Data)
	out := nats.NewMsg(m.Reply)
	if err != nil && ctx.Err() != nil {
		// Leadership ended while serving: the caller should try the new leader.
		err = status.Errorf(codes.Unavailable, "%s: leadership changed: %v", name, err)
	}
	if err == nil {
		out.Header.Set(hdrIndex, strconv.FormatUint(s.d.FSM.AppliedIndex(), 10))
		var data []byte
		if data, err = vt.Marshal(resp); err == nil {
			out.Data = data
		}
	}
	if err != nil {
		st, _ := status.FromError(toStatus(err))
		out.Header.Set(hdrCode, strconv.Itoa(int(st.Code())))
		out.Header.Set(hdrMessage, st.Message())
	}
	if err := m.RespondMsg(out); err != nil {
		s.log.Debug("answer forwarded call", zap.String("method", name), zap.Error(err))
	}
}

func (s *Server) serveForwarded(ctx context.Context, name string, data []byte) (proto.Message, error) {
	chain := s.chain.Load()
	if chain == nil {
		return nil, status.Error(codes.Unavailable, "the API is not serving yet")
	}
	decodeInto := func(m proto.Message) func(any) error {
		return func(any) error {
			if err := proto.Unmarshal(data, m); err != nil {
				return status.Errorf(codes.InvalidArgument, "decode forwarded %s: %v", name, err)
			}
			return nil
		}
	}
	if name == auditSubject {
		// A follower records a call it refused.
		c := &gv1.RecordAuditCommand{}
		if err := decodeInto(c)(nil); err != nil {
			return nil, err
		}
		if !s.isLeader() {
			return nil, status.Error(codes.Unavailable, "not the leader")
		}
		_, err := s.d.Proposer.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_RecordAudit{RecordAudit: c}})
		return c, toStatus(err)
	}
	if name == sealedSecret {
		// Authorized as the SetSecret it stands for.
		c := &gv1.SetSecretCommand{}
		if err := decodeInto(c)(nil); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: s, FullMethod: servicePrefix + "SetSecret"}
		ctx = context.WithValue(ctx, methodKey{}, "SetSecret")
		resp, err := (*chain)(ctx, c, info, func(ctx context.Context, req any) (any, error) {
			return s.setSealedSecret(ctx, req.(*gv1.SetSecretCommand))
		})
		return asMessage(resp, err)
	}
	if !methods[name].leader {
		return nil, status.Errorf(codes.Unimplemented, "method %q is not forwarded", name)
	}
	m, ok := unaryMethods()[name]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "method %q is not forwarded", name)
	}
	resp, err := m.handler(s, ctx, func(in any) error { return decodeInto(in.(proto.Message))(nil) }, *chain)
	return asMessage(resp, err)
}

func asMessage(resp any, err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	m, ok := resp.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "answer %T is not a message", resp)
	}
	return m, nil
}

// chainUnary composes interceptors, the first outermost.
func chainUnary(ics ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(ics) - 1; i >= 0; i-- {
			ic, inner := ics[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, inner) }
		}
		return next(ctx, req)
	}
}
