package consensus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
)

// plainCluster starts n bootstrapped nodes on plain TCP with the tests'
// generous timeouts and returns them and their FSMs.
func plainCluster(t *testing.T, n int) ([]*consensus.Node, []*fsm.FSM) {
	t.Helper()
	cfgs := make([]consensus.Config, n)
	var peers []consensus.Peer
	for i := range cfgs {
		cfgs[i] = tlsNodeConfig(t, fmt.Sprintf("n%d", i+1), nil)
		cfgs[i].Bootstrap = true
		peers = append(peers, consensus.Peer{ID: cfgs[i].ID, Addr: cfgs[i].BindAddr})
	}
	nodes := make([]*consensus.Node, n)
	fsms := make([]*fsm.FSM, n)
	for i := range cfgs {
		cfgs[i].Peers = peers
		nodes[i], fsms[i] = openNode(t, cfgs[i])
	}
	return nodes, fsms
}

func heartbeatTimeout(n *consensus.Node) time.Duration {
	return n.Raft.ReloadableConfig().HeartbeatTimeout
}

// When the leader's process is gone (its connections end and its Raft
// port refuses), the followers shorten their timeouts to the leader lease
// to elect another at once, then go back to the configured ones. A
// leader whose connections end while it lives changes nothing.
func TestFollowersOfADeadLeaderElectSooner(t *testing.T) {
	t.Parallel()
	nodes, _ := plainCluster(t, 3)
	const configured, lease = time.Second, 500 * time.Millisecond // tlsNodeConfig's
	leader := waitLeader(t, nodes)
	var followers []*consensus.Node
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := consensus.NewProposer(leader.Raft)
	go p.Run(ctx)

	// A live leader's connections end: the followers find its port open.
	leader.Transport.CloseStreams()
	if _, err := p.ProposeOne(ctx, submitCmd("after-close")); err != nil {
		t.Fatal(err)
	}
	for _, f := range followers {
		waitFor(t, 10*time.Second, "followers to apply the entry sent on new connections", func() bool {
			return f.Raft.AppliedIndex() >= leader.Raft.AppliedIndex()
		})
		if got := heartbeatTimeout(f); got != configured {
			t.Fatalf("%s: heartbeat timeout %s after a live leader's connections ended; want %s", f.Raft.String(), got, configured)
		}
	}

	// The leader dies.
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range followers {
		waitFor(t, 10*time.Second, "a follower to shorten its timeouts", func() bool {
			return heartbeatTimeout(f) == lease
		})
	}
	waitLeader(t, followers)
	for _, f := range followers {
		waitFor(t, 10*time.Second, "the configured timeouts back", func() bool {
			rc := f.Raft.ReloadableConfig()
			return rc.HeartbeatTimeout == configured && rc.ElectionTimeout == configured
		})
	}
}
