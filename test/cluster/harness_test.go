// Package cluster tests real 3-node coordinator clusters in one process:
// real Raft over TCP, real embedded NATS servers clustered by routes, real
// agents running real processes.
package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gantryci/gantry/agent"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/consensus"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

var (
	portMu    sync.Mutex
	usedPorts = map[string]bool{}
)

// freePort returns a loopback address that was free a moment ago and that
// no other test of this package was given.
func freePort(t *testing.T) string {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !usedPorts[addr] {
			usedPorts[addr] = true
			return addr
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type testCluster struct {
	t      *testing.T
	log    *zap.Logger
	cfgs   []coordinator.Config
	mu     sync.Mutex
	nodes  []*coordinator.Server // nil when stopped
	agents map[string]*testAgent
	net    *network // set by partitionable
}

type testAgent struct {
	a    *agent.Agent
	stop context.CancelFunc
	done chan error
}

// testLogger keeps test output readable: warnings and up only.
// GANTRY_TEST_LOG=debug (or info) shows more.
func testLogger(t *testing.T) *zap.Logger {
	lvl := zap.WarnLevel
	if v := os.Getenv("GANTRY_TEST_LOG"); v != "" {
		_ = lvl.Set(v)
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

// newCluster starts n coordinators bootstrapped together.
func newCluster(t *testing.T, n int, tweak func(*coordinator.Config)) *testCluster {
	return newClusterWith(t, n, false, tweak)
}

// newClusterWith optionally routes Raft traffic through proxies that can
// partition the nodes.
func newClusterWith(t *testing.T, n int, partitions bool, tweak func(*coordinator.Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, log: testLogger(t), agents: map[string]*testAgent{}}
	var peers []consensus.Peer
	routes := make([]string, n)
	for i := 0; i < n; i++ {
		cfg := coordinator.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("n%d", i+1)
		cfg.Cluster = "test"
		cfg.DataDir = filepath.Join(t.TempDir(), cfg.NodeID)
		cfg.GRPCAddr = freePort(t)
		cfg.HTTPAddr = freePort(t)
		cfg.NATS.Listen = freePort(t)
		cfg.Raft.BindAddr = freePort(t)
		cfg.Raft.Bootstrap = true
		cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
		cfg.Raft.ElectionTimeout = 200 * time.Millisecond
		cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.Dispatch.LeaseTTL = time.Second
		cfg.Dispatch.AssignTimeout = time.Second
		if n > 1 {
			cfg.NATS.ClusterListen = freePort(t)
			routes[i] = "nats://" + cfg.NATS.ClusterListen
			cfg.NATS.LogReplicas = min(n, 3)
		}
		peers = append(peers, consensus.Peer{ID: cfg.NodeID, Addr: cfg.Raft.BindAddr})
		c.cfgs = append(c.cfgs, cfg)
	}
	for i := range c.cfgs {
		c.cfgs[i].Raft.Peers = peers
		for j, r := range routes {
			if j != i && r != "" {
				c.cfgs[i].NATS.Routes = append(c.cfgs[i].NATS.Routes, r)
			}
		}
		if tweak != nil {
			tweak(&c.cfgs[i])
		}
	}
	if partitions {
		c.partitionable()
	}
	c.nodes = make([]*coordinator.Server, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range c.cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = coordinator.Start(c.cfgs[i], c.log.With(zap.String("test_node", c.cfgs[i].NodeID)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start node %d: %v", i+1, err)
		}
	}
	t.Cleanup(c.close)
	c.leader()
	return c
}

func (c *testCluster) close() {
	c.mu.Lock()
	agents := c.agents
	c.agents = map[string]*testAgent{}
	c.mu.Unlock()
	for _, a := range agents {
		a.a.Kill()
		a.stop()
		<-a.done
	}
	if c.net != nil {
		// Drop Raft links first so shutting nodes down never waits on a
		// peer call through a proxy.
		for _, p := range c.net.links {
			p.setCut(true)
		}
	}
	for i := range c.nodes {
		c.stop(i)
	}
}

// stop crashes node i (no leadership hand-over).
func (c *testCluster) stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// restart starts node i again on its data dir and addresses.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	var err error
	var n *coordinator.Server
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err = coordinator.Start(c.cfgs[i], c.log.With(zap.String("test_node", c.cfgs[i].NodeID)))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the old listeners may still be closing
	}
	if err != nil {
		c.t.Fatalf("restart node %d: %v", i+1, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
}

func (c *testCluster) node(i int) *coordinator.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// leader waits for a leader among the running nodes and returns its index.
func (c *testCluster) leader() int {
	c.t.Helper()
	idx := -1
	waitFor(c.t, 15*time.Second, "a leader", func() bool {
		for i := range c.nodes {
			if n := c.node(i); n != nil && n.IsLeader() {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

func (c *testCluster) natsURLs() string {
	s := ""
	for i, cfg := range c.cfgs {
		if i > 0 {
			s += ","
		}
		s += "nats://" + cfg.NATS.Listen
	}
	return s
}

// startAgent starts an agent connected to every node's NATS server.
func (c *testCluster) startAgent(name string, slots int, labels map[string]string) *agent.Agent {
	c.t.Helper()
	return c.startAgentWith(name, slots, labels, nil)
}

// startAgentWith starts an agent that also reaches Kubernetes clusters.
func (c *testCluster) startAgentWith(name string, slots int, labels map[string]string, kube []agent.KubeCluster) *agent.Agent {
	c.t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Kube = kube
	cfg.Name = name
	cfg.Cluster = "test"
	cfg.NATS = c.natsURLs()
	cfg.Slots = slots
	cfg.Labels = labels
	cfg.WorkDir = filepath.Join(c.t.TempDir(), name)
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.Grace = time.Second
	cfg.ReportTimeout = time.Second
	a, err := agent.New(cfg, c.log.With(zap.String("test_agent", name)))
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{a: a, stop: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	c.mu.Lock()
	c.agents[name] = ta
	c.mu.Unlock()
	return a
}

// killAgent crashes an agent: no drain, no more heartbeats or reports.
func (c *testCluster) killAgent(name string) {
	c.mu.Lock()
	ta := c.agents[name]
	delete(c.agents, name)
	c.mu.Unlock()
	ta.a.Kill()
	ta.stop()
	<-ta.done
}

// client returns an API client for node i.
func (c *testCluster) client(i int) gv1.GantryServiceClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return gv1.NewGantryServiceClient(conn)
}

// waitAgents waits until node i sees the named agents active.
func (c *testCluster) waitAgents(i int, names ...string) {
	c.t.Helper()
	cl := c.client(i)
	waitFor(c.t, 15*time.Second, fmt.Sprintf("agents %v", names), func() bool {
		resp, err := cl.ListAgents(context.Background(), &gv1.ListAgentsRequest{})
		if err != nil {
			return false
		}
		active := map[string]bool{}
		for _, a := range resp.Agents {
			active[a.Info.Name] = a.State == gv1.AgentState_AGENT_STATE_ACTIVE
		}
		for _, n := range names {
			if !active[n] {
				return false
			}
		}
		return true
	})
}

// job reads a job from node i's replica.
func (c *testCluster) job(i int, id string) (*gv1.Job, bool) {
	n := c.node(i)
	if n == nil {
		return nil, false
	}
	return n.FSM().Job(id)
}

func shellSpec(name string, tasks ...*gv1.TaskSpec) *gv1.JobSpec {
	return &gv1.JobSpec{Name: name, Tasks: tasks}
}

func shellTask(name, script string, needs ...string) *gv1.TaskSpec {
	return &gv1.TaskSpec{Name: name, Needs: needs, Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: script}}}
}

type coordinatorConfig = coordinator.Config

// logFirstIndex is the first index still in a node's Raft log.
func logFirstIndex(s *coordinator.Server) (uint64, error) {
	st := s.Raft().Stats()
	var n uint64
	_, err := fmt.Sscan(st["last_snapshot_index"], &n)
	return n, err
}
