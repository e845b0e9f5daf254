package coordinator

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// nodeTable keeps what each coordinator last announced about itself over
// NATS (addresses and Raft indexes). Like heartbeats, it is never in Raft.
type nodeTable struct {
	s     *Server
	mu    sync.Mutex
	nodes map[string]*gv1.NodeStatus
}

func newNodeTable(s *Server) *nodeTable {
	return &nodeTable{s: s, nodes: map[string]*gv1.NodeStatus{}}
}

func (t *nodeTable) handle(m *nats.Msg) {
	var st gv1.NodeStatus
	if err := proto.Unmarshal(m.Data, &st); err != nil || st.Id == "" {
		return
	}
	st.SeenAt = timestamppb.Now()
	t.mu.Lock()
	t.nodes[st.Id] = &st
	t.mu.Unlock()
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
	}
}

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
		} else if a, ok := t.nodes[id]; ok && time.Since(a.SeenAt.AsTime()) < 5*time.Second {
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
func (s *Server) join(ctx context.Context) {
	wait := 200 * time.Millisecond
	for !s.nodes.member() {
		err := func() error {
			conn, err := grpc.NewClient(s.cfg.Join, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
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
