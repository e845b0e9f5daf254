package consensus

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// suspectFor is how long a follower keeps the short timeouts after it
// found the leader's Raft port closed: long enough for an election, then
// the configured timeouts come back.
const suspectFor = 3 * time.Second

// electStep staggers the followers' elections after a leader died: the
// survivors start theirs this far apart, in the order of their IDs.
const electStep = 20 * time.Millisecond

// crashWatch makes the followers of a dead leader elect another sooner.
// A follower learns of a dead leader only when heartbeats stop arriving
// for HeartbeatTimeout, checked at random times between one and two of it
// (300-600 ms with the defaults), and a follower votes for nobody while it
// still has a leader, so an election succeeded only once the second
// survivor had timed out as well; two that timed out together split the
// vote and waited another election timeout. That was most of a failover.
//
// A killed leader's connections to its followers end at once. On such an
// end a follower dials the leader's Raft address (a few times while the
// leader stays silent, see leaderGone); refused means nothing listens
// there: the process is gone (a partition or a slow leader does not answer
// so). Each survivor then times out the leader lease after the end it saw
// (the survivors see it within a millisecond or so of each other), the
// next survivor by ID electStep later, and so on: the second finds the
// first without a leader and wins at once, and no two start together. The
// heartbeat and election timeouts stay at the leader lease for suspectFor
// (the leader elected meanwhile may be killed too); a live leader
// heartbeats every tenth of its own timeout, far within them.
type crashWatch struct {
	r      *raft.Raft
	id     raft.ServerID
	stream *tlsStream
	addrs  raft.ServerAddressProvider
	log    *zap.Logger
	normal [2]time.Duration // heartbeat and election timeouts configured
	fast   time.Duration

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (w *crashWatch) run() {
	defer close(w.done)
	var restore <-chan time.Time
	for {
		select {
		case <-w.stop:
			return
		case seen := <-w.stream.dropped:
			if w.fast >= w.normal[0] {
				continue
			}
			dead, ok := w.leaderGone(seen)
			if !ok || !w.wait(dead, seen) {
				continue
			}
			// Raft checks its leader's last contact at once only when the
			// timeout shrinks: shortened already (the leader elected
			// after the last one died is gone too), it grows back first.
			if restore != nil {
				w.timeouts(w.normal[0], w.normal[1])
			}
			if w.timeouts(w.fast, w.fast) {
				restore = time.After(suspectFor)
			}
		case <-restore:
			restore = nil
			w.timeouts(w.normal[0], w.normal[1])
		}
	}
}

// wait waits for this follower's turn to time out after its leader died:
// the leader lease after the connection ended (seen: every survivor sees
// it end within a millisecond or so, which their last contacts with the
// leader are not), plus electStep for each surviving voter whose ID sorts
// before this node's. It reports false when the watch stops.
func (w *crashWatch) wait(dead raft.ServerID, seen time.Time) bool {
	rank := 0
	if f := w.r.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter && srv.ID != dead && srv.ID < w.id {
				rank++
			}
		}
	}
	t := time.NewTimer(time.Until(seen.Add(w.fast + time.Duration(rank)*electStep)))
	defer t.Stop()
	select {
	case <-w.stop:
		return false
	case <-t.C:
		return true
	}
}

// Probing a leader after one of its connections ended: while it sends
// nothing, its Raft address is dialed up to probeTries times, probeEvery
// apart (a process that exits closes its connections a moment before its
// listener).
const (
	probeTries = 5
	probeEvery = 50 * time.Millisecond
)

// leaderGone returns the leader this node follows when its Raft address
// refuses connections before the leader is heard from again after seen.
func (w *crashWatch) leaderGone(seen time.Time) (raft.ServerID, bool) {
	for try := 1; ; try++ {
		if w.r.State() != raft.Follower {
			return "", false
		}
		addr, id := w.r.LeaderWithID()
		if id == "" {
			return "", false
		}
		if w.addrs != nil {
			if a, err := w.addrs.ServerAddr(id); err == nil {
				addr = a
			}
		}
		if addr == "" {
			return "", false
		}
		c, err := w.stream.Dial(addr, time.Second)
		switch {
		case err == nil:
			c.Close()
		case errors.Is(err, syscall.ECONNREFUSED):
			w.log.Info("the leader's Raft address refuses connections: electing a new leader sooner",
				zap.String("leader", string(id)), zap.String("addr", string(addr)))
			return id, true
		default:
			return "", false // not an answer that says the process is gone
		}
		if try == probeTries || w.r.LastContact().After(seen) {
			return "", false
		}
		t := time.NewTimer(probeEvery)
		select {
		case <-w.stop:
			t.Stop()
			return "", false
		case <-t.C:
		}
	}
}

// timeouts sets Raft's heartbeat and election timeouts; it reports whether
// they were set.
func (w *crashWatch) timeouts(heartbeat, election time.Duration) bool {
	rc := w.r.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = heartbeat, election
	if err := w.r.ReloadConfig(rc); err != nil {
		w.log.Warn("set raft timeouts", zap.Duration("heartbeat", heartbeat), zap.Duration("election", election), zap.Error(err))
		return false
	}
	return true
}

func (w *crashWatch) close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return nil
}
