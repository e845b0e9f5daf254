package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// testCluster opens the cluster of GANTRY_TEST_KUBECONFIG, or skips.
func testCluster(t testing.TB) *Cluster {
	t.Helper()
	path := os.Getenv("GANTRY_TEST_KUBECONFIG")
	if path == "" {
		t.Skip("GANTRY_TEST_KUBECONFIG is not set: no Kubernetes API server to test against (see scripts/testenv.sh up kube)")
	}
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	c, err := Open("test", path, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testNamespace returns a fresh namespace name, deleted at the end.
func testNamespace(t testing.TB, c *Cluster) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "gantry-test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bg := metav1.DeletePropagationBackground
		_ = c.core.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	return ns
}

// lines is a Sink that keeps what it is given and logs it.
type lines struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) Write(_ gv1.LogStream, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	l.t.Logf("deploy: %s", strings.TrimRight(string(p), "\n"))
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, total time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", total, why)
		}
		time.Sleep(20 * time.Millisecond) // polling period, not synchronization
	}
}

// unreachableKubeconfig writes a kubeconfig pointing at a port nothing
// listens on.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://%s"}}]
users: [{name: u, user: {}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, addr)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
