package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryci/gantry/internal/bench/sim"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// retained runs n no-op tasks (in 20-task jobs, as throughput) through the
// simulated fleet until every job has ended, then measures what holding
// them costs the leader: its resident memory, a snapshot of the whole state
// saved over the API (gantry snapshot save), and a restart (SIGKILL, then
// the same command line) until it serves again; and the longest pause
// between two acknowledged submits of a steady probe during the run.
func retained(ctx context.Context, t *target, fleet *sim.Fleet, n int, progress func(string), res *Result) error {
	labels := map[string]string{"bench": "fleet"}
	tasks := make([]*gv1.TaskSpec, 20)
	for i := range tasks {
		tasks[i] = noopTask(fmt.Sprintf("t%d", i), labels)
	}
	spec := &gv1.JobSpec{Name: "retained", Tasks: tasks}
	jobs := int64((n + len(tasks) - 1) / len(tasks))
	start := fleet.Finished.Load()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acks []time.Time
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				if next.Add(1) > jobs {
					return
				}
				for ctx.Err() == nil && next.Load()*20-(fleet.Finished.Load()-start) > 4000 {
					time.Sleep(2 * time.Millisecond)
				}
				cctx, c := context.WithTimeout(ctx, 10*time.Second)
				_, err := t.client(i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
				c()
				if err != nil {
					next.Add(-1) // submit it again
					continue
				}

			}
		}()
	}
	// A probe submits a one-task job every 10 ms throughout: the longest
	// pause between its acknowledgements is what a client sees while the
	// state grows and is snapshotted (the bulk submitters pause on their
	// own when the backlog is full).
	probeCtx, stopProbe := context.WithCancel(ctx)
	var probes sync.WaitGroup
	probes.Add(1)
	go func() {
		defer probes.Done()
		one := &gv1.JobSpec{Name: "retained-probe", Tasks: []*gv1.TaskSpec{noopTask("t", labels)}}
		for i := 0; probeCtx.Err() == nil; i++ {
			cctx, c := context.WithTimeout(probeCtx, 10*time.Second)
			_, err := t.client(i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: one, View: gv1.JobView_JOB_VIEW_BASIC})
			c()
			if err == nil {
				mu.Lock()
				acks = append(acks, time.Now())
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	began := time.Now()
	for done := 0; ctx.Err() == nil; {
		time.Sleep(time.Second)
		fin := fleet.Finished.Load() - start
		if d := int(fin * 10 / int64(n)); d > done && d < 10 {
			done = d
			progress(fmt.Sprintf("%d of %d tasks finished (%s)", fin, n, time.Since(began).Round(time.Second)))
		}
		mu.Lock()
		probed := int64(len(acks))
		mu.Unlock()
		if fin >= jobs*20+probed {
			break
		}
	}
	wg.Wait()
	stopProbe()
	probes.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i].Sub(acks[i-1]))
	}
	res.RetainedMaxGapMs = ms(gap)
	// Ended in the state as well (the last reports committed).
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := t.client(0).ListJobs(ctx, &gv1.ListJobsRequest{Limit: 1, States: []gv1.JobState{gv1.JobState_JOB_STATE_PENDING, gv1.JobState_JOB_STATE_RUNNING}})
		if err == nil && resp.GetTotal() == 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("jobs still open a minute after their tasks finished")
		}
		time.Sleep(100 * time.Millisecond)
	}
	total, err := t.client(0).ListJobs(ctx, &gv1.ListJobsRequest{Limit: 1})
	if err != nil {
		return err
	}
	// Every bulk job has 20 tasks, every probe one.
	res.RetainedTasks = (int(total.GetTotal())-len(acks))*len(tasks) + len(acks)
	if m, err := t.leaderMetrics(ctx); err == nil {
		rss := m["process_resident_memory_bytes"] / (1 << 20)
		res.RetainedRSSMB = &rss
	}
	leader, err := t.leaderIndex(ctx)
	if err != nil {
		return err
	}
	progress("saving a snapshot of the whole state")
	s0 := time.Now()
	stream, err := t.clients[leader].SaveSnapshot(ctx, &gv1.SaveSnapshotRequest{})
	if err != nil {
		return err
	}
	size := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("save snapshot: %w", err)
		}
		size += len(m.GetData())
	}
	snap := time.Since(s0).Seconds()
	mb := float64(size) / (1 << 20)
	res.RetainedSnapshotS, res.RetainedSnapshotMB = &snap, &mb
	progress("restarting the leader")
	t.local.kill(leader)
	r0 := time.Now()
	if err := t.local.restart(ctx, leader, t.local.binary); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	restart := time.Since(r0).Seconds()
	res.RetainedRestartS = &restart
	return nil
}

// leaderIndex is the index of the local node that says it leads.
func (t *target) leaderIndex(ctx context.Context) (int, error) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for i, c := range t.clients {
			st, err := c.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
			if err == nil && st.LeaderId == t.local.nodes[i].id {
				return i, nil
			}
		}
	}
	return -1, errors.New("no node says it leads")
}
