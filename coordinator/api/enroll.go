package api

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/pki"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// JoinTokenPrefix starts every join token.
const JoinTokenPrefix = "gjoin_"

// maxPublicKey bounds the public key an enrolling agent sends.
const maxPublicKey = 4 << 10

// JoinTokenInfo describes a join token without its hash.
func JoinTokenInfo(t *gv1.JoinToken, enrolled []*gv1.Enrollment) *gv1.JoinTokenInfo {
	info := &gv1.JoinTokenInfo{
		Id: t.GetId(), Name: t.GetName(), Labels: t.GetLabels(),
		CreatedAt: t.GetCreatedAt(), ExpiresAt: t.GetExpiresAt(), CreatedBy: t.GetCreatedBy(),
	}
	for _, e := range enrolled {
		if e.GetTokenId() == t.GetId() && !e.GetRevoked() {
			info.Agents = append(info.Agents, e.GetAgent())
		}
	}
	return info
}

// CreateJoinToken makes a join token; its secret is in the answer only.
func (s *Server) CreateJoinToken(ctx context.Context, req *gv1.CreateJoinTokenRequest) (*gv1.CreateJoinTokenResponse, error) {
	if len(req.GetName()) > 128 {
		return nil, status.Error(codes.InvalidArgument, "name: at most 128 characters")
	}
	if req.GetTtlSeconds() < 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl_seconds: negative")
	}
	if len(req.GetLabels()) > limit.Labels {
		return nil, status.Errorf(codes.InvalidArgument, "labels: %d, more than the limit of %d", len(req.GetLabels()), limit.Labels)
	}
	for _, k := range slices.Sorted(maps.Keys(req.GetLabels())) {
		if err := name.Check(k); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "labels: key %q: %v", limitStr(k), err)
		}
		if v := req.GetLabels()[k]; len(v) > limit.LabelValue {
			return nil, status.Errorf(codes.InvalidArgument, "labels[%q]: value longer than %d bytes", k, limit.LabelValue)
		}
	}
	id, bearer, sum := NewToken()
	bearer = JoinTokenPrefix + strings.TrimPrefix(bearer, TokenPrefix)
	t := &gv1.JoinToken{Id: id, Name: req.GetName(), Labels: req.GetLabels(), SecretSha256: sum}
	if c := CallerFrom(ctx); c != nil && c.Token != nil {
		t.CreatedBy = c.Token.GetId()
	}
	if ttl := req.GetTtlSeconds(); ttl > 0 {
		t.ExpiresAt = timestamppb.New(time.Now().Add(time.Duration(ttl) * time.Second))
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_CreateJoinToken{CreateJoinToken: &gv1.CreateJoinTokenCommand{Token: t}}})); err != nil {
		return nil, toStatus(err)
	}
	got, ok := s.d.FSM.JoinToken(id)
	if !ok {
		return nil, status.Errorf(codes.Internal, "join token %s committed but not found", id)
	}
	return &gv1.CreateJoinTokenResponse{Token: JoinTokenInfo(got, nil), Secret: bearer}, nil
}

// ListJoinTokens lists the join tokens and the enrolled agents.
func (s *Server) ListJoinTokens(ctx context.Context, req *gv1.ListJoinTokensRequest) (*gv1.ListJoinTokensResponse, error) {
	enrolled := s.d.FSM.Enrollments()
	resp := &gv1.ListJoinTokensResponse{Enrollments: enrolled}
	for _, t := range s.d.FSM.JoinTokens() {
		resp.Tokens = append(resp.Tokens, JoinTokenInfo(t, enrolled))
	}
	return resp, nil
}

// RevokeJoinToken forgets a join token and revokes the agents enrolled
// with it: NATS refuses their certificates from then on and every
// coordinator disconnects them (coordinator/natsauth.go).
func (s *Server) RevokeJoinToken(ctx context.Context, req *gv1.RevokeJoinTokenRequest) (*gv1.RevokeJoinTokenResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	resp := &gv1.RevokeJoinTokenResponse{}
	for _, e := range s.d.FSM.Enrollments() {
		if e.GetTokenId() == req.GetId() && !e.GetRevoked() {
			resp.Agents = append(resp.Agents, e.GetAgent())
		}
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_RevokeJoinToken{RevokeJoinToken: &gv1.RevokeJoinTokenCommand{Id: req.GetId()}}})); err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// errJoinToken is the one answer to a join token that is malformed,
// unknown, revoked or expired: which of these it was is not told.
var errJoinToken = status.Error(codes.Unauthenticated, "join_token: not a valid join token (create one with `gantry agent-token create`)")

// EnrollAgent gives an agent presenting a join token a certificate of its
// own for the public key it sent, signed with the cluster's CA, and
// records the enrollment: the certificate's serial and the labels the
// token allows.
func (s *Server) EnrollAgent(ctx context.Context, req *gv1.EnrollAgentRequest) (*gv1.EnrollAgentResponse, error) {
	ca := s.d.AgentCA
	if ca == nil {
		return nil, status.Error(codes.FailedPrecondition, "this cluster cannot enroll agents: its coordinators were started without --tls-ca-key (issue agent certificates with `gantry tls cert create --agent` instead)")
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(req.GetJoinToken()), JoinTokenPrefix)
	if !ok {
		return nil, errJoinToken
	}
	id, sum, err := ParseToken(TokenPrefix + rest)
	if err != nil {
		return nil, errJoinToken
	}
	t, ok := s.d.FSM.JoinToken(id)
	if !ok || subtle.ConstantTimeCompare(t.GetSecretSha256(), sum) != 1 {
		return nil, errJoinToken
	}
	if exp := t.GetExpiresAt(); exp != nil && time.Now().After(exp.AsTime()) {
		return nil, errJoinToken
	}
	if err := name.Token(req.GetAgent()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "agent: %v", err)
	}
	if len(req.GetPublicKey()) > maxPublicKey {
		return nil, status.Errorf(codes.InvalidArgument, "public_key: longer than %d bytes", maxPublicKey)
	}
	block, _ := pem.Decode(req.GetPublicKey())
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, status.Error(codes.InvalidArgument, "public_key: want a PEM block PUBLIC KEY (PKIX)")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "public_key: %v", err)
	}
	if e, ok := s.d.FSM.Enrollment(req.GetAgent()); ok && !e.GetRevoked() && e.GetTokenId() != id {
		return nil, status.Errorf(codes.AlreadyExists, "agent: %s is enrolled with another join token (%s); revoke that one first", req.GetAgent(), e.GetTokenId())
	}
	cert, err := ca.IssueFor(pki.Request{Kind: pki.Agent, Name: req.GetAgent()}, pub)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate: %v", err)
	}
	e := &gv1.Enrollment{
		Agent: req.GetAgent(), TokenId: id, Serial: fmt.Sprintf("%x", cert.SerialNumber),
		NotAfter: timestamppb.New(cert.NotAfter),
	}
	if _, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_EnrollAgent{EnrollAgent: &gv1.EnrollAgentCommand{Enrollment: e}}})); err != nil {
		return nil, toStatus(err)
	}
	return &gv1.EnrollAgentResponse{
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		Ca:          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}),
	}, nil
}
