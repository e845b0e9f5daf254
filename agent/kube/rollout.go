package kube

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// syncCheckEvery is how often the health wait looks again while its
// informers are still listing: the last event of the initial list may
// arrive before the informer reports it has synced.
const syncCheckEvery = 20 * time.Millisecond

// unhealthyError is a rollout that did not become healthy.
type unhealthyError struct{ msg string }

func (e *unhealthyError) Error() string        { return e.msg }
func (e *unhealthyError) Is(target error) bool { return target == ErrUnhealthy }

// waitHealthy watches the workloads among objs until all are healthy, one
// fails, or the health timeout passes. It writes a line each time what it
// waits for changes.
func (d *deploy) waitHealthy(ctx context.Context, objs []*object) error {
	var workloads []*object
	var keys []liveKey
	for _, o := range objs {
		if isWorkload(o.ref) {
			workloads = append(workloads, o)
			keys = append(keys, keyOf(o))
		}
	}
	if len(workloads) == 0 {
		return nil
	}
	changed := make(chan struct{}, 1)
	var mu sync.Mutex
	var watchErr error
	live := d.c.startLive(ctx, keys, bySelector(appSelector(d.app)),
		func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
		func(err error) {
			mu.Lock()
			watchErr = err
			mu.Unlock()
		})
	defer live.stop()

	deadline := time.NewTimer(d.timeout)
	defer deadline.Stop()
	var waiting []string
	last := ""
	for {
		synced := live.synced()
		if synced {
			var fail string
			waiting, fail = evaluate(live, workloads)
			if fail != "" {
				return &unhealthyError{msg: fmt.Sprintf("rollout of %s failed (%s)", d.app, fail)}
			}
			if len(waiting) == 0 {
				return nil
			}
			if waiting[0] != last {
				last = waiting[0]
				d.logf("waiting for %s", last)
			}
		}
		var recheck <-chan time.Time
		if !synced {
			recheck = time.After(syncCheckEvery)
		}
		select {
		case <-changed:
		case <-recheck:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			mu.Lock()
			err := watchErr
			mu.Unlock()
			if !synced && err != nil {
				return fmt.Errorf("watch the rollout of %s: %w", d.app, err)
			}
			why := "its workloads were not listed yet"
			if len(waiting) > 0 {
				why = strings.Join(waiting, "; ")
			}
			return &unhealthyError{msg: fmt.Sprintf("rollout of %s did not become healthy within %s (%s)",
				d.app, shortDuration(d.timeout), why)}
		}
	}
}

// evaluate returns what the workloads are waiting for and what failed
// ("" when nothing did).
func evaluate(live *liveCache, workloads []*object) (waiting []string, fail string) {
	for _, o := range workloads {
		u, ok := live.get(keyOf(o), o.ref)
		if !ok {
			waiting = append(waiting, o.ref.kindName()+": not found")
			continue
		}
		h, msg := workloadHealth(u, o.generation)
		switch h {
		case failed:
			return nil, o.ref.kindName() + ": " + msg
		case progressing:
			waiting = append(waiting, o.ref.kindName()+": "+msg)
		}
	}
	return waiting, ""
}
