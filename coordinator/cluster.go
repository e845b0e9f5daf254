package coordinator

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/version"
	"github.com/gantryci/gantry/internal/wire"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// nodeTable keeps what each coordinator last announced about itself over
// NATS (addresses and Raft indexes). Like heartbeats, it is never in Raft.
// It keeps announcements only of nodes in the Raft configuration, so it is
// as small as the cluster.
type nodeTable struct {
	s *Server
	// members returns the ids in the Raft configuration.
	members func() (map[string]bool, error)

	mu    sync.Mutex
	nodes map[string]*gv1.NodeStatus
}

func newNodeTable(s *Server) *nodeTable {
	t := &nodeTable{s: s, nodes: map[string]*gv1.NodeStatus{}}
	t.members = func() (map[string]bool, error) { return raftMembers(t.s.node.Raft) }
	return t
}

// raftMembers returns the ids of r's configuration.
func raftMembers(r *raft.Raft) (map[string]bool, error) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	out := map[string]bool{}
	for _, srv := range f.Configuration().Servers {
		out[string(srv.ID)] = true
	}
	return out, nil
}

func (t *nodeTable) handle(m *nats.Msg) {
	if err := t.observe(m.Subject, m.Data, time.Now()); err != nil {
		t.s.log.Debug("node status dropped", zap.String("subject", limit.Clip(m.Subject, 256)), zap.Error(err))
	}
}

