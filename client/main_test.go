package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent"
	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The tests and examples share one Gantry like `gantry dev`: a single-node
// coordinator with its embedded NATS server and an agent named local that
// runs real processes. TestMain starts it and names it in GANTRY_ADDR, and
// its admin token in GANTRY_TOKEN, as a user's environment would.

// liveAddr is the coordinator's gRPC address, liveToken its admin token.
var liveAddr, liveToken string

func TestMain(m *testing.M) {
	code, err := runWithGantry(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start gantry:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func testLog() *zap.Logger {
	v := os.Getenv("GANTRY_TEST_LOG")
	if v == "" {
		return zap.NewNop()
	}
	cfg := zap.NewDevelopmentConfig()
	if err := cfg.Level.UnmarshalText([]byte(v)); err != nil {
		return zap.NewNop()
	}
	log, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return log
}

// startCoordinator starts a single-node coordinator in dir, on loopback
// ports chosen by the system.
func startCoordinator(dir string, log *zap.Logger) (*coordinator.Server, error) {
	cfg := coordinator.DefaultConfig()
	cfg.NodeID = "dev"
	cfg.Cluster = "client"
	cfg.DataDir = dir
	cfg.GenerateSecretKeys = true
	cfg.BootstrapToken = liveToken
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.Raft.BindAddr = "127.0.0.1:0"
	cfg.Raft.Bootstrap = true
	cfg.Raft.HeartbeatTimeout = 200 * time.Millisecond
	cfg.Raft.ElectionTimeout = 200 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.Dispatch.LeaseTTL = time.Second
	srv, err := coordinator.Start(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := waitUntil(15*time.Second, srv.IsLeader); err != nil {
		srv.Close()
		return nil, fmt.Errorf("leadership: %w", err)
	}
	return srv, nil
}

func runWithGantry(m *testing.M) (int, error) {
	log := testLog()
	_, liveToken, _ = api.NewToken()
	dir, err := os.MkdirTemp("", "gantry-client-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	srv, err := startCoordinator(filepath.Join(dir, "dev"), log)
	if err != nil {
		return 0, err
	}
	defer srv.Close()

	acfg := agent.DefaultConfig()
	acfg.Name = "local"
	acfg.Cluster = "client"
	acfg.NATS = srv.NATSURL()
	acfg.Slots = 4
	acfg.WorkDir = filepath.Join(dir, "agent")
	acfg.HeartbeatInterval = 100 * time.Millisecond
	acfg.Grace = time.Second
	acfg.ReportTimeout = time.Second
	a, err := agent.New(acfg, log.Named("agent"))
	if err != nil {
		return 0, err
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		a.Kill()
		stop()
		<-done
	}()

	liveAddr = srv.GRPCAddr()
	for k, v := range map[string]string{"GANTRY_ADDR": liveAddr, "GANTRY_TOKEN": liveToken} {
		if err := os.Setenv(k, v); err != nil {
			return 0, err
		}
	}
	c, err := client.New([]string{liveAddr}, client.WithToken(liveToken))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	err = waitUntil(15*time.Second, func() bool {
		agents, err := c.Agents(ctx)
		return err == nil && len(agents) == 1 && agents[0].State == gv1.AgentState_AGENT_STATE_ACTIVE
	})
	if err != nil {
		return 0, fmt.Errorf("agent local active: %w", err)
	}
	return m.Run(), nil
}

var errTimeout = errors.New("timed out")

// waitUntil checks cond until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) error {
	if !poll.Until(timeout, cond) {
		return errTimeout
	}
	return nil
}
