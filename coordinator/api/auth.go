package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/wire"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Authentication and authorization. Every call runs through aclUnary or
// aclStream first: the bearer token (wire.Authorization, "Bearer
// gantry_ID_SECRET") is looked up by id in the replicated state and its
// secret compared with the stored SHA-256; the method's row in methods
// names the least role. A follower forwards the caller's token with the
// call, and the leader authenticates and authorizes it again through the
// same chain (forward.go).

// TokenPrefix starts every API token.
const TokenPrefix = "gantry_"

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewToken returns a new token's id, the bearer string to hand out, and
// the hash of its secret to store.
func NewToken() (id, bearer string, sum []byte) {
	var b [28]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	id = tokenEncoding.EncodeToString(b[:8])
	secret := tokenEncoding.EncodeToString(b[8:])
	h := sha256.Sum256([]byte(secret))
	return id, TokenPrefix + id + "_" + secret, h[:]
}

// ParseToken splits a bearer token into its id and the SHA-256 of its
// secret.
func ParseToken(bearer string) (id string, sum []byte, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(bearer), TokenPrefix)
	if !ok {
		return "", nil, fmt.Errorf("not a Gantry token (it starts with %q)", TokenPrefix)
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || len(secret) < 16 {
		return "", nil, fmt.Errorf("malformed token: want %sID_SECRET", TokenPrefix)
	}
	h := sha256.Sum256([]byte(secret))
	return id, h[:], nil
}

// Caller is who makes a call, as authentication found it.
type Caller struct {
	// Token is nil for a call to an open method made without a token.
	Token *gv1.Token
	// Peer is the client's address as the receiving coordinator saw it.
	Peer string
	// bearer is the token presented, forwarded with the call to the leader.
	bearer string
	// cert is the client certificate's identity ("NAME ROLE") when the
	// caller authenticated with one instead of a token.
	cert string
	// audited: a command of this call carried the caller into the log, so
	// its audit event is written by Apply; forwarded: the leader served
	// the call and recorded it.
	audited, forwarded atomic.Bool
}

type callerKey struct{}

// CallerFrom returns the caller of a call, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// actor describes the caller for the audit log.
func (c *Caller) actor() *gv1.Actor {
	if c == nil {
		return nil
	}
	a := &gv1.Actor{Peer: c.Peer}
	if c.Token != nil {
		a.TokenId, a.Name, a.Role = c.Token.GetId(), c.Token.GetName(), c.Token.GetRole()
	}
	return a
}

// RoleName is a role as users write it ("operator").
func RoleName(r gv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// ParseRole reads a role as users write it.
func ParseRole(s string) (gv1.Role, error) {
	r, ok := gv1.Role_value["ROLE_"+strings.ToUpper(strings.TrimSpace(s))]
	if !ok || r == 0 {
		return 0, fmt.Errorf("role %q: want viewer, developer, operator or admin", s)
	}
	return gv1.Role(r), nil
}

// peerKey carries the original client's address of a forwarded call.
type peerKey struct{}

// authenticate finds the caller of a call from its metadata.
func (s *Server) authenticate(ctx context.Context) (*Caller, error) {
	c := &Caller{}
	if p, ok := ctx.Value(peerKey{}).(string); ok {
		c.Peer = p
	} else if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.Peer = p.Addr.String()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(wire.Authorization)
	if len(v) == 0 {
		// No token: a client certificate of the cluster's CA with a role,
		// checked by this node's TLS handshake or, for a forwarded call,
		// by the follower's (only coordinators publish forwarded calls).
		if id, ok := ctx.Value(certKey{}).(string); ok {
			c.Token, c.cert = certToken(id), id
		} else if id := peerCertIdentity(ctx); id != "" {
			c.Token, c.cert = certToken(id), id
		}
		if c.cert != "" && c.Token == nil {
			return nil, status.Errorf(codes.Unauthenticated, "client certificate %q: no valid role", c.cert)
		}
		return c, nil
	}
	bearer, ok := strings.CutPrefix(v[0], "Bearer ")
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "authorization: want \"Bearer TOKEN\"")
	}
	id, sum, err := ParseToken(bearer)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "token: %v", err)
	}
	t, ok := s.d.FSM.Token(id)
	if !ok {
		// A token created a moment ago through another coordinator: wait
		// for the state the client has seen before refusing.
		if err := s.waitMinIndex(ctx); err == nil {
			t, ok = s.d.FSM.Token(id)
		}
	}
	if !ok {
		// A node catching up after a restart has not applied the token
		// yet: say so rather than call it unknown.
		if r := s.ready.Load(); r != nil {
			if ready, why := (*r)(); !ready {
				return nil, status.Error(codes.Unavailable, why)
			}
		}
	}
	if !ok || subtle.ConstantTimeCompare(t.GetSecretSha256(), sum) != 1 {
		return nil, status.Error(codes.Unauthenticated, "token: unknown or revoked; ask an admin for one (`gantry token create`)")
	}
	if e := t.GetExpiresAt(); e != nil && time.Now().After(e.AsTime()) {
		return nil, status.Errorf(codes.Unauthenticated, "token %s (%s) expired at %s; ask an admin for a new one", t.GetId(), t.GetName(), e.AsTime().UTC().Format(time.RFC3339))
	}
	c.Token, c.bearer = t, bearer
	return c, nil
}

