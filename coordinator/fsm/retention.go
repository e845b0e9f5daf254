package fsm

import (
	"fmt"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// pruneJobs forgets the jobs that ended before the command's cutoff. The
// result's JobID is empty; Pruned counts them.
func (s *state) pruneJobs(c *gv1.PruneJobsCommand) Result {
	cutoff := c.GetFinishedBefore()
	if cutoff == nil {
		return Result{Err: fmt.Errorf("prune jobs: finished_before is required: %w", ErrInvalid)}
	}
	before := cutoff.AsTime()
	pruned := 0
	s.oldestEnd = 0
	s.order.keep(func(id string, data []byte) bool {
		if data == nil {
			return true // live: only ended jobs are pruned
		}
		sj := s.sealed[id]
		if !sj.prunable(before) {
			s.noteEnd(sj.finished)
			return true
		}
		if k := sj.key; k != "" && s.byKey[k] == id {
			delete(s.byKey, k)
		}
		delete(s.sealed, id)
		s.endedBy[sj.state]--
		pruned++
		return false
	})
	return Result{Pruned: pruned}
}

func (sj sealedJob) prunable(before time.Time) bool {
	return JobFinal(sj.state) && sj.finished != 0 && sj.finished < before.UnixNano()
}

// PrunableBefore reports whether a job ended before t, without a walk:
// counting them walked every ended job, a minute apart, with Apply waiting.
func (f *FSM) PrunableBefore(t time.Time) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.oldestEnd != 0 && f.state.oldestEnd < t.UnixNano()
}
