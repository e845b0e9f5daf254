package fsm_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func joinTokenCmd(sec int, id string, labels map[string]string) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_CreateJoinToken{CreateJoinToken: &gv1.CreateJoinTokenCommand{
		Token: &gv1.JoinToken{Id: id, SecretSha256: make([]byte, 32), Labels: labels},
	}}}
}

func enrollCmd(sec int, agent, token, serial string, notAfter time.Time) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_EnrollAgent{EnrollAgent: &gv1.EnrollAgentCommand{
		Enrollment: &gv1.Enrollment{Agent: agent, TokenId: token, Serial: serial, NotAfter: timestamppb.New(notAfter)},
	}}}
}

func TestEnrollAndRevoke(t *testing.T) {
	h := newHarness(t)
	h.ok(joinTokenCmd(1, "tok1", map[string]string{"pool": "ci"}))
	h.refused(joinTokenCmd(2, "tok1", nil), "", fsm.ErrConflict)
	h.refused(enrollCmd(2, "a1", "nope", "01", t0.Add(time.Hour)), "", fsm.ErrNotFound)
	h.refused(enrollCmd(2, "a1", "tok1", "", t0.Add(time.Hour)), "", fsm.ErrInvalid)
	h.ok(enrollCmd(3, "a1", "tok1", "01", t0.Add(time.Hour)))
	e, ok := h.f.Enrollment("a1")
	if !ok || e.GetLabels()["pool"] != "ci" || e.GetRevoked() {
		t.Fatalf("enrollment %v: the token's labels go with the agent", e)
	}
	// Enrolling again (a new key) replaces the certificate.
	h.ok(enrollCmd(4, "a1", "tok1", "02", t0.Add(time.Hour)))
	if e, _ = h.f.Enrollment("a1"); e.GetSerial() != "02" {
		t.Fatalf("re-enrolled serial %q", e.GetSerial())
	}
	h.ok(&gv1.Command{At: ts(5), Cmd: &gv1.Command_RevokeJoinToken{RevokeJoinToken: &gv1.RevokeJoinTokenCommand{Id: "tok1"}}})
	if _, ok := h.f.JoinToken("tok1"); ok {
		t.Fatal("revoked join token kept")
	}
	if e, _ = h.f.Enrollment("a1"); !e.GetRevoked() {
		t.Fatal("agent of a revoked token not revoked")
	}
	if got := h.f.RevokedEnrollments(); len(got) != 1 || got[0] != "a1" {
		t.Fatalf("revoked %v", got)
	}
	// The revoked enrollment outlives the token until its certificate
	// expires, then goes with the next change.
	h.ok(joinTokenCmd(7200, "tok2", nil))
	h.ok(enrollCmd(7201, "a2", "tok2", "03", t0.Add(4*time.Hour)))
	if _, ok := h.f.Enrollment("a1"); ok {
		t.Fatal("revoked enrollment kept after its certificate expired")
	}
	snap, err := fsm.Decode(snapshotBytes(t, h.f))
	if err != nil || len(snap.GetJoinTokens()) != 1 || len(snap.GetEnrollments()) != 1 {
		t.Fatalf("snapshot: %v %v", snap.GetJoinTokens(), err)
	}
}
