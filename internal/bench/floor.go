package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
)

// floor measures what no design can beat on this machine: a commit of
// a bare 3-node Raft cluster (same log store, fsync on) and a NATS
// request/reply through an embedded server.
func floor(res *Result) error {
	dir, err := os.MkdirTemp("", "gantry-floor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The first node bootstraps alone on a port of its choosing and leads;
	// the others are added as voters at the addresses they bound.
	nodes := make([]*consensus.Node, 3)
	for i := range nodes {
		c := consensus.DefaultConfig()
		c.ID = fmt.Sprintf("f%d", i)
		c.Dir = filepath.Join(dir, c.ID)
		c.BindAddr = "127.0.0.1:0"
		c.Bootstrap = i == 0
		n, err := consensus.Open(c, fsm.New(), zap.NewNop())
		if err != nil {
			return err
		}
		defer n.Close()
		nodes[i] = n
	}
	leader := nodes[0]
	deadline := time.Now().Add(15 * time.Second)
	for leader.Raft.State() != raft.Leader {
		if time.Now().After(deadline) {
			return errors.New("raw raft node elected no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, n := range nodes[1:] {
		id := raft.ServerID(fmt.Sprintf("f%d", i+1))
		if err := leader.Raft.AddVoter(id, raft.ServerAddress(n.Addr()), 0, 10*time.Second).Error(); err != nil {
			return fmt.Errorf("add raw raft voter %s: %w", id, err)
		}
	}
	for _, n := range nodes[1:] {
		for n.Raft.AppliedIndex() < leader.Raft.LastIndex() {
			if time.Now().After(deadline) {
				return errors.New("raw raft voters did not catch up")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var lat []time.Duration
	for i := 0; i < 500; i++ {
		start := time.Now()
		// An empty entry decodes as an empty batch: a commit that applies nothing.
		if err := leader.Raft.Apply(nil, 5*time.Second).Error(); err != nil {
			return fmt.Errorf("raw raft commit: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	res.FloorRaftCommitP50Ms = ms(quantile(lat, 0.5))
	res.FloorRaftCommitP99Ms = ms(quantile(lat, 0.99))

	ns, err := startNATS(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.Subscribe("floor", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return err
	}
	lat = lat[:0]
	payload := make([]byte, 64)
	for i := 0; i < 2000; i++ {
		start := time.Now()
		if _, err := nc.Request("floor", payload, 5*time.Second); err != nil {
			return fmt.Errorf("nats request: %w", err)
		}
		lat = append(lat, time.Since(start))
	}
	res.FloorNATSRTTP50Ms = ms(quantile(lat, 0.5))
	return nil
}

// startNATS starts an embedded NATS server and waits until it takes
// connections.
func startNATS(opts *natsserver.Options) (*natsserver.Server, error) {
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready")
	}
	return s, nil
}
