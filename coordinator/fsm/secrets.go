package fsm

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Secrets are kept as the leader encrypted them (package secret): the state
// holds ciphertext only, so neither the Raft log nor a snapshot has a
// value in clear.

func (s *state) setSecret(index uint64, at *timestamppb.Timestamp, c *gv1.SetSecretCommand) Result {
	in := c.GetSecret()
	if err := name.Token(in.GetName()); err != nil {
		return Result{Err: fmt.Errorf("secret name: %v: %w", err, ErrInvalid)}
	}
	if len(in.GetCiphertext()) == 0 || in.GetKeyId() == "" {
		return Result{Err: fmt.Errorf("secret %q: no ciphertext or key id: %w", in.GetName(), ErrInvalid)}
	}
	if len(in.GetCiphertext()) > limit.SecretValue+64 {
		return Result{Err: fmt.Errorf("secret %q: larger than %d bytes: %w", in.GetName(), limit.SecretValue, ErrInvalid)}
	}
	old, ok := s.secrets[in.GetName()]
	if !ok && len(s.secrets) >= limit.Secrets {
		return Result{Err: fmt.Errorf("secret %q: already %d secrets, the most kept: %w", in.GetName(), limit.Secrets, ErrConflict)}
	}
	sec := &gv1.Secret{
		Name:       in.GetName(),
		Scope:      in.GetScope(),
		KeyId:      in.GetKeyId(),
		Ciphertext: in.GetCiphertext(),
		CreatedAt:  at,
		UpdatedAt:  at,
		Version:    index,
	}
	if ok {
		sec.CreatedAt = old.GetCreatedAt()
	}
	s.secrets[sec.Name] = sec
	return Result{}
}

func (s *state) deleteSecret(c *gv1.DeleteSecretCommand) Result {
	if _, ok := s.secrets[c.GetName()]; !ok {
		return Result{Err: fmt.Errorf("secret %q: %w", c.GetName(), ErrNotFound)}
	}
	delete(s.secrets, c.GetName())
	return Result{}
}

// Secret returns a copy of one secret (encrypted).
func (f *FSM) Secret(name string) (*gv1.Secret, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	sec, ok := f.state.secrets[name]
	if !ok {
		return nil, false
	}
	return proto.Clone(sec).(*gv1.Secret), true
}

// Secrets returns copies of every secret (encrypted), by name.
func (f *FSM) Secrets() []*gv1.Secret {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.sortedSecrets(true)
}

// SecretsNotSealedWith returns copies of the secrets sealed with another
// key than keyID: what the leader re-encrypts after a key rotation. Only
// those are copied.
func (f *FSM) SecretsNotSealedWith(keyID string) []*gv1.Secret {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*gv1.Secret
	for _, sec := range f.state.secrets {
		if sec.GetKeyId() != keyID {
			out = append(out, proto.Clone(sec).(*gv1.Secret))
		}
	}
	return out
}

// sortedSecrets lists the secrets by name, copied or not.
func (s *state) sortedSecrets(clone bool) []*gv1.Secret {
	names := make([]string, 0, len(s.secrets))
	for n := range s.secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*gv1.Secret, 0, len(names))
	for _, n := range names {
		sec := s.secrets[n]
		if clone {
			sec = proto.Clone(sec).(*gv1.Secret)
		}
		out = append(out, sec)
	}
	return out
}
