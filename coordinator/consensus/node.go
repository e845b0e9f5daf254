// Package consensus runs the coordinator's Raft node: the durable log store,
// file snapshots, the TCP or mutual TLS transport, bootstrap and
// membership, and the proposer that batches commands into log entries.
package consensus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/gantryci/gantry/coordinator/consensus/seglog"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.uber.org/zap"
)

// Store names a durable Raft log store.
type Store string

const (
	// StoreSegments is package seglog: append-only segment files, one write
	// and one fdatasync per batch of entries (bolt pays two syncs and page
	// rewrites), the default. Term and vote stay in raft.db (bolt); a log
	// a bolt store holds is moved into the segments when the node opens.
	StoreSegments Store = "segments"
	// StoreBolt is hashicorp/raft-boltdb/v2 (bbolt).
	StoreBolt Store = "bolt"
	// StoreWAL is hashicorp/raft-wal: segment files, half the commit latency
	// of bolt. v0.4.0 seals the tail segment without an index when Raft
	// truncates a conflicting suffix (a deposed leader's uncommitted
	// entries); after a restart Raft cannot read that segment and panics.
	// The fault-injection suite finds this, so wal is opt-in.
	StoreWAL Store = "wal"
)

// Peer is one voter of the initial configuration.
type Peer struct {
	ID   string
	Addr string
}

// ParsePeers reads "id=host:port,id=host:port".
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", p)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("peer %q: %w", p, err)
		}
		out = append(out, Peer{ID: id, Addr: addr})
	}
	return out, nil
}

// Config configures a Raft node.
type Config struct {
	ID string
	// Dir holds the log store and snapshots.
	Dir string
	// BindAddr is the Raft transport's listen address (host:port; port 0
	// picks one). It is also the address peers use, so it must not be a
	// wildcard address.
	BindAddr string
	Store    Store
	// Bootstrap a new cluster from Peers (just this node when empty) if the
	// node has no state yet. Ignored when state exists.
	Bootstrap bool
	Peers     []Peer

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64

	// AddressProvider, when set, resolves peers' addresses by server ID
	// (tests route Raft traffic through proxies with it).
	AddressProvider raft.ServerAddressProvider

	// TLS, when set, makes the transport mutual TLS: it serves and dials
	// with this configuration, which must require and verify client
	// certificates against the cluster's CA (ClientCAs) and verify servers
	// against it (RootCAs); see pki.PeerTLS. A dialed peer's certificate
	// must name the host of its Raft address. Nil is plain TCP.
	TLS *tls.Config
}

