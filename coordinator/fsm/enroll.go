package fsm

import (
	"fmt"
	"maps"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Join tokens are kept hashed like API tokens; the API checks their
// expiry when one is presented. An enrollment records the certificate an
// agent received: NATS refuses any other certificate for that agent's name
// and every certificate of a revoked enrollment.

func (s *state) createJoinToken(index uint64, at *timestamppb.Timestamp, c *gv1.CreateJoinTokenCommand) Result {
	in := c.GetToken()
	if err := name.Token(in.GetId()); err != nil {
		return Result{Err: fmt.Errorf("join token id: %v: %w", err, ErrInvalid)}
	}
	if len(in.GetSecretSha256()) != 32 {
		return Result{Err: fmt.Errorf("join token %s: no SHA-256 of its secret: %w", in.GetId(), ErrInvalid)}
	}
	if len(in.GetName()) > limit.AuditField || len(in.GetLabels()) > limit.Labels {
		return Result{Err: fmt.Errorf("join token %s: name or labels too long: %w", in.GetId(), ErrInvalid)}
	}
	if _, ok := s.joinTokens[in.GetId()]; ok {
		return Result{Err: fmt.Errorf("join token %s exists: %w", in.GetId(), ErrConflict)}
	}
	if len(s.joinTokens) >= limit.Tokens {
		return Result{Err: fmt.Errorf("already %d join tokens, the most kept: %w", limit.Tokens, ErrConflict)}
	}
	t := proto.Clone(in).(*gv1.JoinToken)
	t.CreatedAt, t.Version = at, index
	s.joinTokens[t.Id] = t
	return Result{}
}

func (s *state) revokeJoinToken(at *timestamppb.Timestamp, c *gv1.RevokeJoinTokenCommand) Result {
	if _, ok := s.joinTokens[c.GetId()]; !ok {
		return Result{Err: fmt.Errorf("join token %q: %w", c.GetId(), ErrNotFound)}
	}
	delete(s.joinTokens, c.GetId())
	for _, e := range s.enrollments {
		if e.GetTokenId() == c.GetId() {
			e.Revoked = true
		}
	}
	s.forgetExpiredEnrollments(at)
	return Result{}
}

func (s *state) enrollAgent(at *timestamppb.Timestamp, c *gv1.EnrollAgentCommand) Result {
	in := c.GetEnrollment()
	if err := name.Token(in.GetAgent()); err != nil {
		return Result{Err: fmt.Errorf("enrollment: agent name: %v: %w", err, ErrInvalid)}
	}
	if in.GetSerial() == "" || in.GetNotAfter() == nil {
		return Result{Err: fmt.Errorf("enrollment of %s: no certificate serial or expiry: %w", in.GetAgent(), ErrInvalid)}
	}
	if _, ok := s.joinTokens[in.GetTokenId()]; !ok {
		return Result{Err: fmt.Errorf("enrollment of %s: join token %q: %w", in.GetAgent(), in.GetTokenId(), ErrNotFound)}
	}
	s.forgetExpiredEnrollments(at)
	if _, ok := s.enrollments[in.GetAgent()]; !ok && len(s.enrollments) >= limit.Agents {
		return Result{Err: fmt.Errorf("already %d enrolled agents, the most kept: %w", limit.Agents, ErrConflict)}
	}
	e := proto.Clone(in).(*gv1.Enrollment)
	e.EnrolledAt, e.Revoked = at, false
	// The token's bounds, as they are now, go with the agent.
	e.Labels = maps.Clone(s.joinTokens[in.GetTokenId()].GetLabels())
	s.enrollments[e.Agent] = e
	return Result{}
}

// forgetExpiredEnrollments drops revoked enrollments whose certificate has
// expired by at: nothing can present it any more.
func (s *state) forgetExpiredEnrollments(at *timestamppb.Timestamp) {
	for n, e := range s.enrollments {
		if e.GetRevoked() && e.GetNotAfter().AsTime().Before(at.AsTime()) {
			delete(s.enrollments, n)
		}
	}
}

// JoinToken returns a copy of one join token (hashed).
func (f *FSM) JoinToken(id string) (*gv1.JoinToken, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.joinTokens[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(t).(*gv1.JoinToken), true
}

// JoinTokens returns copies of every join token, by id.
func (f *FSM) JoinTokens() []*gv1.JoinToken {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.sortedJoinTokens(true)
}

// Enrollment returns a copy of an agent's enrollment.
func (f *FSM) Enrollment(agent string) (*gv1.Enrollment, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.state.enrollments[agent]
	if !ok {
		return nil, false
	}
	return proto.Clone(e).(*gv1.Enrollment), true
}

// Enrollments returns copies of every enrollment, by agent.
func (f *FSM) Enrollments() []*gv1.Enrollment {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.sortedEnrollments(true)
}

func (s *state) sortedJoinTokens(clone bool) []*gv1.JoinToken {
	out := make([]*gv1.JoinToken, 0, len(s.joinTokens))
	for _, t := range s.joinTokens {
		if clone {
			t = proto.Clone(t).(*gv1.JoinToken)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

func (s *state) sortedEnrollments(clone bool) []*gv1.Enrollment {
	out := make([]*gv1.Enrollment, 0, len(s.enrollments))
	for _, e := range s.enrollments {
		if clone {
			e = proto.Clone(e).(*gv1.Enrollment)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Agent < out[j].Agent })
	return out
}

// RevokedEnrollments names the agents whose enrollment is revoked.
func (f *FSM) RevokedEnrollments() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []string
	for n, e := range f.state.enrollments {
		if e.GetRevoked() {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
