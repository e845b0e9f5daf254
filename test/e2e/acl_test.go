package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestDevTokensRolesAndAudit drives tokens as a user would on gantry dev:
// the CLI finds the admin token dev bootstrapped with, an operator-made
// viewer token reads but cannot submit, a revoked token stops working, and
// `gantry audit` shows who did what, including the refusal.
func TestDevTokensRolesAndAudit(t *testing.T) {
	skipShort(t)
	d := startDev(t)
	who := mustGantry(t, d.grpcAddr, "token", "whoami")
	if !strings.Contains(who.stdout, "role admin") {
		t.Fatalf("whoami with the token gantry dev wrote: %s", who)
	}

	created := mustGantry(t, d.grpcAddr, "token", "create", "vera", "--role", "viewer")
	lines := strings.Split(strings.TrimSpace(created.stdout), "\n")
	viewer := lines[len(lines)-1]
	if !strings.HasPrefix(viewer, "gantry_") {
		t.Fatalf("token create did not print the token last: %s", created)
	}
	if r := gantry(t, d.grpcAddr, "--token", viewer, "jobs"); r.code != 0 {
		t.Fatalf("a viewer lists jobs: %s", r)
	}
	pipeline := writePipeline(t, helloPipeline)
	r := gantry(t, d.grpcAddr, "--token", viewer, "submit", "-f", pipeline)
	if r.code == 0 || !strings.Contains(r.stderr, "needs role developer or above") || !strings.Contains(r.stderr, "has role viewer") {
		t.Fatalf("a viewer submits: want a refusal naming the roles, got %s", r)
	}
	r = gantry(t, d.grpcAddr, "--token", "gantry_bogus_"+strings.Repeat("x", 32), "jobs")
	if r.code == 0 || !strings.Contains(r.stderr, "unknown or revoked") {
		t.Fatalf("an unknown token: want a refusal, got %s", r)
	}

	list := mustGantry(t, d.grpcAddr, "token", "list")
	id := strings.SplitN(viewer, "_", 3)[1]
	if !strings.Contains(list.stdout, id) || strings.Contains(list.stdout, viewer) {
		t.Fatalf("token list: want the id %s and never the secret:\n%s", id, list.stdout)
	}
	mustGantry(t, d.grpcAddr, "token", "revoke", id)
	if r := gantry(t, d.grpcAddr, "--token", viewer, "jobs"); r.code == 0 || !strings.Contains(r.stderr, "unknown or revoked") {
		t.Fatalf("a revoked token: want a refusal, got %s", r)
	}

	waitFor(t, 15*time.Second, func() (bool, string) {
		a := gantry(t, d.grpcAddr, "audit")
		if a.code != 0 {
			return false, a.String()
		}
		return hasAll(a.stdout, "CreateToken", "RevokeToken", "PermissionDenied", "vera"), a.stdout
	})
}

func hasAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