// observe keeps a node's announcement received on subj; one it refuses
// changes nothing. Announcements of nodes that left the configuration go.
func (t *nodeTable) observe(subj string, data []byte, now time.Time) error {
	var st gv1.NodeStatus
	if err := proto.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	if err := name.Token(st.Id); err != nil {
		return fmt.Errorf("node status.id: %w", err)
	}
	if subj != t.s.ns.NodeStatus(st.Id) {
		return fmt.Errorf("node status.id: %q is not the node of subject %q", st.Id, limit.Clip(subj, 256))
	}
	members, err := t.members()
	if err != nil {
		return err
	}
	if !members[st.Id] {
		return fmt.Errorf("node status.id: %s is not in the raft configuration", st.Id)
	}
	for _, f := range []*string{&st.RaftAddr, &st.GrpcAddr, &st.HttpAddr, &st.RaftState} {
		*f = limit.Clip(*f, 256)
	}
	st.SeenAt = timestamppb.New(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[st.Id] = &st
	for id := range t.nodes {
		if !members[id] {
			delete(t.nodes, id)
		}
	}
	return nil
}

func (t *nodeTable) local() *gv1.NodeStatus {
	r := t.s.node.Raft
	stats := r.Stats()
	num := func(k string) uint64 {
		n, _ := strconv.ParseUint(stats[k], 10, 64)
		return n
	}
	return &gv1.NodeStatus{
		Id:           t.s.cfg.NodeID,
		RaftAddr:     t.s.node.Addr(),
		GrpcAddr:     t.s.GRPCAddr(),
		HttpAddr:     t.s.HTTPAddr(),
		CommitIndex:  num("commit_index"),
		AppliedIndex: num("applied_index"),
		LastLogIndex: num("last_log_index"),
		RaftState:    r.State().String(),
		Leader:       r.State() == raft.Leader,
		SeenAt:       timestamppb.Now(),
		Version:      version.String(),
		MaxCommand:   version.MaxCommand(),
	}
}

// announceLife is how long a node's announcement stands for it: five of
// its periods.
const announceLife = 5 * time.Second

// announce publishes this node's status every second.
func (t *nodeTable) announce(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		data, _ := proto.Marshal(t.local())
		_ = t.s.nc.Publish(t.s.ns.NodeStatus(t.s.cfg.NodeID), data)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Status merges the Raft configuration with the announcements.
func (t *nodeTable) Status(ctx context.Context) (*gv1.ClusterStatusResponse, error) {
	r := t.s.node.Raft
	_, leaderID := r.LeaderWithID()
	resp := &gv1.ClusterStatusResponse{Cluster: t.s.cfg.Cluster, LeaderId: string(leaderID)}
	resp.Term, _ = strconv.ParseUint(r.Stats()["term"], 10, 64)
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	self := t.local()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, srv := range f.Configuration().Servers {
		id := string(srv.ID)
		st := &gv1.NodeStatus{Id: id, RaftAddr: string(srv.Address)}
		if id == self.Id {
			st = proto.Clone(self).(*gv1.NodeStatus)
		} else if a, ok := t.nodes[id]; ok && time.Since(a.SeenAt.AsTime()) < announceLife {
			st = proto.Clone(a).(*gv1.NodeStatus)
		} else {
			st.RaftState = "Unreachable"
		}
		st.Voter = srv.Suffrage == raft.Voter
		st.Leader = id == string(leaderID)
		resp.Nodes = append(resp.Nodes, st)
	}
	sort.Slice(resp.Nodes, func(a, b int) bool { return resp.Nodes[a].Id < resp.Nodes[b].Id })
	return resp, nil
}

// Self is this node's ID.
func (t *nodeTable) Self() string { return t.s.cfg.NodeID }

// Leader names the leader as this node knows it: its ID and the API
// address it announced (empty while unknown, or when its announcement is
// older than an announcement's lifetime).
func (t *nodeTable) Leader() (id, grpcAddr string) {
	_, lid := t.s.node.Raft.LeaderWithID()
	id = string(lid)
	if id == "" {
		return "", ""
	}
	if id == t.s.cfg.NodeID {
		return id, t.s.GRPCAddr()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.nodes[id]; ok && time.Since(a.SeenAt.AsTime()) < announceLife {
		return id, a.GrpcAddr
	}
	return id, ""
}

// member reports whether this node is in the Raft configuration.
func (t *nodeTable) member() bool {
	f := t.s.node.Raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == t.s.cfg.NodeID {
			return true
		}
	}
	return false
}

// join asks a running coordinator to add this node, until it is a member.
// joinToken is the admin token a joining node asks with: JoinToken, or
// the cluster's bootstrap token.
func (s *Server) joinToken() string {
	if s.cfg.JoinToken != "" {
		return s.cfg.JoinToken
	}
	return s.cfg.BootstrapToken
}

func (s *Server) join(ctx context.Context) {
	wait := 200 * time.Millisecond
	for !s.nodes.member() {
		err := func() error {
			creds, err := s.cfg.TLS.apiCreds()
			if err != nil {
				return err
			}
			conn, err := grpc.NewClient(s.cfg.Join, grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if t := s.joinToken(); t != "" {
				cctx = metadata.AppendToOutgoingContext(cctx, wire.Authorization, "Bearer "+t)
			}
			_, err = gv1.NewGantryServiceClient(conn).AddNode(cctx, &gv1.AddNodeRequest{Id: s.cfg.NodeID, RaftAddr: s.node.Addr()})
			return err
		}()
		if err == nil {
			s.log.Info("joined cluster", zap.String("via", s.cfg.Join))
			return
		}
		s.log.Warn("join cluster", zap.String("via", s.cfg.Join), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// knownBefore is the highest Raft command type of the builds that did not
// announce MaxCommand yet: a voter reporting none knows up to it.
const knownBefore = 25

// gateCommand refuses to propose a command of a type some voter does not
// know (consensus.Proposer.Gate): that voter would stop at it. Types up to
// knownBefore always pass; above it, each voter's last announcement says
// (a voter not heard from, or announcing no MaxCommand, knows knownBefore).
func (t *nodeTable) gateCommand(c *gv1.Command) error {
	n := version.CommandType(c)
	if n <= knownBefore {
		return nil
	}
	f := t.s.node.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil // the proposal fails on its own without a leader
	}
	var voters []string
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, string(srv.ID))
		}
	}
	// Voters announce every second: one not heard from yet (this node
	// just started) gets a moment before its silence counts as an old
	// build.
	deadline := time.Now().Add(3 * time.Second)
	for {
		known := map[string]int32{}
		t.mu.Lock()
		for id, st := range t.nodes {
			known[id] = st.GetMaxCommand()
		}
		t.mu.Unlock()
		known[t.s.cfg.NodeID] = version.MaxCommand()
		missing := slices.ContainsFunc(voters, func(id string) bool { _, ok := known[id]; return !ok })
		if !missing || time.Now().After(deadline) {
			return checkCommandType(n, voters, known)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkCommandType says whether command type n may be proposed to voters
// whose known types are in known.
func checkCommandType(n int32, voters []string, known map[string]int32) error {
	sort.Strings(voters)
	for _, id := range voters {
		k := known[id]
		if k < knownBefore {
			k = knownBefore
		}
		if n > k {
			return fmt.Errorf("%w: coordinator %s knows Raft command types up to %d, this needs %d: finish upgrading it first (gantry version)", consensus.ErrUpgrading, id, k, n)
		}
	}
	return nil
}
