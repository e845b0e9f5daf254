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

// API tokens are kept hashed (Token.secret_sha256): neither the log nor a
// snapshot holds a usable token. Expiry is checked by the API when a token
// is presented, against its own clock; Apply reads none.

func (s *state) createToken(index uint64, at *timestamppb.Timestamp, c *gv1.CreateTokenCommand) Result {
	in := c.GetToken()
	if err := name.Token(in.GetId()); err != nil {
		return Result{Err: fmt.Errorf("token id: %v: %w", err, ErrInvalid)}
	}
	if in.GetRole() <= gv1.Role_ROLE_UNSPECIFIED || in.GetRole() > gv1.Role_ROLE_ADMIN {
		return Result{Err: fmt.Errorf("token %s: role %v: %w", in.GetId(), in.GetRole(), ErrInvalid)}
	}
	if len(in.GetSecretSha256()) != 32 {
		return Result{Err: fmt.Errorf("token %s: no SHA-256 of its secret: %w", in.GetId(), ErrInvalid)}
	}
	if len(in.GetName()) > limit.AuditField {
		return Result{Err: fmt.Errorf("token %s: name longer than %d: %w", in.GetId(), limit.AuditField, ErrInvalid)}
	}
	if c.GetBootstrap() && len(s.tokens) > 0 {
		return Result{Err: fmt.Errorf("ACL already bootstrapped: tokens exist: %w", ErrConflict)}
	}
	if _, ok := s.tokens[in.GetId()]; ok {
		return Result{Err: fmt.Errorf("token %s exists: %w", in.GetId(), ErrConflict)}
	}
	if len(s.tokens) >= limit.Tokens {
		return Result{Err: fmt.Errorf("already %d tokens, the most kept: %w", limit.Tokens, ErrConflict)}
	}
	t := proto.Clone(in).(*gv1.Token)
	t.CreatedAt, t.Version = at, index
	s.tokens[t.Id] = t
	return Result{}
}

func (s *state) revokeToken(c *gv1.RevokeTokenCommand) Result {
	if _, ok := s.tokens[c.GetId()]; !ok {
		return Result{Err: fmt.Errorf("token %q: %w", c.GetId(), ErrNotFound)}
	}
	delete(s.tokens, c.GetId())
	return Result{}
}

// record appends an audit event, dropping the oldest beyond
// limit.AuditEvents.
func (s *state) record(index uint64, e *gv1.AuditEvent) {
	e.Index = index
	for _, f := range []*string{&e.Method, &e.Target, &e.Result} {
		*f = limit.Clip(*f, limit.AuditField)
	}
	if a := e.GetActor(); a != nil {
		a.Name = limit.Clip(a.Name, limit.AuditField)
		a.Peer = limit.Clip(a.Peer, limit.AuditField)
	}
	s.audit = append(s.audit, e)
	if len(s.audit) > 2*limit.AuditEvents {
		// Drop in bulk so appending stays amortized O(1).
		s.audit = append([]*gv1.AuditEvent(nil), s.audit[len(s.audit)-limit.AuditEvents:]...)
	}
}

// audited records the API call that proposed c with its result.
func (s *state) audited(index uint64, c *gv1.Command, res Result) {
	if c.GetActor() == nil {
		return
	}
	result := "ok"
	if res.Err != nil {
		result = res.Err.Error()
	}
	s.record(index, &gv1.AuditEvent{At: c.GetAt(), Actor: c.GetActor(), Method: c.GetMethod(), Target: target(c, res), Result: result})
}

// target names what a command acts on, for the audit log.
func target(c *gv1.Command, res Result) string {
	switch x := c.Cmd.(type) {
	case *gv1.Command_SubmitJob:
		if res.JobID != "" {
			return "job " + res.JobID
		}
		return "job " + x.SubmitJob.GetJob().GetId()
	case *gv1.Command_CancelJob:
		return "job " + x.CancelJob.GetJobId()
	case *gv1.Command_CreateApp:
		return "app " + x.CreateApp.GetSpec().GetName()
	case *gv1.Command_DeleteApp:
		return "app " + x.DeleteApp.GetName()
	case *gv1.Command_PinApp:
		return "app " + x.PinApp.GetName()
	case *gv1.Command_SetSecret:
		return "secret " + x.SetSecret.GetSecret().GetName()
	case *gv1.Command_CreateProject:
		return "project " + x.CreateProject.GetProject().GetSpec().GetName()
	case *gv1.Command_DeleteProject:
		return "project " + x.DeleteProject.GetName()
	case *gv1.Command_TriggerBuild:
		return fmt.Sprintf("project %s build %d", x.TriggerBuild.GetProject(), res.Build)
	case *gv1.Command_DecideTask:
		return "job " + x.DecideTask.GetJobId() + " task " + x.DecideTask.GetTask()
	case *gv1.Command_ApproveBuild:
		return fmt.Sprintf("project %s build %d", x.ApproveBuild.GetProject(), x.ApproveBuild.GetNumber())
	case *gv1.Command_DeleteSecret:
		return "secret " + x.DeleteSecret.GetName()
	case *gv1.Command_CreateToken:
		return "token " + x.CreateToken.GetToken().GetId()
	case *gv1.Command_RevokeToken:
		return "token " + x.RevokeToken.GetId()
	case *gv1.Command_CreateJoinToken:
		return "join token " + x.CreateJoinToken.GetToken().GetId()
	case *gv1.Command_RevokeJoinToken:
		return "join token " + x.RevokeJoinToken.GetId()
	case *gv1.Command_EnrollAgent:
		return "agent " + x.EnrollAgent.GetEnrollment().GetAgent()
	}
	return ""
}

// Token returns a copy of one token (hashed).
func (f *FSM) Token(id string) (*gv1.Token, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.tokens[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(t).(*gv1.Token), true
}

// Tokens returns copies of every token, by id.
func (f *FSM) Tokens() []*gv1.Token {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.sortedTokens(true)
}

// TokenCount is how many tokens exist (0: the ACL is not bootstrapped).
func (f *FSM) TokenCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.state.tokens)
}

func (s *state) sortedTokens(clone bool) []*gv1.Token {
	out := make([]*gv1.Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		if clone {
			t = proto.Clone(t).(*gv1.Token)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// Audit returns copies of the kept audit events at or after since (nil:
// all), at most limit of the newest, oldest first.
func (f *FSM) Audit(since *timestamppb.Timestamp, n int) []*gv1.AuditEvent {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ev := f.state.audit
	if len(ev) > limit.AuditEvents {
		ev = ev[len(ev)-limit.AuditEvents:]
	}
	if since != nil {
		i := sort.Search(len(ev), func(i int) bool { return !ev[i].GetAt().AsTime().Before(since.AsTime()) })
		ev = ev[i:]
	}
	if n > 0 && len(ev) > n {
		ev = ev[len(ev)-n:]
	}
	out := make([]*gv1.AuditEvent, len(ev))
	for i, e := range ev {
		out[i] = proto.Clone(e).(*gv1.AuditEvent)
	}
	return out
}
