// Package testcluster starts real Gantry clusters inside a test process:
// coordinators with real Raft over TCP and real embedded NATS servers
// clustered by routes, and real agents running real processes. Every server
// binds port 0 and the cluster reads the bound addresses back; a node that
// is stopped and restarted comes back on the addresses it had.
//
// The first coordinator bootstraps the Raft cluster alone; the others start
// without state, their NATS servers routed to its own, and its Raft adds
// them as voters at the addresses they bound. Start returns once every
// node is a voter, follows one leader and knows the cluster's admin token,
// which every API client of the cluster presents.
//
// It is a test helper for the packages under test/, not part of any binary.
package testcluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Options shape a cluster.
type Options struct {
	// Nodes is the number of coordinators; 0 means 1.
	Nodes int
	// Name is the Gantry cluster name; empty means "test".
	Name string
	// Partitions routes Raft traffic through proxies that Isolate cuts.
	Partitions bool
	// Configure, when set, adjusts each coordinator's configuration before
	// its first start. Addresses are the cluster's to choose.
	Configure func(*coordinator.Config)
	// TLS gives every coordinator a server certificate of a CA made for the
	// cluster (pki.EnsureLocal): the API, HTTP, Raft and NATS use TLS, and
	// agents started by the cluster connect with agent certificates.
	TLS bool
}

// Cluster is a running set of coordinators and agents. It is stopped when
// the test ends.
type Cluster struct {
	t    testing.TB
	log  *zap.Logger
	name string

	mu     sync.Mutex
	cfgs   []coordinator.Config  // after the first start, with the bound addresses
	nodes  []*coordinator.Server // nil while stopped
	agents map[string]*runningAgent
	net    *network   // with Options.Partitions
	tls    *pki.Local // with Options.TLS
}

