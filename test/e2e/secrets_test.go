package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// secretForms are the ways a task might print a secret: the value, each of
// its lines, and their base64 and URL-encoded forms.
func secretForms(value string) []string {
	forms := []string{
		value,
		base64.StdEncoding.EncodeToString([]byte(value)),
		base64.RawURLEncoding.EncodeToString([]byte(value)),
		url.QueryEscape(value),
		url.PathEscape(value),
	}
	for _, l := range strings.Split(value, "\n") {
		if len(l) >= 8 {
			forms = append(forms, l, base64.StdEncoding.EncodeToString([]byte(l)))
		}
	}
	return forms
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// leaks returns the forms of the secret found in data.
func leaks(data []byte, forms []string) []string {
	var found []string
	for _, f := range forms {
		if bytes.Contains(data, []byte(f)) {
			found = append(found, f)
		}
	}
	return found
}

const secretPipeline = `name: e2e-secret
tasks:
  - name: leak
    exec:
      shell: |
        echo "plain: $TOKEN"
        printf '%s' "$TOKEN" | base64 -w0; echo
        printf '%s' "$TOKEN" | head -n1 | base64 -w0; echo
        printf '%s' "$TOKEN" | sed ':a;N;$!ba;s/\n/%0A/g'; echo
        echo "agent env: ${GANTRY_E2E_AGENT_ONLY:-none}"
        echo "length: ${#TOKEN}"
      env:
        TOKEN: {secret: regpass}
`

// TestDevSecretsNeverInClear stores a two-line secret, runs a task that
// prints it every way it can, and looks for it everywhere a user or an
// attacker could: the task log, the job as the API shows it, every file of
// the data directory (Raft log, snapshots, NATS store), a saved snapshot
// and the coordinator's own log. It also checks that tasks do not inherit
// the agent's environment, and that a rotated key re-encrypts the secret.
func TestDevSecretsNeverInClear(t *testing.T) {
	skipShort(t)
	t.Setenv("GANTRY_E2E_AGENT_ONLY", "inherited-"+randHex(4))
	d := newDevNode(t)
	d.start(t)
	value := "first-" + randHex(8) + "\nsecond-" + randHex(8)
	forms := secretForms(value)

	mustSecretSet := func() {
		r := gantryStdin(t, d.grpcAddr, value+"\n", "secret", "set", "regpass")
		if r.code != 0 {
			t.Fatalf("secret set: %s", r)
		}
	}
	mustSecretSet()
	list := mustGantry(t, d.grpcAddr, "-o", "json", "secret", "list")
	if !strings.Contains(list.stdout, `"regpass"`) {
		t.Errorf("secret list does not name regpass:\n%s", list.stdout)
	}
	if l := leaks([]byte(list.stdout), forms); len(l) > 0 {
		t.Errorf("secret list shows the value: %q", l)
	}

	// A pipeline naming a secret that does not exist is refused at submit.
	missing := writePipeline(t, strings.ReplaceAll(secretPipeline, "regpass", "nosuchsecret"))
	if r := gantry(t, d.grpcAddr, "submit", "-f", missing); r.code == 0 || !strings.Contains(r.stderr, "nosuchsecret") {
		t.Errorf("submit with a missing secret: want a refusal naming it, got %s", r)
	}

	file := writePipeline(t, secretPipeline)
	sub := gantry(t, d.grpcAddr, "submit", "-f", file, "--wait")
	if sub.code != 0 {
		t.Fatalf("secret pipeline: %s", sub)
	}
	id := submittedID(t, sub)
	logs := mustGantry(t, d.grpcAddr, "logs", id, "leak")
	if l := leaks([]byte(logs.stdout+sub.stdout), forms); len(l) > 0 {
		t.Errorf("task log shows the secret as %q:\n%s", l, logs.stdout)
	}
	if !strings.Contains(logs.stdout, "***") || !hasLine(logs.stdout, "length: "+strconv.Itoa(len(value))) {
		t.Errorf("task log: want masked output and the full value in the task's env:\n%s", logs.stdout)
	}
	if !hasLine(logs.stdout, "agent env: none") {
		t.Errorf("task inherited the agent's environment:\n%s", logs.stdout)
	}
	job := mustGantry(t, d.grpcAddr, "-o", "json", "job", id)
	if l := leaks([]byte(job.stdout), forms); len(l) > 0 {
		t.Errorf("gantry job -o json shows the secret as %q", l)
	}
	if !strings.Contains(job.stdout, "regpass") {
		t.Errorf("gantry job -o json does not name the secret the task uses:\n%s", job.stdout)
	}

	snap := filepath.Join(t.TempDir(), "state.snap")
	mustGantry(t, d.grpcAddr, "snapshot", "save", snap)
	if st, err := os.Stat(snap); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("saved snapshot: mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(snap)
	if l := leaks(data, forms); len(l) > 0 {
		t.Errorf("saved snapshot holds the secret as %q", l)
	}

	// Rotate the key: the leader re-encrypts the secret under the new one,
	// and tasks still get the value.
	before := secretKey(t, d.grpcAddr, "regpass")
	mustGantry(t, d.grpcAddr, "secret", "keygen", "--rotate", filepath.Join(d.dataDir, "secret-keys"))
	waitFor(t, 60*time.Second, func() (bool, string) {
		k := secretKey(t, d.grpcAddr, "regpass")
		return k != before, "secret still sealed with " + k
	})
	again := gantry(t, d.grpcAddr, "submit", "-f", file, "--wait")
	if again.code != 0 || !strings.Contains(again.stdout, "length: "+strconv.Itoa(len(value))) {
		t.Fatalf("secret pipeline after key rotation: %s", again)
	}

	// Everything on disk, once the process is gone: Raft log, snapshots,
	// the NATS store with the task logs, the agent's spool.
	if !d.proc.stop(t, 30*time.Second) {
		t.Fatal("dev did not stop")
	}
	err := filepath.WalkDir(d.dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if l := leaks(b, forms); len(l) > 0 {
			t.Errorf("%s holds the secret as %q", path, l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(d.proc.logPath)
	if l := leaks(out, forms); len(l) > 0 {
		t.Errorf("coordinator and agent log holds the secret as %q", l)
	}
}

func secretKey(t *testing.T, addr, name string) string {
	t.Helper()
	resp := &gv1.ListSecretsResponse{}
	if err := decodeJSON(gantry(t, addr, "-o", "json", "secret", "list"), resp); err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.GetSecrets() {
		if s.GetName() == name {
			return s.GetKeyId()
		}
	}
	t.Fatalf("secret %s not listed", name)
	return ""
}
