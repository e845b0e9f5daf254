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
		j := s.jobs[id]
		if prunable(j, before) {
			delete(s.jobs, id)
			if k := j.IdempotencyKey; k != "" && s.byKey[k] == id {
				delete(s.byKey, k)
			}
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

func prunable(j *gv1.Job, before time.Time) bool {
	return JobFinal(j.GetState()) && j.GetFinishedAt() != nil && j.GetFinishedAt().AsTime().Before(before)
}

// Prunable counts the jobs that ended before t.
func (f *FSM) Prunable(t time.Time) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, j := range f.state.jobs {
		if prunable(j, t) {
			n++
		}
	}
	return n
}