// Logger keeps test output readable: warnings and up only.
// GANTRY_TEST_LOG=debug (or info) shows more.
func Logger(t testing.TB) *zap.Logger {
	lvl := zap.WarnLevel
	if v := os.Getenv("GANTRY_TEST_LOG"); v != "" {
		_ = lvl.Set(v)
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

// Start starts a cluster and waits until it has formed.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	n := max(o.Nodes, 1)
	if o.Name == "" {
		o.Name = "test"
	}
	c := &Cluster{t: t, log: Logger(t), name: o.Name, agents: map[string]*runningAgent{}}
	if o.TLS {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("n%d", i+1)
		}
		l, err := pki.EnsureLocal(filepath.Join(t.TempDir(), "tls"), ids...)
		if err != nil {
			t.Fatal(err)
		}
		c.tls = &l
	}
	for i := range n {
		cfg := coordinator.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("n%d", i+1)
		cfg.Cluster = o.Name
		cfg.DataDir = filepath.Join(t.TempDir(), cfg.NodeID)
		cfg.GRPCAddr = "127.0.0.1:0"
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.NATS.Listen = "127.0.0.1:0"
		cfg.Raft.BindAddr = "127.0.0.1:0"
		cfg.Raft.Bootstrap = i == 0
		cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
		cfg.Raft.ElectionTimeout = 200 * time.Millisecond
		cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.Dispatch.LeaseTTL = time.Second
		cfg.Dispatch.AssignTimeout = time.Second
		cfg.BootstrapToken = AdminToken()
		if n > 1 {
			cfg.NATS.ClusterListen = "127.0.0.1:0"
			cfg.NATS.LogReplicas = min(n, 3)
		}
		if c.tls != nil {
			cfg.TLS.CertFile, cfg.TLS.KeyFile = c.tls.CertFiles(cfg.NodeID)
			cfg.TLS.CAFile = c.tls.CAFile()
			// The test CA's key: the coordinators can enroll agents.
			cfg.TLS.CAKeyFile = filepath.Join(c.tls.Dir, "ca-key.pem")
		}
		if o.Configure != nil {
			o.Configure(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.nodes = make([]*coordinator.Server, n)
	t.Cleanup(c.Close)
	if o.Partitions {
		c.partitionable()
	}

	// The first node bootstraps and leads alone, then the others join it.
	// Its NATS server needs a route before any other route address is
	// known (clustered JetStream refuses to start without one): a relay
	// that reaches the second node's server once that one listens.
	if n > 1 && c.cfgs[0].NATS.URL == "" && c.cfgs[0].NATS.ClusterListen != "" {
		seed := c.newRelay(func() string { return c.routeAddr(1) })
		c.cfgs[0].NATS.Routes = append(c.cfgs[0].NATS.Routes, "nats://"+seed.Addr())
	}
	c.startNode(0)
	WaitFor(t, 15*time.Second, "the first node to lead", c.nodes[0].IsLeader)
	first := c.nodes[0]
	c.mu.Lock()
	for i := 1; i < n; i++ {
		if r := first.NATSRouteURL(); r != "" {
			c.cfgs[i].NATS.Routes = append(c.cfgs[i].NATS.Routes, r)
		}
	}
	c.mu.Unlock()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.tryStart(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start node %d: %v", i+1, err)
		}
	}
	for i := 1; i < n; i++ {
		c.addVoter(i)
	}
	// From now on a node restarts with Raft state of its own, and routes to
	// every other node.
	c.mu.Lock()
	for i := range c.cfgs {
		c.cfgs[i].NATS.Routes = nil
		for j := range c.cfgs {
			if j != i && c.cfgs[j].NATS.ClusterListen != "" {
				c.cfgs[i].NATS.Routes = append(c.cfgs[i].NATS.Routes, "nats://"+c.cfgs[j].NATS.ClusterListen)
			}
		}
	}
	c.mu.Unlock()
	c.waitFormed()
	return c
}

// startNode starts node i or fails the test.
func (c *Cluster) startNode(i int) {
	c.t.Helper()
	if err := c.tryStart(i); err != nil {
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
}

// tryStart starts node i and keeps its bound addresses in its config.
func (c *Cluster) tryStart(i int) error {
	c.mu.Lock()
	cfg := c.cfgs[i]
	c.mu.Unlock()
	s, err := coordinator.Start(cfg, c.log.With(zap.String("test_node", cfg.NodeID)))
	if err != nil {
		return err
	}
	a := s.Addrs()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i] = s
	cfg = c.cfgs[i]
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.Raft.BindAddr = a.GRPC, a.HTTP, a.Raft
	if cfg.NATS.URL == "" {
		cfg.NATS.Listen = a.NATS
		if cfg.NATS.ClusterListen != "" {
			cfg.NATS.ClusterListen = a.NATSRoute
		}
	}
	c.cfgs[i] = cfg
	return nil
}

// addVoter has the leader add node i to the Raft configuration, trying
// again through the next leader should leadership move meanwhile.
func (c *Cluster) addVoter(i int) {
	c.t.Helper()
	cfg := c.Config(i)
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := c.Node(c.Leader())
		err := l.Raft().AddVoter(raft.ServerID(cfg.NodeID), raft.ServerAddress(cfg.Raft.BindAddr), 0, 5*time.Second).Error()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("add node %d as a voter: %v", i+1, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// routeAddr is node j's NATS route address, or "" before it first started.
func (c *Cluster) routeAddr(j int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bound(c.cfgs[j].NATS.ClusterListen)
}

// bound returns addr if it names a port, "" for port 0 or no address.
func bound(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return ""
	}
	return addr
}

// waitFormed waits until the leader counts every node as a voter and every
// node follows it, has applied what it had committed and knows the admin
// token.
func (c *Cluster) waitFormed() {
	c.t.Helper()
	WaitFor(c.t, 30*time.Second, fmt.Sprintf("%d voters following one leader", len(c.nodes)), func() bool {
		var leader *coordinator.Server
		for i := range c.nodes {
			if n := c.Node(i); n != nil && n.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		f := leader.Raft().GetConfiguration()
		if f.Error() != nil {
			return false
		}
		voters := 0
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			}
		}
		if voters != len(c.nodes) {
			return false
		}
		_, id := leader.Raft().LeaderWithID()
		commit := leader.Raft().CommitIndex()
		for i := range c.nodes {
			n := c.Node(i)
			if n == nil {
				return false
			}
			if _, lid := n.Raft().LeaderWithID(); lid != id || n.Raft().AppliedIndex() < commit || !knowsToken(n) {
				return false
			}
		}
		return true
	})
}

// Close stops every agent and node. It runs when the test ends.
func (c *Cluster) Close() {
	c.mu.Lock()
	agents := c.agents
	c.agents = map[string]*runningAgent{}
	c.mu.Unlock()
	for _, a := range agents {
		a.kill()
	}
	if c.net != nil {
		// Drop Raft links first so shutting nodes down never waits on a
		// peer call through a proxy.
		c.net.cutAll()
	}
	for i := range c.nodes {
		c.Stop(i)
	}
}

// Size is the number of nodes, running or not.
func (c *Cluster) Size() int { return len(c.nodes) }

// Name is the Gantry cluster name.
func (c *Cluster) Name() string { return c.name }

// Stop crashes node i: no leadership hand-over.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// Restart starts node i again on its data dir and addresses.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = c.tryStart(i); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("restart node %d: %v", i+1, err)
		}
		time.Sleep(100 * time.Millisecond) // the old listeners may still be closing
	}
}

