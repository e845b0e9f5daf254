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
	kept := s.order[:0]
	pruned := 0
	for _, id := range s.order {
		// Only ended jobs are pruned, and ended jobs are sealed.
		if sj, ok := s.sealed[id]; ok && sj.prunable(before) {
			if k := sj.key; k != "" && s.byKey[k] == id {
				delete(s.byKey, k)
			}
			delete(s.sealed, id)
			pruned++
			continue
		}
		kept = append(kept, id)
	}
	// Clear the tail so the pruned IDs are not kept alive by the array.
	for i := len(kept); i < len(s.order); i++ {
		s.order[i] = ""
	}
	s.order = kept
	return Result{Pruned: pruned}
}

func (sj sealedJob) prunable(before time.Time) bool {
	return JobFinal(sj.state) && sj.finished != 0 && sj.finished < before.UnixNano()
}

// Prunable counts the jobs that ended before t.
func (f *FSM) Prunable(t time.Time) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, sj := range f.state.sealed {
		if sj.prunable(t) {
			n++
		}
	}
	return n
}
