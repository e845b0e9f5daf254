package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// backlogTasks is the depth the backlog scenario grows the queue to, in
// jobs of backlogJobTasks tasks spread over backlogLabelSets label sets
// that no agent has.
const (
	backlogTasks     = 100_000
	backlogJobTasks  = 100
	backlogLabelSets = 50
	backlogProbes    = 200
)

// backlogFigures are one depth's measurements.
type backlogFigures struct {
	pass, submit, start, finish time.Duration
}

// backlog measures, with 100 and then 100,000 tasks pending that no agent
// can take, what a scheduling pass costs on the leader (its
// gantry_schedule_pass_seconds) and what a submit, a start and a finish
// of other tasks cost: 200 one-task jobs for the simulated fleet at 100/s.
// The backlog is canceled at the end.
func backlog(ctx context.Context, t *target, p *latencyProbe, progress func(string)) (small, big backlogFigures, err error) {
	var jobs []string
	var mu sync.Mutex
	submitBacklog := func(from, to int) error {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		next := make(chan int)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					tasks := make([]*gv1.TaskSpec, backlogJobTasks)
					for i := range tasks {
						tasks[i] = noopTask(fmt.Sprintf("t%d", i), map[string]string{"backlog": strconv.Itoa((j*backlogJobTasks + i) % backlogLabelSets)})
					}
					cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					resp, err := t.client(w).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: &gv1.JobSpec{Name: fmt.Sprintf("backlog-%d", j), Tasks: tasks}, View: gv1.JobView_JOB_VIEW_BASIC})
					cancel()
					if err != nil {
						select {
						case errs <- err:
						default:
						}
						continue
					}
					mu.Lock()
					jobs = append(jobs, resp.Job.Id)
					mu.Unlock()
				}
			}()
		}
		for j := from; j < to; j++ {
			next <- j
		}
		close(next)
		wg.Wait()
		select {
		case err := <-errs:
			return fmt.Errorf("submit backlog: %w", err)
		default:
			return nil
		}
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range jobs {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = t.client(0).CancelJob(cctx, &gv1.CancelJobRequest{JobId: id})
			cancel()
		}
	}()

	if err := submitBacklog(0, 1); err != nil {
		return small, big, err
	}
	progress(fmt.Sprintf("%d tasks pending", backlogJobTasks))
	if small, err = backlogProbe(ctx, t, p, "small"); err != nil {
		return small, big, err
	}
	progress(fmt.Sprintf("growing the queue to %d pending tasks", backlogTasks))
	if err := submitBacklog(1, backlogTasks/backlogJobTasks); err != nil {
		return small, big, err
	}
	big, err = backlogProbe(ctx, t, p, "big")
	return small, big, err
}

// backlogProbe submits backlogProbes one-task jobs for the fleet at 100/s
// and reads the leader's scheduling passes over the same time.
func backlogProbe(ctx context.Context, t *target, p *latencyProbe, tag string) (backlogFigures, error) {
	var f backlogFigures
	before, err := t.leaderMetrics(ctx)
	if err != nil {
		return f, err
	}
	p.mu.Lock()
	d0, f0 := len(p.dispatch), len(p.finish)
	p.mu.Unlock()
	labels := map[string]string{"bench": "fleet"}
	var submits []time.Duration
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range backlogProbes {
		<-tick.C
		name := fmt.Sprintf("lat-backlog-%s-%d", tag, i)
		spec := &gv1.JobSpec{Name: name, Tasks: []*gv1.TaskSpec{noopTask("t", labels)}}
		at := time.Now()
		p.submit(name, at)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := t.client(i).SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, View: gv1.JobView_JOB_VIEW_BASIC})
		cancel()
		if err != nil {
			return f, fmt.Errorf("probe submit: %w", err)
		}
		submits = append(submits, time.Since(at))
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		p.mu.Lock()
		n := len(p.finish) - f0
		p.mu.Unlock()
		if n >= backlogProbes {
			break
		}
		if time.Now().After(deadline) {
			return f, fmt.Errorf("%d of %d probe tasks finished in 60s", n, backlogProbes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	after, err := t.leaderMetrics(ctx)
	if err != nil {
		return f, err
	}
	if n := after["gantry_schedule_pass_seconds_count"] - before["gantry_schedule_pass_seconds_count"]; n > 0 {
		f.pass = time.Duration((after["gantry_schedule_pass_seconds_sum"] - before["gantry_schedule_pass_seconds_sum"]) / n * float64(time.Second))
	}
	p.mu.Lock()
	f.start = quantile(p.dispatch[d0:], 0.5)
	f.finish = quantile(p.finish[f0:], 0.5)
	p.mu.Unlock()
	f.submit = quantile(submits, 0.5)
	return f, nil
}

// leaderProfile writes a CPU profile of the leader over d to path
// (/debug/pprof/profile, with the admin token).
func (t *target) leaderProfile(ctx context.Context, d time.Duration, path string) error {
	i, err := t.leaderIndex(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s%s/debug/pprof/profile?seconds=%d", t.local.scheme(), t.local.nodes[i].addrs.HTTP, int(d.Seconds())), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.local.token)
	hc := t.local.httpClient()
	hc.Timeout = d + 10*time.Second
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// leaderMetrics scrapes the leader's /metrics (local clusters only) and
// returns its series without labels.
func (t *target) leaderMetrics(ctx context.Context) (map[string]float64, error) {
	if t.local == nil {
		return nil, fmt.Errorf("needs --local (reads the leader's /metrics)")
	}
	st, err := t.client(0).ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	if err != nil {
		return nil, err
	}
	var addr string
	for _, n := range t.local.nodes {
		if n.id == st.LeaderId {
			addr = n.addrs.HTTP
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("leader %q is not a local node", st.LeaderId)
	}
	hc := t.local.httpClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(t.local.scheme() + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
