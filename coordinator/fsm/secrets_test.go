package fsm_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func setSecretCmd(sec int, name, scope, key string, ct []byte) *gv1.Command {
	return &gv1.Command{At: ts(sec), Cmd: &gv1.Command_SetSecret{SetSecret: &gv1.SetSecretCommand{
		Secret: &gv1.Secret{Name: name, Scope: scope, KeyId: key, Ciphertext: ct},
	}}}
}

func TestSecretsSetReplaceDelete(t *testing.T) {
	h := newHarness(t)
	h.ok(setSecretCmd(1, "db", "", "k1", []byte("sealed-1")))
	h.ok(setSecretCmd(5, "db", "job:deploy", "k2", []byte("sealed-2")))
	sec, ok := h.f.Secret("db")
	if !ok || sec.GetKeyId() != "k2" || string(sec.GetCiphertext()) != "sealed-2" || sec.GetScope() != "job:deploy" {
		t.Fatalf("secret after replace: %v", sec)
	}
	if !sec.GetCreatedAt().AsTime().Equal(ts(1).AsTime()) || !sec.GetUpdatedAt().AsTime().Equal(ts(5).AsTime()) || sec.GetVersion() != 2 {
		t.Errorf("times/version after replace: created %v updated %v version %d", sec.GetCreatedAt().AsTime(), sec.GetUpdatedAt().AsTime(), sec.GetVersion())
	}

	// Survives a snapshot.
	data, err := h.f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got, ok := g.Secret("db"); !ok || string(got.GetCiphertext()) != "sealed-2" {
		t.Fatalf("secret after restore: %v", got)
	}

	h.ok(&gv1.Command{At: ts(6), Cmd: &gv1.Command_DeleteSecret{DeleteSecret: &gv1.DeleteSecretCommand{Name: "db"}}})
	if _, ok := h.f.Secret("db"); ok || len(h.f.Secrets()) != 0 {
		t.Fatal("secret still there after delete")
	}
	h.refused(&gv1.Command{At: ts(7), Cmd: &gv1.Command_DeleteSecret{DeleteSecret: &gv1.DeleteSecretCommand{Name: "db"}}}, "", fsm.ErrNotFound)
}

func TestSecretsRefuseMalformed(t *testing.T) {
	h := newHarness(t)
	h.refused(setSecretCmd(1, "../etc", "", "k1", []byte("x")), "", fsm.ErrInvalid)
	h.refused(setSecretCmd(1, "ok", "", "", []byte("x")), "", fsm.ErrInvalid)
	h.refused(setSecretCmd(1, "ok", "", "k1", nil), "", fsm.ErrInvalid)
	h.refused(setSecretCmd(1, "ok", "", "k1", make([]byte, 1<<20)), "", fsm.ErrInvalid)
}