// authorize checks the caller against the method's row. An insecure
// coordinator answers every call.
func (s *Server) authorize(c *Caller, full string, w where) error {
	if w.open || s.d.Insecure {
		return nil
	}
	if c.Token == nil && s.d.FSM.TokenCount() == 0 {
		return status.Errorf(codes.Unauthenticated, "%s: this cluster has no token yet: make the first admin token with `gantry acl bootstrap` (or start the coordinators with --bootstrap-token-file)", methodName(full))
	}
	if c.Token == nil {
		return status.Errorf(codes.Unauthenticated, "%s needs a token with role %s or above: pass --token, set $GANTRY_TOKEN, or write it to ~/.config/gantry/token", methodName(full), RoleName(w.role))
	}
	if c.Token.GetRole() < w.role {
		return status.Errorf(codes.PermissionDenied, "%s needs role %s or above; token %s (%s) has role %s", methodName(full), RoleName(w.role), c.Token.GetId(), c.Token.GetName(), RoleName(c.Token.GetRole()))
	}
	return nil
}

// aclUnary authenticates and authorizes a unary call and records mutating
// calls in the audit log.
func (s *Server) aclUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	w := rowOf(info.FullMethod)
	c, err := s.authenticate(ctx)
	if err == nil {
		err = s.authorize(c, info.FullMethod, w)
	}
	if err != nil {
		if w.audit {
			s.auditRefusal(c, info.FullMethod, err)
		}
		return nil, err
	}
	ctx = context.WithValue(ctx, callerKey{}, c)
	resp, err := handler(ctx, req)
	if w.audit {
		s.auditCall(c, info.FullMethod, req, err)
	}
	return resp, err
}

// aclStream authenticates and authorizes a streaming call.
func (s *Server) aclStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := rowOf(info.FullMethod)
	c, err := s.authenticate(ss.Context())
	if err == nil {
		err = s.authorize(c, info.FullMethod, w)
	}
	if err != nil {
		if w.audit {
			s.auditRefusal(c, info.FullMethod, err)
		}
		return err
	}
	err = handler(srv, &callerStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, c)})
	if w.audit {
		s.auditCall(c, info.FullMethod, nil, err)
	}
	return err
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// command stamps a command of a call with the time and, for the audit log,
// the caller and method: Apply records the event with the command's result.
func (s *Server) command(ctx context.Context, cmd *gv1.Command) *gv1.Command {
	cmd.At = timestamppb.Now()
	if c := CallerFrom(ctx); c != nil && c.audited.CompareAndSwap(false, true) {
		cmd.Actor = c.actor()
		if m, ok := grpc.Method(ctx); ok {
			cmd.Method = methodName(m)
		} else if m, ok := ctx.Value(methodKey{}).(string); ok {
			cmd.Method = m
		}
	}
	return cmd
}

// methodKey names the method of a forwarded call (its context is not a
// gRPC server's).
type methodKey struct{}