// DefaultConfig has timeouts tuned for sub-second failover on a LAN.
func DefaultConfig() Config {
	return Config{
		Store:              StoreSegments,
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.ID == "" {
		return errors.New("raft: node id is empty")
	}
	if c.Dir == "" {
		return errors.New("raft: data dir is empty")
	}
	if c.Store != StoreSegments && c.Store != StoreWAL && c.Store != StoreBolt {
		return fmt.Errorf("raft: store %q: want %q, %q or %q", c.Store, StoreSegments, StoreBolt, StoreWAL)
	}
	host, _, err := net.SplitHostPort(c.BindAddr)
	if err != nil {
		return fmt.Errorf("raft: bind address %q: %w", c.BindAddr, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("raft: bind address %q: peers cannot reach a wildcard address; name the interface", c.BindAddr)
	}
	if c.TLS != nil {
		return validateTLS(c.TLS)
	}
	return nil
}

// Node is a running Raft node.
type Node struct {
	Raft      *raft.Raft
	Transport *raft.NetworkTransport
	// Dir holds the log store and snapshots; only the owner can read it.
	Dir string
	// StartIndex is the index of the last command entry the node's log
	// held when it opened: everything it may have acknowledged before a
	// restart. Reads wait until the state machine has applied it. Zero when
	// the log holds no command (a node that started without state, or one
	// whose commands are all in the snapshot Raft restores before Open
	// returns): it has nothing to catch up on.
	StartIndex uint64
	closers    []func() error
}

// Open starts a Raft node applying to fsm.
func Open(cfg Config, fsm raft.FSM, log *zap.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hl := newHCLog(log.Named("raft"))
	if err := os.MkdirAll(cfg.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("raft dir: %w", err)
	}
	if err := os.Chmod(cfg.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("raft dir: %w", err)
	}
	n := &Node{Dir: cfg.Dir}
	var logs raft.LogStore
	var stable raft.StableStore
	if cfg.Store != StoreSegments {
		// A node that ran with segments must not start on an empty log.
		if m, _ := filepath.Glob(filepath.Join(cfg.Dir, SegmentsDir, "*.seg")); len(m) > 0 {
			return nil, fmt.Errorf("raft: %s holds this node's log (--raft-store %s); it cannot start with --raft-store %s", filepath.Join(cfg.Dir, SegmentsDir), StoreSegments, cfg.Store)
		}
	}
	switch cfg.Store {
	case StoreBolt:
		b, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("open bolt store: %w", err)
		}
		n.closers = append(n.closers, b.Close)
		logs, stable = b, b
	case StoreSegments:
		b, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("open bolt store: %w", err)
		}
		n.closers = append(n.closers, b.Close)
		segs, err := seglog.Open(filepath.Join(cfg.Dir, SegmentsDir))
		if err != nil {
			n.close()
			return nil, fmt.Errorf("open log segments: %w", err)
		}
		n.closers = append(n.closers, segs.Close)
		if err := moveBoltLog(b, segs, log); err != nil {
			n.close()
			return nil, err
		}
		cache, err := raft.NewLogCache(1024, segs)
		if err != nil {
			n.close()
			return nil, err
		}
		logs, stable = cache, b
	default:
		dir := filepath.Join(cfg.Dir, "wal")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("wal dir: %w", err)
		}
		// raft-wal's Close leaves its meta database open (and locked), so
		// we own it and close it after the WAL.
		meta := &metadb.BoltMetaDB{}
		n.closers = append(n.closers, meta.Close)
		w, err := wal.Open(dir, wal.WithLogger(hl.Named("wal")), wal.WithMetaStore(meta))
		if err != nil {
			n.close()
			return nil, fmt.Errorf("open wal: %w", err)
		}
		n.closers = append(n.closers, w.Close)
		logs, stable = w, w
	}
	snaps, err := openSnapshots(cfg.Dir, 2, hl.Named("snapshot"))
	if err != nil {
		n.close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	tc := &raft.NetworkTransportConfig{
		ServerAddressProvider: cfg.AddressProvider,
		Logger:                hl.Named("transport"),
		MaxPool:               4,
		Timeout:               10 * time.Second,
	}
	tr, stream, err := newStreamTransport(cfg.BindAddr, cfg.TLS, tc)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("raft transport on %s: %w", cfg.BindAddr, err)
	}
	n.Transport = tr
	n.closers = append(n.closers, tr.Close)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	set := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	set(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	set(&rc.ElectionTimeout, cfg.ElectionTimeout)
	set(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	set(&rc.CommitTimeout, cfg.CommitTimeout)
	set(&rc.SnapshotInterval, cfg.SnapshotInterval)
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512

	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("raft state: %w", err)
	}
	if has {
		if n.StartIndex, err = lastCommand(logs); err != nil {
			n.close()
			return nil, fmt.Errorf("raft log: %w", err)
		}
	}
	if cfg.Bootstrap && !has {
		servers := []raft.Server{{ID: rc.LocalID, Address: tr.LocalAddr()}}
		if len(cfg.Peers) > 0 {
			servers = servers[:0]
			for _, p := range cfg.Peers {
				servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
		}
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, tr, raft.Configuration{Servers: servers}); err != nil {
			n.close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, fsm, logs, stable, snaps, tr)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.Raft = r
	w := &crashWatch{r: r, id: rc.LocalID, stream: stream, addrs: cfg.AddressProvider, log: log.Named("raft"),
		normal: [2]time.Duration{rc.HeartbeatTimeout, rc.ElectionTimeout}, fast: rc.LeaderLeaseTimeout,
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	n.closers = append(n.closers, w.close)
	return n, nil
}

// Addr is the transport's address.
func (n *Node) Addr() string { return string(n.Transport.LocalAddr()) }

// Close shuts Raft down and closes its stores.
func (n *Node) Close() error {
	var errs []error
	if n.Raft != nil {
		errs = append(errs, n.Raft.Shutdown().Error())
	}
	errs = append(errs, n.close())
	return errors.Join(errs...)
}

func (n *Node) close() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	n.closers = nil
	return errors.Join(errs...)
}

// AddVoter adds a node; only the leader can.
func (n *Node) AddVoter(id, addr string, timeout time.Duration) error {
	if err := n.Raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error(); err != nil {
		return fmt.Errorf("add voter %s at %s: %w", id, addr, err)
	}
	return nil
}

// RemoveServer removes a node; only the leader can.
func (n *Node) RemoveServer(id string, timeout time.Duration) error {
	if err := n.Raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// lastCommand returns the index of the last command entry in the log
// (entries Raft appends itself, no-ops and configurations, never reach the
// state machine, so its applied index never reaches theirs). It looks back
// at most 4096 entries.
func lastCommand(logs raft.LogStore) (uint64, error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, err
	}
	for i := last; i >= first && i > 0 && last-i < 4096; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return 0, err
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

// SegmentsDir is the directory of a node's log segments (StoreSegments)
// under its Raft directory.
const SegmentsDir = "log"

// moveBoltLog moves the log a bolt store holds (a node that ran with
// StoreBolt) into segs, which must be empty or hold a prefix of it (a move
// cut short), then empties the bolt log. The term and vote stay in bolt.
func moveBoltLog(b *raftboltdb.BoltStore, segs *seglog.Store, log *zap.Logger) error {
	first, err := b.FirstIndex()
	if err != nil {
		return fmt.Errorf("read bolt log: %w", err)
	}
	last, err := b.LastIndex()
	if err != nil {
		return fmt.Errorf("read bolt log: %w", err)
	}
	if last == 0 {
		return nil
	}
	sFirst, _ := segs.FirstIndex()
	sLast, _ := segs.LastIndex()
	from := first
	switch {
	case sLast == 0:
	case sFirst == first && sLast <= last:
		from = sLast + 1
	default:
		return fmt.Errorf("raft.db holds log entries %d-%d and the segments %d-%d: move them by hand or remove one", first, last, sFirst, sLast)
	}
	if from <= last {
		log.Info("moving the Raft log from raft.db to segments", zap.Uint64("first", from), zap.Uint64("last", last))
	}
	for i := from; i <= last; {
		batch := make([]*raft.Log, 0, 256)
		for ; i <= last && len(batch) < cap(batch); i++ {
			l := new(raft.Log)
			if err := b.GetLog(i, l); err != nil {
				return fmt.Errorf("read bolt log entry %d: %w", i, err)
			}
			batch = append(batch, l)
		}
		if err := segs.StoreLogs(batch); err != nil {
			return fmt.Errorf("move log entries: %w", err)
		}
	}
	if err := b.DeleteRange(first, last); err != nil {
		return fmt.Errorf("empty the bolt log: %w", err)
	}
	return nil
}
