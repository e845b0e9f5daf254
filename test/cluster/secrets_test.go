package cluster

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/secret"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestSecretThroughFollower sets a secret through a follower of a 3-node
// cluster that shares one keyring while a NATS client records every message
// of the cluster: the value never crosses NATS in clear (the follower seals
// it and forwards ciphertext), every node lists it, and a task on an agent
// gets the value.
func TestSecretThroughFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	keys := filepath.Join(t.TempDir(), "secret-keys")
	if _, err := secret.Create(keys, false); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, func(cfg *coordinator.Config) { cfg.SecretKeys = keys })
	c.StartAgent("a1", 2, nil)
	lead := c.Leader()
	f := (lead + 1) % 3

	nc, err := nats.Connect(c.NATSURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var seen [][]byte
	sub, err := nc.Subscribe("gantry.>", func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, append([]byte(m.Subject+" "), m.Data...))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	value := []byte("follower-sealed-7f3a9c")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.Client(f).SetSecret(ctx, &gv1.SetSecretRequest{Name: "token", Value: value})
	if err != nil {
		t.Fatalf("set secret through the follower: %v", err)
	}
	if resp.GetSecret().GetName() != "token" || resp.GetSecret().GetKeyId() == "" {
		t.Fatalf("set secret answer: %v", resp.GetSecret())
	}
	nc.Flush()
	sub.Unsubscribe()
	mu.Lock()
	for _, m := range seen {
		if bytes.Contains(m, value) {
			t.Errorf("the secret's value crossed NATS in clear: %.80q", m)
		}
	}
	mu.Unlock()
	for i := range 3 {
		waitFor(t, 10*time.Second, "every node to list the secret", func() bool {
			l, err := c.Client(i).ListSecrets(ctx, &gv1.ListSecretsRequest{})
			return err == nil && len(l.GetSecrets()) == 1 && l.GetSecrets()[0].GetName() == "token"
		})
	}

	task := shellTask("use", `test "$TOKEN" = follower-sealed-7f3a9c`)
	task.GetExec().SecretEnv = map[string]string{"TOKEN": "token"}
	job, err := c.Client(f).SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("uses-secret", task)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the job using the secret to succeed", func() bool {
		j, ok := c.Job(lead, job.GetJob().GetId())
		return ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED
	})

	// Rotate the key in the shared file: the leader re-encrypts, and after
	// the leader dies the next one (which reloaded the file as a follower)
	// still opens the secret for a task.
	old := resp.GetSecret().GetKeyId()
	k2, err := secret.Create(keys, true)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secret re-encrypted under the new key", func() bool {
		l, err := c.Client(lead).ListSecrets(ctx, &gv1.ListSecretsRequest{})
		return err == nil && len(l.GetSecrets()) == 1 && l.GetSecrets()[0].GetKeyId() == k2.Primary() && k2.Primary() != old
	})
	c.Stop(lead)
	next := c.Leader()
	job, err = c.Client(next).SubmitJob(ctx, &gv1.SubmitJobRequest{Spec: shellSpec("uses-secret-after-rotation", task)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the job using the rotated secret to succeed on the next leader", func() bool {
		j, ok := c.Job(next, job.GetJob().GetId())
		return ok && j.GetState() == gv1.JobState_JOB_STATE_SUCCEEDED
	})
}
