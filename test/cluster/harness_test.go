// Package cluster tests real 3-node coordinator clusters in one process:
// real Raft over TCP, real embedded NATS servers clustered by routes, real
// agents running real processes (package testcluster starts them).
package cluster

import (
	"fmt"
	"testing"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/internal/testcluster"
)

// newCluster starts n coordinators, configured by tweak when it is set.
func newCluster(t *testing.T, n int, tweak func(*coordinator.Config)) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, testcluster.Options{Nodes: n, Configure: tweak})
}

// newClusterWith optionally routes Raft traffic through proxies that can
// partition the nodes (Cluster.Isolate).
func newClusterWith(t *testing.T, n int, partitions bool, tweak func(*coordinator.Config)) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, testcluster.Options{Nodes: n, Partitions: partitions, Configure: tweak})
}

var (
	waitFor   = testcluster.WaitFor
	shellSpec = testcluster.ShellSpec
	shellTask = testcluster.ShellTask
)

// logFirstIndex is the first index still in a node's Raft log.
func logFirstIndex(s *coordinator.Server) (uint64, error) {
	st := s.Raft().Stats()
	var n uint64
	_, err := fmt.Sscan(st["last_snapshot_index"], &n)
	return n, err
}
