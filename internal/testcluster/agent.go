package testcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// runningAgent is an agent started by the cluster.
type runningAgent struct {
	a       *agent.Agent
	stop    context.CancelFunc
	done    chan error
	workDir string
}

// kill crashes the agent and waits until it has stopped.
func (ra *runningAgent) kill() {
	ra.a.Kill()
	ra.stop()
	<-ra.done
}

// StartAgent starts an agent connected to every node's NATS server.
func (c *Cluster) StartAgent(name string, slots int, labels map[string]string) *agent.Agent {
	c.t.Helper()
	return c.StartAgentWith(name, slots, labels, nil)
}

// StartAgentWith starts an agent that also reaches Kubernetes clusters.
func (c *Cluster) StartAgentWith(name string, slots int, labels map[string]string, kube []agent.KubeCluster) *agent.Agent {
	c.t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Kube = kube
	cfg.Name = name
	cfg.Cluster = c.name
	cfg.NATS = c.NATSURLs()
	cfg.Slots = slots
	cfg.Labels = labels
	cfg.WorkDir = filepath.Join(c.t.TempDir(), name)
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.Grace = time.Second
	cfg.ReportTimeout = time.Second
	if c.tls != nil {
		if err := c.tls.EnsureAgent(name); err != nil {
			c.t.Fatal(err)
		}
		cfg.TLSCert, cfg.TLSKey = c.tls.AgentCertFiles(name)
		cfg.TLSCA = c.tls.CAFile()
	}
	a, err := agent.New(cfg, c.log.With(zap.String("test_agent", name)))
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{a: a, stop: cancel, done: make(chan error, 1), workDir: cfg.WorkDir}
	go func() { ra.done <- a.Run(ctx) }()
	c.mu.Lock()
	c.agents[name] = ra
	c.mu.Unlock()
	return a
}

// StartEnrolledAgent starts an agent of a TLS cluster that gets its
// certificate by enrolling with joinToken at node i; the enrollment's
// error is returned (the agent is not started).
func (c *Cluster) StartEnrolledAgent(i int, name, joinToken string, labels map[string]string) (*agent.Agent, error) {
	c.t.Helper()
	if c.tls == nil {
		c.t.Fatal("StartEnrolledAgent: the cluster has no TLS")
	}
	cfg := agent.DefaultConfig()
	cfg.Name, cfg.Cluster, cfg.NATS, cfg.Slots, cfg.Labels = name, c.name, c.NATSURLs(), 2, labels
	cfg.WorkDir = filepath.Join(c.t.TempDir(), name)
	cfg.HeartbeatInterval, cfg.Grace, cfg.ReportTimeout = 100*time.Millisecond, time.Second, time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, key, err := agent.Enroll(ctx, agent.Enrollment{
		Name: name, JoinToken: joinToken, Addrs: []string{c.Config(i).GRPCAddr}, CAFile: c.tls.CAFile(),
		Dir: filepath.Join(cfg.WorkDir, "tls"),
	})
	if err != nil {
		return nil, err
	}
	cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = cert, key, c.tls.CAFile()
	a, err := agent.New(cfg, c.log.With(zap.String("test_agent", name)))
	if err != nil {
		c.t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	ra := &runningAgent{a: a, stop: stop, done: make(chan error, 1), workDir: cfg.WorkDir}
	go func() { ra.done <- a.Run(rctx) }()
	c.mu.Lock()
	c.agents[name] = ra
	c.mu.Unlock()
	return a, nil
}

// AgentWorkDir is a running agent's work directory.
func (c *Cluster) AgentWorkDir(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ra := c.agents[name]; ra != nil {
		return ra.workDir
	}
	return ""
}

// KillAgent crashes an agent: no drain, no more heartbeats or reports.
func (c *Cluster) KillAgent(name string) {
	c.mu.Lock()
	ra := c.agents[name]
	delete(c.agents, name)
	c.mu.Unlock()
	if ra != nil {
		ra.kill()
	}
}

// WaitAgents waits until node i sees the named agents active.
func (c *Cluster) WaitAgents(i int, names ...string) {
	c.t.Helper()
	cl := c.API(i)
	WaitFor(c.t, 15*time.Second, fmt.Sprintf("agents %v", names), func() bool {
		agents, err := cl.Agents(context.Background())
		if err != nil {
			return false
		}
		active := map[string]bool{}
		for _, a := range agents {
			active[a.GetInfo().GetName()] = a.GetState() == gv1.AgentState_AGENT_STATE_ACTIVE
		}
		for _, n := range names {
			if !active[n] {
				return false
			}
		}
		return true
	})
}
