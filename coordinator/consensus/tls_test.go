package consensus_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/poll"
)

// authority is a CA whose files are in a test's directory.
type authority struct {
	t   *testing.T
	dir string
	ca  *pki.CA
}

func newAuthority(t *testing.T) *authority {
	t.Helper()
	ca, err := pki.NewCA("test cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	a := &authority{t: t, dir: t.TempDir(), ca: ca}
	if err := ca.Write(a.caFile(), filepath.Join(a.dir, "ca-key.pem"), false); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *authority) caFile() string { return filepath.Join(a.dir, "ca.pem") }

// peerTLS issues a certificate of the given kind (default names:
// localhost, 127.0.0.1) and returns pki.PeerTLS for it, trusting the CAs
// of caFile (this authority's when empty).
func (a *authority) peerTLS(name string, kind pki.Kind, caFile string) *tls.Config {
	a.t.Helper()
	p, err := a.ca.Issue(pki.Request{Kind: kind, Name: name})
	if err != nil {
		a.t.Fatal(err)
	}
	cert, key := filepath.Join(a.dir, name+".pem"), filepath.Join(a.dir, name+"-key.pem")
	if err := p.Write(cert, key, false); err != nil {
		a.t.Fatal(err)
	}
	if caFile == "" {
		caFile = a.caFile()
	}
	cfg, err := pki.PeerTLS(cert, key, caFile)
	if err != nil {
		a.t.Fatal(err)
	}
	return cfg
}

// trustBoth writes a CA file that trusts both authorities.
func (a *authority) trustBoth(b *authority) string {
	a.t.Helper()
	f := filepath.Join(a.t.TempDir(), "both.pem")
	if err := os.WriteFile(f, append(a.ca.CertPEM(), b.ca.CertPEM()...), 0o644); err != nil {
		a.t.Fatal(err)
	}
	return f
}

func tlsNodeConfig(t *testing.T, id string, tc *tls.Config) consensus.Config {
	c := consensus.DefaultConfig()
	c.ID = id
	c.Dir = t.TempDir()
	c.BindAddr = freeAddr(t)
	c.TLS = tc
	// As in cluster: generous timeouts for -race on two busy cores.
	c.HeartbeatTimeout = time.Second
	c.ElectionTimeout = time.Second
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	return c
}

func openNode(t *testing.T, cfg consensus.Config) (*consensus.Node, *fsm.FSM) {
	t.Helper()
	f := fsm.New()
	n, err := consensus.Open(cfg, f, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, f
}

// tlsCluster starts a bootstrapped cluster of n nodes on mutual TLS, with
// certificates from a.
func tlsCluster(t *testing.T, a *authority, n int) ([]*consensus.Node, []*fsm.FSM, []consensus.Peer) {
	t.Helper()
	cfgs := make([]consensus.Config, n)
	var peers []consensus.Peer
	for i := range cfgs {
		id := fmt.Sprintf("n%d", i+1)
		cfgs[i] = tlsNodeConfig(t, id, a.peerTLS(id, pki.Server, ""))
		cfgs[i].Bootstrap = true
		peers = append(peers, consensus.Peer{ID: id, Addr: cfgs[i].BindAddr})
	}
	nodes := make([]*consensus.Node, n)
	fsms := make([]*fsm.FSM, n)
	for i := range cfgs {
		cfgs[i].Peers = peers
		nodes[i], fsms[i] = openNode(t, cfgs[i])
	}
	return nodes, fsms, peers
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll.Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

func waitLeader(t *testing.T, nodes []*consensus.Node) *consensus.Node {
	t.Helper()
	var leader *consensus.Node
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.Raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func voters(t *testing.T, n *consensus.Node) []string {
	t.Helper()
	f := n.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	slices.Sort(ids)
	return ids
}

func TestTLSClusterElectsAndReplicates(t *testing.T) {
	t.Parallel()
	nodes, fsms, _ := tlsCluster(t, newAuthority(t), 3)
	leader := waitLeader(t, nodes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := consensus.NewProposer(leader.Raft)
	go p.Run(ctx)
	const jobs = 20
	for i := range jobs {
		if _, err := p.ProposeOne(ctx, submitCmd(fmt.Sprintf("job-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range fsms {
		waitFor(t, 10*time.Second, fmt.Sprintf("n%d to apply %d jobs", i+1, jobs), func() bool {
			return len(f.Jobs(nil, 0)) == jobs
		})
	}
}

// A process without a server certificate from the cluster's CA can neither
// vote, append nor be appended to, even if it trusts the cluster's CA.
func TestTLSRefusesNodesWithoutClusterCertificate(t *testing.T) {
	t.Parallel()
	cluster := newAuthority(t)
	nodes, _, peers := tlsCluster(t, cluster, 3)
	leader := waitLeader(t, nodes)
	_, leaderID := leader.Raft.LeaderWithID()
	members := voters(t, leader)

	// A process with a certificate of the cluster's CA that is not a
	// member gets answers: what the rogues are refused below is the
	// certificate, not the calls.
	outsider, _ := openNode(t, tlsNodeConfig(t, "outsider", cluster.peerTLS("outsider", pki.Server, "")))
	var vote raft.RequestVoteResponse
	err := outsider.Transport.RequestVote(raft.ServerID(peers[0].ID), raft.ServerAddress(peers[0].Addr),
		&raft.RequestVoteRequest{RPCHeader: header("outsider", outsider), Term: 0}, &vote)
	if err != nil || vote.Term == 0 || vote.Granted {
		t.Fatalf("outsider with the cluster's certificate: %v, %+v", err, vote)
	}

	other := newAuthority(t)
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		{"server certificate from another CA", other.peerTLS("rogue", pki.Server, cluster.trustBoth(other))},
		{"client certificate from the cluster's CA", cluster.peerTLS("mallory", pki.Client, "")},
		{"agent certificate from the cluster's CA", cluster.peerTLS("agent1", pki.Agent, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The rogue bootstraps a configuration with the cluster's
			// members in it and campaigns in the background as well.
			cfg := tlsNodeConfig(t, "rogue", tc.tls)
			cfg.Bootstrap = true
			cfg.Peers = append(slices.Clone(peers), consensus.Peer{ID: cfg.ID, Addr: cfg.BindAddr})
			rogue, _ := openNode(t, cfg)

			// Terms and an index far beyond the cluster's: any member that
			// heard these would adopt the term, and a vote request flagged
			// as a leadership transfer would be granted.
			term := leader.Raft.CurrentTerm() + 1000
			for _, p := range peers {
				var vote raft.RequestVoteResponse
				err := rogue.Transport.RequestVote(raft.ServerID(p.ID), raft.ServerAddress(p.Addr), &raft.RequestVoteRequest{
					RPCHeader: header(cfg.ID, rogue), Term: term, LastLogIndex: 1 << 40, LastLogTerm: term, LeadershipTransfer: true,
				}, &vote)
				if err == nil {
					t.Fatalf("%s answered the rogue's vote request: %+v", p.ID, vote)
				}
				var app raft.AppendEntriesResponse
				err = rogue.Transport.AppendEntries(raft.ServerID(p.ID), raft.ServerAddress(p.Addr), &raft.AppendEntriesRequest{
					RPCHeader: header(cfg.ID, rogue), Term: term, PrevLogEntry: 1 << 40, PrevLogTerm: term, LeaderCommitIndex: 1 << 40,
				}, &app)
				if err == nil {
					t.Fatalf("%s answered the rogue's append: %+v", p.ID, app)
				}
			}
			// Nor does the cluster talk to the rogue.
			var app raft.AppendEntriesResponse
			err := leader.Transport.AppendEntries(raft.ServerID(cfg.ID), raft.ServerAddress(cfg.BindAddr), &raft.AppendEntriesRequest{
				RPCHeader: header(string(leaderID), leader), Term: leader.Raft.CurrentTerm(),
			}, &app)
			if err == nil {
				t.Fatalf("the rogue answered the leader's append: %+v", app)
			}

			for i, n := range nodes {
				if got := n.Raft.CurrentTerm(); got >= term {
					t.Fatalf("n%d adopted the rogue's term %d", i+1, got)
				}
				if got := voters(t, n); !slices.Equal(got, members) {
					t.Fatalf("n%d has voters %v, want %v", i+1, got, members)
				}
			}
			if _, id := waitLeader(t, nodes).Raft.LeaderWithID(); !slices.Contains(members, string(id)) {
				t.Fatalf("leader %q is not a member", id)
			}
			if _, id := rogue.Raft.LeaderWithID(); id != "" {
				t.Fatalf("the rogue follows %q", id)
			}
		})
	}
}

// header is the RPC header of a request sent as id from n's address.
func header(id string, n *consensus.Node) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(n.Addr())}
}
