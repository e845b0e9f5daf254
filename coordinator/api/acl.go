package api

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TokenInfo describes a token without its hash.
func TokenInfo(t *gv1.Token) *gv1.TokenInfo {
	return &gv1.TokenInfo{
		Id: t.GetId(), Name: t.GetName(), Role: t.GetRole(),
		CreatedAt: t.GetCreatedAt(), ExpiresAt: t.GetExpiresAt(), CreatedBy: t.GetCreatedBy(),
	}
}

// CreateToken makes a token with a role. Its secret is in the answer and
// nowhere else: the state keeps its SHA-256.
func (s *Server) CreateToken(ctx context.Context, req *gv1.CreateTokenRequest) (*gv1.CreateTokenResponse, error) {
	if req.GetName() == "" || len(req.GetName()) > 128 {
		return nil, status.Error(codes.InvalidArgument, "name: required, at most 128 characters")
	}
	if req.GetRole() <= gv1.Role_ROLE_UNSPECIFIED || req.GetRole() > admin {
		return nil, status.Error(codes.InvalidArgument, "role: viewer, developer, operator or admin")
	}
	if req.GetTtlSeconds() < 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl_seconds: negative")
	}
	id, bearer, sum := NewToken()
	t := &gv1.Token{Id: id, Name: req.GetName(), Role: req.GetRole(), SecretSha256: sum}
	if c := CallerFrom(ctx); c != nil && c.Token != nil {
		t.CreatedBy = c.Token.GetId()
	}
	if ttl := req.GetTtlSeconds(); ttl > 0 {
		t.ExpiresAt = timestamppb.New(time.Now().Add(time.Duration(ttl) * time.Second))
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_CreateToken{CreateToken: &gv1.CreateTokenCommand{Token: t}}})); err != nil {
		return nil, toStatus(err)
	}
	got, ok := s.d.FSM.Token(id)
	if !ok {
		return nil, status.Errorf(codes.Internal, "token %s committed but not found", id)
	}
	return &gv1.CreateTokenResponse{Token: TokenInfo(got), Secret: bearer}, nil
}

// ListTokens lists the tokens, without secrets.
func (s *Server) ListTokens(ctx context.Context, req *gv1.ListTokensRequest) (*gv1.ListTokensResponse, error) {
	resp := &gv1.ListTokensResponse{}
	for _, t := range s.d.FSM.Tokens() {
		resp.Tokens = append(resp.Tokens, TokenInfo(t))
	}
	return resp, nil
}

// RevokeToken forgets a token: every coordinator refuses it once it has
// applied the revocation.
func (s *Server) RevokeToken(ctx context.Context, req *gv1.RevokeTokenRequest) (*gv1.RevokeTokenResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_RevokeToken{RevokeToken: &gv1.RevokeTokenCommand{Id: req.GetId()}}})); err != nil {
		return nil, toStatus(err)
	}
	return &gv1.RevokeTokenResponse{}, nil
}

// BootstrapACL makes the first admin token of a cluster that has none, for
// whoever asks first (as `nomad acl bootstrap`); afterwards it is refused.
func (s *Server) BootstrapACL(ctx context.Context, req *gv1.BootstrapACLRequest) (*gv1.BootstrapACLResponse, error) {
	if s.d.FSM.TokenCount() > 0 {
		return nil, status.Error(codes.FailedPrecondition, "the ACL is already bootstrapped; ask an admin for a token (`gantry token create`)")
	}
	id, bearer, sum := NewToken()
	t := &gv1.Token{Id: id, Name: "bootstrap", Role: admin, SecretSha256: sum, CreatedBy: "bootstrap"}
	if err := s.Bootstrap(ctx, t); err != nil {
		return nil, err
	}
	got, _ := s.d.FSM.Token(id)
	return &gv1.BootstrapACLResponse{Token: TokenInfo(got), Secret: bearer}, nil
}

// Bootstrap commits t as the first token; it is refused once any token
// exists. The leader uses it for a configured bootstrap token.
func (s *Server) Bootstrap(ctx context.Context, t *gv1.Token) error {
	_, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_CreateToken{CreateToken: &gv1.CreateTokenCommand{Token: t, Bootstrap: true}}}))
	return toStatus(err)
}

// WhoAmI describes the caller's token.
func (s *Server) WhoAmI(ctx context.Context, req *gv1.WhoAmIRequest) (*gv1.WhoAmIResponse, error) {
	c := CallerFrom(ctx)
	if c == nil || c.Token == nil {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	return &gv1.WhoAmIResponse{Token: TokenInfo(c.Token)}, nil
}

// ListAudit returns the kept audit events, oldest first.
func (s *Server) ListAudit(ctx context.Context, req *gv1.ListAuditRequest) (*gv1.ListAuditResponse, error) {
	n := int(req.GetLimit())
	if n <= 0 {
		n = 1000
	}
	n = min(n, limit.AuditEvents)
	return &gv1.ListAuditResponse{Events: s.d.FSM.Audit(req.GetSince(), n)}, nil
}
