package api

import (
	"context"
	"math"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/scheduler"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const (
	// latencyWindow is how far back started attempts count towards a
	// queue's schedule-to-start latency.
	latencyWindow = 15 * time.Minute
	// latencyJobs bounds the jobs scanned for started attempts.
	latencyJobs = 1000
)

// ListQueue lists the waiting tasks with the reason each waits and the
// schedule-to-start latency per label set. Only the leader's dispatcher
// knows the reasons, so a follower forwards the call.
// maxQueueListed is the most tasks ListQueue lists; its queues count all.
const maxQueueListed = 1000

func (s *Server) ListQueue(ctx context.Context, req *gv1.ListQueueRequest) (*gv1.ListQueueResponse, error) {
	resp := &gv1.ListQueueResponse{}
	queues := map[string]*gv1.QueueStats{}
	queue := func(labels map[string]string) *gv1.QueueStats {
		sel := scheduler.FormatLabels(labels)
		q, ok := queues[sel]
		if !ok {
			q = &gv1.QueueStats{Selector: sel, Labels: labels}
			queues[sel] = q
		}
		return q
	}
	for _, p := range s.d.FSM.Pending() {
		t := &gv1.QueuedTask{
			JobId:       p.Key.JobID,
			JobName:     p.JobName,
			Task:        p.Key.Task,
			State:       gv1.TaskState_TASK_STATE_PENDING,
			Priority:    p.Priority,
			Labels:      p.Spec.GetLabels(),
			QueuedAt:    timestamppb.New(time.Unix(0, p.QueuedAt)),
			RunnableAt:  timestamppb.New(time.Unix(0, p.RunnableAt)),
			Reason:      s.d.Dispatcher.Reason(p),
			Attempt:     p.Attempt,
			Concurrency: p.Spec.GetConcurrency(),
		}
		if p.NotBefore > 0 {
			t.NotBefore = timestamppb.New(time.Unix(0, p.NotBefore))
		}
		queue(t.Labels).Pending++
		if len(resp.Tasks) == maxQueueListed {
			resp.Truncated = true
			continue
		}
		resp.Tasks = append(resp.Tasks, t)
	}
	for _, b := range s.d.FSM.Blocked() {
		queue(b.Spec.GetLabels()).Blocked++
		if len(resp.Tasks) == maxQueueListed {
			resp.Truncated = true
			continue
		}
		resp.Tasks = append(resp.Tasks, &gv1.QueuedTask{
			JobId:       b.Key.JobID,
			JobName:     b.JobName,
			Task:        b.Key.Task,
			State:       gv1.TaskState_TASK_STATE_BLOCKED,
			Priority:    b.Priority,
			Labels:      b.Spec.GetLabels(),
			QueuedAt:    timestamppb.New(b.CreatedAt),
			Reason:      "needs " + strings.Join(b.Unmet, ", "),
			Concurrency: b.Spec.GetConcurrency(),
		})
	}
	waits := map[string][]time.Duration{}
	for _, smp := range s.d.FSM.RecentStarts(time.Now().Add(-latencyWindow), latencyJobs) {
		q := queue(smp.Labels)
		waits[q.Selector] = append(waits[q.Selector], smp.Wait)
	}
	for sel, ws := range waits {
		sort.Slice(ws, func(a, b int) bool { return ws[a] < ws[b] })
		q := queues[sel]
		q.Samples = int32(len(ws))
		q.P50 = durationpb.New(percentile(ws, 0.50))
		q.P95 = durationpb.New(percentile(ws, 0.95))
	}
	for _, q := range queues {
		resp.Queues = append(resp.Queues, q)
	}
	sort.Slice(resp.Queues, func(a, b int) bool { return resp.Queues[a].Selector < resp.Queues[b].Selector })
	return resp, nil
}

// percentile returns the nearest-rank percentile p (0..1] of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
