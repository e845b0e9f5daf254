package api

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	hdrCode    = "Gantry-Code"
	hdrMessage = "Gantry-Message"
)

// forward sends a write to the leader over NATS and decodes its answer into
// resp. While there is no leader (an election) it retries until ctx ends.
func (s *Server) forward(ctx context.Context, method string, req, resp proto.Message) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return status.Errorf(codes.Internal, "encode %s: %v", method, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	wait := 20 * time.Millisecond
	for {
		msg, err := s.d.NATS.RequestWithContext(ctx, s.d.Namespace.RPC(method), data)
		if errors.Is(err, nats.ErrNoResponders) {
			select {
			case <-ctx.Done():
				return status.Errorf(codes.Unavailable, "%s: no leader elected", method)
			case <-time.After(wait):
				wait = min(2*wait, 500*time.Millisecond)
				continue
			}
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "forward %s to the leader: %v", method, err)
		}
		if c := msg.Header.Get(hdrCode); c != "" {
			n, _ := strconv.Atoi(c)
			if codes.Code(n) == codes.Unavailable && ctx.Err() == nil {
				// The leader stepped down between our request and its commit.
				time.Sleep(wait)
				continue
			}
			return status.Error(codes.Code(n), msg.Header.Get(hdrMessage))
		}
		if err := proto.Unmarshal(msg.Data, resp); err != nil {
			return status.Errorf(codes.Internal, "decode %s answer: %v", method, err)
		}
		return nil
	}
}

// ServeForwarded answers writes (and ListQueue, which needs the leader's
// dispatcher) forwarded by followers; the leader
// subscribes it to the namespace's RPC subjects while it leads.
func (s *Server) ServeForwarded(ctx context.Context, m *nats.Msg) {
	method := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	var (
		resp proto.Message
		err  error
	)
	if h, ok := s.forwarded()[method]; ok {
		resp, err = h(ctx, m.Data)
	} else {
		err = status.Errorf(codes.Unimplemented, "method %q is not forwarded", method)
	}
	out := nats.NewMsg(m.Reply)
	if err != nil && ctx.Err() != nil {
		// Leadership ended while serving: the caller should try the new leader.
		err = status.Errorf(codes.Unavailable, "%s: leadership changed: %v", method, err)
	}
	if err != nil {
		st, _ := status.FromError(toStatus(err))
		out.Header.Set(hdrCode, strconv.Itoa(int(st.Code())))
		out.Header.Set(hdrMessage, st.Message())
	} else if out.Data, err = proto.Marshal(resp); err != nil {
		out.Header.Set(hdrCode, strconv.Itoa(int(codes.Internal)))
		out.Header.Set(hdrMessage, err.Error())
	}
	if err := m.RespondMsg(out); err != nil {
		s.log.Debug("answer forwarded call", zap.String("method", method), zap.Error(err))
	}
}

// forwardedCall decodes a forwarded request and serves it.
type forwardedCall func(ctx context.Context, data []byte) (proto.Message, error)

// serveAs adapts a method of the API to a forwardedCall.
func serveAs[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](f func(context.Context, PReq) (Resp, error)) forwardedCall {
	return func(ctx context.Context, data []byte) (proto.Message, error) {
		req := PReq(new(Req))
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err)
		}
		return f(ctx, req)
	}
}

// forwarded lists the calls the leader answers for followers: writes, and
// ListQueue, which needs the leader's dispatcher.
func (s *Server) forwarded() map[string]forwardedCall {
	return map[string]forwardedCall{
		"SubmitJob":   serveAs(s.SubmitJob),
		"CancelJob":   serveAs(s.CancelJob),
		"AddNode":     serveAs(s.AddNode),
		"RemoveNode":  serveAs(s.RemoveNode),
		"ListQueue":   serveAs(s.ListQueue),
		"CreateApp":   serveAs(s.CreateApp),
		"SyncApp":     serveAs(s.SyncApp),
		"RollbackApp": serveAs(s.RollbackApp),
		"UnpinApp":    serveAs(s.UnpinApp),
		"DeleteApp":   serveAs(s.DeleteApp),
		// Followers seal secrets themselves and forward the ciphertext.
		"SetSealedSecret": serveAs(s.setSealedSecret),
		"DeleteSecret":    serveAs(s.DeleteSecret),
	}
}
