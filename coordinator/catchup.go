package coordinator

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Honest reads after a restart. Raft replays a node's log into the state
// machine only once it learns the commit index (from its own election or
// from the leader), so for a moment after a restart the state is older
// than what the node acknowledged before: a read then would show jobs
// missing. A node serves reads only once it has caught up: it has applied
// everything its log held when it started, or, should that tail have been
// uncommitted and since replaced, everything the current leader announced
// as committed. /readyz says not ready until then and the API answers
// Unavailable, naming the indexes.

// catchUp waits until the node has caught up, then marks it so for good.
func (s *Server) catchUp(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, _ := s.caughtUpNow(); ok {
			s.caughtUp.Store(true)
			s.log.Info("caught up", zap.Uint64("applied", s.fsm.AppliedIndex()), zap.Uint64("start_index", s.node.StartIndex))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// caughtUpNow checks the conditions; why explains a no.
func (s *Server) caughtUpNow() (bool, string) {
	// The state machine's own index: Raft's applied index moves when it
	// hands entries to the state machine, before they are applied.
	applied := s.fsm.AppliedIndex()
	if applied >= s.node.StartIndex {
		return true, "" // also a node that started without state
	}
	if s.leadReady.Load() {
		return true, "" // elected, and the barrier applied every committed entry
	}
	if lc, ok := s.nodes.leaderCommit(); ok && s.node.Raft.AppliedIndex() >= lc && s.fsmIdle() {
		return true, ""
	}
	return false, fmt.Sprintf("catching up after a restart: applied the log up to %d of the %d this coordinator held; retry shortly", applied, s.node.StartIndex)
}

// fsmIdle reports whether Raft has no entries queued for the state machine
// (Raft's applied index counts entries handed over, not yet applied).
func (s *Server) fsmIdle() bool {
	return s.node.Raft.Stats()["fsm_pending"] == "0"
}

// ready is the API's readiness for reads.
func (s *Server) ready() (bool, string) {
	if s.caughtUp.Load() {
		return true, ""
	}
	return s.caughtUpNow()
}

// leaderCommit is the commit index the current Raft leader announced last,
// if it announced one since this node started.
func (t *nodeTable) leaderCommit() (uint64, bool) {
	_, id := t.s.node.Raft.LeaderWithID()
	if id == "" {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.nodes[string(id)]
	if !ok || !st.GetLeader() || st.GetSeenAt().AsTime().Before(t.s.started) {
		return 0, false
	}
	return st.GetCommitIndex(), true
}
