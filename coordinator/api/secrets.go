package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/coordinator/spec"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// UseKeyring sets the keyring SetSecret seals values with.
func (s *Server) UseKeyring(k *secret.Keyring) { s.keyring.Store(k) }

// SetSecret stores a secret, encrypted with the coordinators' keyring by
// the node that receives it: a follower forwards the sealed value (see
// leaderOnly), so the value never crosses NATS in clear. It never leaves
// the state in clear except in the assignment of a task that refers to it.
func (s *Server) SetSecret(ctx context.Context, req *gv1.SetSecretRequest) (*gv1.SetSecretResponse, error) {
	sealed, err := s.sealSecret(req)
	if err != nil {
		return nil, err
	}
	return s.setSealedSecret(ctx, sealed)
}

// sealSecret checks a SetSecret request and seals its value with this
// node's keyring.
func (s *Server) sealSecret(req *gv1.SetSecretRequest) (*gv1.SetSecretCommand, error) {
	if err := name.Token(req.GetName()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	switch n := len(req.GetValue()); {
	case n == 0:
		return nil, status.Error(codes.InvalidArgument, "value: empty")
	case n > limit.SecretValue:
		return nil, status.Errorf(codes.InvalidArgument, "value: %d bytes, more than the limit of %d", n, limit.SecretValue)
	}
	if _, err := secret.ParseScope(req.GetScope()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "scope: %v", err)
	}
	keyID, ct, err := s.keyring.Load().Seal(req.GetName(), req.GetValue())
	if errors.Is(err, secret.ErrNoKey) {
		return nil, status.Error(codes.FailedPrecondition, "no secret key on this coordinator: start coordinators with --secret-keys FILE (see `gantry secret keygen`)")
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "seal secret: %v", err)
	}
	return &gv1.SetSecretCommand{Secret: &gv1.Secret{Name: req.GetName(), Scope: req.GetScope(), KeyId: keyID, Ciphertext: ct}}, nil
}

// setSealedSecret commits a secret sealed by this node or by a follower
// (forwarded as sealedSecret). The leader checks that the value opens
// with its own keyring, so a follower with another keyring cannot store a
// secret the leader could not hand to tasks.
func (s *Server) setSealedSecret(ctx context.Context, c *gv1.SetSecretCommand) (*gv1.SetSecretResponse, error) {
	sec := c.GetSecret()
	if err := name.Token(sec.GetName()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	if _, err := secret.ParseScope(sec.GetScope()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "scope: %v", err)
	}
	if _, err := s.keyring.Load().Open(sec.GetName(), sec.GetKeyId(), sec.GetCiphertext()); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "the leader cannot open the sealed value (%v): every coordinator needs the same --secret-keys file", err)
	}
	_, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_SetSecret{SetSecret: &gv1.SetSecretCommand{
		Secret: &gv1.Secret{Name: sec.GetName(), Scope: sec.GetScope(), KeyId: sec.GetKeyId(), Ciphertext: sec.GetCiphertext()},
	}}}))
	if err != nil {
		return nil, toStatus(err)
	}
	got, ok := s.d.FSM.Secret(sec.GetName())
	if !ok {
		return nil, status.Errorf(codes.Internal, "secret %s committed but not found", sec.GetName())
	}
	return &gv1.SetSecretResponse{Secret: SecretInfo(got)}, nil
}

// ListSecrets names the secrets; values are never returned.
func (s *Server) ListSecrets(ctx context.Context, req *gv1.ListSecretsRequest) (*gv1.ListSecretsResponse, error) {
	resp := &gv1.ListSecretsResponse{}
	for _, sec := range s.d.FSM.Secrets() {
		resp.Secrets = append(resp.Secrets, SecretInfo(sec))
	}
	return resp, nil
}

// DeleteSecret forgets a secret. Tasks already assigned keep the value they
// were given; later assignments referring to it fail.
func (s *Server) DeleteSecret(ctx context.Context, req *gv1.DeleteSecretRequest) (*gv1.DeleteSecretResponse, error) {
	if err := name.Token(req.GetName()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	_, err := s.d.Proposer.ProposeOne(ctx, s.command(ctx, &gv1.Command{Cmd: &gv1.Command_DeleteSecret{DeleteSecret: &gv1.DeleteSecretCommand{Name: req.GetName()}}}))
	if err != nil {
		return nil, toStatus(err)
	}
	return &gv1.DeleteSecretResponse{}, nil
}

// SecretInfo describes a secret without its value.
func SecretInfo(sec *gv1.Secret) *gv1.SecretInfo {
	return &gv1.SecretInfo{
		Name: sec.GetName(), Scope: sec.GetScope(), KeyId: sec.GetKeyId(),
		CreatedAt: sec.GetCreatedAt(), UpdatedAt: sec.GetUpdatedAt(), Version: sec.GetVersion(),
	}
}

// checkSecrets refuses a pipeline that refers to a secret that does not
// exist, naming the task and the secret, so the mistake shows at submit and
// not as a failed task later.
func (s *Server) checkSecrets(js *gv1.JobSpec) error {
	for i, t := range js.GetTasks() {
		for _, n := range spec.SecretRefs(t) {
			if _, ok := s.d.FSM.Secret(n); !ok {
				return status.Errorf(codes.InvalidArgument, "tasks[%d] (%s): secret %q does not exist (create it with `gantry secret set %s`)", i, t.GetName(), n, n)
			}
		}
	}
	return nil
}
