package fsm_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func tokenCmd(sec int, id string, role gv1.Role, bootstrap bool) *gv1.Command {
	sum := sha256.Sum256([]byte("secret-" + id))
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_CreateToken{CreateToken: &gv1.CreateTokenCommand{
		Token: &gv1.Token{Id: id, Name: "n-" + id, Role: role, SecretSha256: sum[:]}, Bootstrap: bootstrap,
	}}}
}

func TestTokensBootstrapOnceCreateRevoke(t *testing.T) {
	h := newHarness(t)
	h.ok(tokenCmd(1, "boot", gv1.Role_ROLE_ADMIN, true))
	// A second bootstrap (another leader, another node's configured token)
	// is refused: tokens exist.
	h.refused(tokenCmd(2, "boot2", gv1.Role_ROLE_ADMIN, true), "", fsm.ErrConflict)
	h.ok(tokenCmd(3, "dev1", gv1.Role_ROLE_DEVELOPER, false))
	h.refused(tokenCmd(4, "dev1", gv1.Role_ROLE_VIEWER, false), "", fsm.ErrConflict)
	h.refused(tokenCmd(4, "x", gv1.Role_ROLE_UNSPECIFIED, false), "", fsm.ErrInvalid)
	h.refused(tokenCmd(4, "../x", gv1.Role_ROLE_VIEWER, false), "", fsm.ErrInvalid)
	bad := tokenCmd(4, "nohash", gv1.Role_ROLE_VIEWER, false)
	bad.GetCreateToken().Token.SecretSha256 = nil
	h.refused(bad, "", fsm.ErrInvalid)

	tok, ok := h.f.Token("dev1")
	if !ok || tok.GetRole() != gv1.Role_ROLE_DEVELOPER || !tok.GetCreatedAt().AsTime().Equal(ts(3).AsTime()) {
		t.Fatalf("token dev1: %v", tok)
	}
	data, err := h.f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if g.TokenCount() != 2 {
		t.Fatalf("tokens after restore: %d, want 2", g.TokenCount())
	}
	h.ok(&gv1.Command{At: ts(5), Cmd: &gv1.Command_RevokeToken{RevokeToken: &gv1.RevokeTokenCommand{Id: "dev1"}}})
	if _, ok := h.f.Token("dev1"); ok {
		t.Fatal("revoked token still there")
	}
	h.refused(&gv1.Command{At: ts(6), Cmd: &gv1.Command_RevokeToken{RevokeToken: &gv1.RevokeTokenCommand{Id: "dev1"}}}, "", fsm.ErrNotFound)
}

func TestAuditRecordsActorAndResultBounded(t *testing.T) {
	h := newHarness(t)
	actor := &gv1.Actor{TokenId: "op1", Name: "ops", Role: gv1.Role_ROLE_OPERATOR, Peer: "127.0.0.1:5555"}
	cmd := tokenCmd(1, "t1", gv1.Role_ROLE_VIEWER, false)
	cmd.Actor, cmd.Method = actor, "CreateToken"
	h.ok(cmd)
	// A refused command is recorded with its error.
	again := tokenCmd(2, "t1", gv1.Role_ROLE_VIEWER, false)
	again.Actor, again.Method = actor, "CreateToken"
	if r := h.one(again); !errors.Is(r.Err, fsm.ErrConflict) {
		t.Fatalf("second create: %v, want a conflict", r.Err)
	}
	// A command without an actor (the coordinators' own) is not recorded.
	h.ok(tokenCmd(3, "t2", gv1.Role_ROLE_VIEWER, false))
	h.ok(&gv1.Command{At: ts(4), Cmd: &gv1.Command_RecordAudit{RecordAudit: &gv1.RecordAuditCommand{Event: &gv1.AuditEvent{
		Actor: &gv1.Actor{Peer: "10.0.0.9:1"}, Method: "DrainAgent", Target: "agent a1", Result: "PermissionDenied: needs operator",
	}}}})

	ev := h.f.Audit(nil, 0)
	if len(ev) != 3 {
		t.Fatalf("audit events: %d, want 3: %v", len(ev), ev)
	}
	if ev[0].GetMethod() != "CreateToken" || ev[0].GetTarget() != "token t1" || ev[0].GetResult() != "ok" || ev[0].GetActor().GetTokenId() != "op1" {
		t.Errorf("first event: %v", ev[0])
	}
	if !strings.Contains(ev[1].GetResult(), "exists") {
		t.Errorf("refused command recorded as %q", ev[1].GetResult())
	}
	if ev[2].GetMethod() != "DrainAgent" || !ev[2].GetAt().AsTime().Equal(ts(4).AsTime()) {
		t.Errorf("recorded event: %v", ev[2])
	}
	if got := h.f.Audit(ts(2), 0); len(got) != 2 {
		t.Errorf("since ts(2): %d events, want 2", len(got))
	}
	if got := h.f.Audit(nil, 1); len(got) != 1 || got[0].GetMethod() != "DrainAgent" {
		t.Errorf("limit 1: %v", got)
	}

	// Bounded: the oldest go first, and a snapshot keeps at most the bound.
	for i := 0; i < limit.AuditEvents+10; i++ {
		h.ok(&gv1.Command{At: ts(10 + i), Cmd: &gv1.Command_RecordAudit{RecordAudit: &gv1.RecordAuditCommand{Event: &gv1.AuditEvent{Method: "X"}}}})
	}
	if n := len(h.f.Audit(nil, 0)); n != limit.AuditEvents {
		t.Fatalf("audit kept %d events, want the bound %d", n, limit.AuditEvents)
	}
	data, err := h.f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if n := len(g.Audit(nil, 0)); n != limit.AuditEvents {
		t.Fatalf("after restore: %d events, want %d", n, limit.AuditEvents)
	}
}