// Node is node i, or nil while it is stopped.
func (c *Cluster) Node(i int) *coordinator.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Config is node i's configuration, with its bound addresses.
func (c *Cluster) Config(i int) coordinator.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfgs[i]
}

// Leader waits for a leader among the running nodes and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	idx := -1
	WaitFor(c.t, 15*time.Second, "a leader", func() bool {
		for i := range c.nodes {
			if n := c.Node(i); n != nil && n.IsLeader() {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// NATSURL is node i's NATS client URL, whether the node runs or not.
func (c *Cluster) NATSURL(i int) string { return "nats://" + c.Config(i).NATS.Listen }

// NATSURLs lists every node's NATS client URL, comma-separated.
func (c *Cluster) NATSURLs() string {
	s := ""
	for i := range c.nodes {
		if i > 0 {
			s += ","
		}
		s += c.NATSURL(i)
	}
	return s
}

// TLS is the cluster's CA and certificates (Options.TLS), or nil.
func (c *Cluster) TLS() *pki.Local { return c.tls }

// API returns a client of node i's API with the admin token that does not
// retry: a refusal is the test's to see. It is closed when the test ends.
func (c *Cluster) API(i int) *client.Client {
	c.t.Helper()
	return c.APIOf([]int{i})
}

// APIOf is API with the addresses of nodes, in that order, and opts.
func (c *Cluster) APIOf(nodes []int, opts ...client.Option) *client.Client {
	c.t.Helper()
	opts = append([]client.Option{client.WithRetryTimeout(0), client.WithToken(AdminToken())}, opts...)
	if c.tls != nil {
		tc, err := pki.ClientTLS(c.tls.CAFile(), "", "")
		if err != nil {
			c.t.Fatal(err)
		}
		opts = append(opts, client.WithTLS(tc))
	}
	var addrs []string
	for _, i := range nodes {
		addrs = append(addrs, c.Config(i).GRPCAddr)
	}
	cl, err := client.New(addrs, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Client returns node i's gRPC API (see API).
func (c *Cluster) Client(i int) gv1.GantryServiceClient { return c.API(i).Raw() }

// Job reads a job from node i's replica.
func (c *Cluster) Job(i int, id string) (*gv1.Job, bool) {
	n := c.Node(i)
	if n == nil {
		return nil, false
	}
	return n.FSM().Job(id)
}

// WaitFor polls cond until it holds, failing the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll.Until(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// ShellSpec is a job of the given tasks.
func ShellSpec(name string, tasks ...*gv1.TaskSpec) *gv1.JobSpec {
	return &gv1.JobSpec{Name: name, Tasks: tasks}
}

// ShellTask is a task that runs script with sh, after the tasks it needs.
func ShellTask(name, script string, needs ...string) *gv1.TaskSpec {
	return &gv1.TaskSpec{Name: name, Needs: needs, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: script}}}
}