// auditCall records a mutating call served here whose commands did not
// carry it into the log: it failed before proposing, or acts outside the
// replicated state (cluster membership, draining, a sync's deploy).
func (s *Server) auditCall(c *Caller, full string, req any, err error) {
	if c == nil || c.audited.Load() || c.forwarded.Load() {
		return
	}
	s.recordAudit(c, full, auditTarget(req), err, false)
}

// auditRefusal records a refused call; refusals are rate limited so that a
// flood of bad calls cannot push real events out of the bounded log.
func (s *Server) auditRefusal(c *Caller, full string, err error) {
	if !s.refusals.Allow() {
		return
	}
	s.recordAudit(c, full, "", err, true)
}

func (s *Server) recordAudit(c *Caller, full, target string, err error, async bool) {
	result := "ok"
	if err != nil {
		st, _ := status.FromError(toStatus(err))
		result = st.Code().String() + ": " + st.Message()
	}
	ev := &gv1.AuditEvent{Actor: c.actor(), Method: methodName(full), Target: target, Result: result}
	do := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_RecordAudit{RecordAudit: &gv1.RecordAuditCommand{Event: ev}}}
		var err error
		if s.isLeader() {
			_, err = s.d.Proposer.ProposeOne(ctx, cmd)
		} else {
			_, err = s.forward(ctx, auditSubject, &gv1.RecordAuditCommand{Event: ev}, &gv1.RecordAuditCommand{})
		}
		if err != nil {
			s.log.Warn("audit event not recorded", zap.String("method", ev.Method), zap.String("result", result), zap.Error(err))
		}
	}
	if async {
		go do()
		return
	}
	do()
}

// auditSubject is the forwarded call a follower records a refusal with.
const auditSubject = "RecordAudit"

// auditTarget names what a request acts on, for calls audited without a
// command of their own.
func auditTarget(req any) string {
	switch r := req.(type) {
	case *gv1.DrainAgentRequest:
		return "agent " + r.GetName()
	case *gv1.AddNodeRequest:
		return "node " + r.GetId() + " at " + r.GetRaftAddr()
	case *gv1.RemoveNodeRequest:
		return "node " + r.GetId()
	case *gv1.SyncAppRequest:
		return "app " + r.GetName()
	case *gv1.RollbackAppRequest:
		return "app " + r.GetName()
	case *gv1.SubmitJobRequest:
		return "job"
	case *gv1.CancelJobRequest:
		return "job " + r.GetJobId()
	case *gv1.CreateAppRequest:
		return "app " + r.GetSpec().GetName()
	case *gv1.UnpinAppRequest:
		return "app " + r.GetName()
	case *gv1.DeleteAppRequest:
		return "app " + r.GetName()
	case *gv1.SetSecretRequest:
		return "secret " + r.GetName()
	case *gv1.SetSecretCommand:
		return "secret " + r.GetSecret().GetName()
	case *gv1.DeleteSecretRequest:
		return "secret " + r.GetName()
	case *gv1.CreateTokenRequest:
		return "token " + r.GetName()
	case *gv1.RevokeTokenRequest:
		return "token " + r.GetId()
	}
	return ""
}

// refusalRate bounds refused calls recorded per second on one node.
func newRefusalLimiter() *rate.Limiter { return rate.NewLimiter(20, 40) }

// certKey carries the client certificate identity of a forwarded call.
type certKey struct{}

// peerCertIdentity is "NAME ROLE" of the verified client certificate
// (kind client, with a role) the caller presented, or "".
func peerCertIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	cert := ti.State.PeerCertificates[0]
	if len(cert.Subject.OrganizationalUnit) != 1 || pki.Kind(cert.Subject.OrganizationalUnit[0]) != pki.Client {
		return ""
	}
	role := pki.CertRole(cert)
	if role == "" {
		return ""
	}
	return cert.Subject.CommonName + " " + role
}

// certToken is the token a client certificate stands for: its common name
// and role; nil when the identity is malformed.
func certToken(id string) *gv1.Token {
	cn, roleName, ok := strings.Cut(id, " ")
	if !ok || name.Check(cn) != nil {
		return nil
	}
	role, err := ParseRole(roleName)
	if err != nil {
		return nil
	}
	return &gv1.Token{Id: "cert-" + cn, Name: "certificate " + cn, Role: role, CreatedBy: "certificate"}
}
