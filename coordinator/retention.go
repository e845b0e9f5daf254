package coordinator

import (
	"context"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// DefaultJobRetention is how long ended jobs are kept.
const DefaultJobRetention = 7 * 24 * time.Hour

// pruneLoop forgets, on the leader, jobs that ended more than the
// retention ago, so the state and its snapshots stay bounded. The cutoff is
// stamped into the command: replicas apply it without reading a clock.
func (s *Server) pruneLoop(ctx context.Context) {
	keep := s.cfg.JobRetention
	if keep <= 0 {
		return
	}
	every := min(keep/10, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-keep)
		if s.fsm.PrunableBefore(cutoff) {
			res, err := s.prop.ProposeOne(ctx, &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_PruneJobs{
				PruneJobs: &gv1.PruneJobsCommand{FinishedBefore: timestamppb.New(cutoff)},
			}})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("prune ended jobs", zap.Error(err))
				}
			} else {
				s.log.Info("pruned ended jobs", zap.Int("jobs", res.Pruned), zap.Duration("retention", keep))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
