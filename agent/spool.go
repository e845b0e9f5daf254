package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/name"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// spool keeps finished results on disk until a coordinator acknowledges
// them, so they survive reconnects, leader changes and agent restarts.
type spool struct {
	dir string

	mu      sync.Mutex
	reports map[refKey]*gv1.Report
	notify  chan struct{}
}

func openSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	s := &spool{dir: dir, reports: map[refKey]*gv1.Report{}, notify: make(chan struct{})}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pb") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read spool: %w", err)
		}
		var r gv1.Report
		if err := proto.Unmarshal(data, &r); err != nil {
			// A torn write from a crash: the lease will expire and the task
			// runs again, so dropping it loses nothing acknowledged.
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		if err := checkRef(r.GetRef()); err != nil || s.file(keyOf(r.Ref)) != filepath.Join(dir, e.Name()) {
			// Not a result this agent could have spooled (an older
			// version took unchecked names): its lease expires.
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		s.reports[keyOf(r.Ref)] = &r
	}
	return s, nil
}

func (s *spool) file(k refKey) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s_%s_%d.pb", k.job, k.task, k.attempt))
}

// checkRef checks the names of ref, which become the name of a spool file.
func checkRef(ref *gv1.TaskRef) error {
	if err := name.Token(ref.GetJobId()); err != nil {
		return fmt.Errorf("job id: %w", err)
	}
	if err := name.Token(ref.GetTask()); err != nil {
		return fmt.Errorf("task: %w", err)
	}
	return nil
}

func (s *spool) put(r *gv1.Report) error {
	if err := checkRef(r.GetRef()); err != nil {
		return fmt.Errorf("spool result: %w", err)
	}
	data, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	k := keyOf(r.Ref)
	tmp := s.file(k) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	if err := os.Rename(tmp, s.file(k)); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	s.mu.Lock()
	s.reports[k] = r
	s.signalLocked()
	s.mu.Unlock()
	return nil
}

func (s *spool) remove(k refKey) {
	os.Remove(s.file(k))
	s.mu.Lock()
	delete(s.reports, k)
	s.signalLocked()
	s.mu.Unlock()
}

func (s *spool) signalLocked() {
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *spool) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *spool) has(k refKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.reports[k]
	return ok
}

func (s *spool) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reports)
}

func (s *spool) refs() []*gv1.TaskRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*gv1.TaskRef, 0, len(s.reports))
	for _, r := range s.reports {
		out = append(out, r.Ref)
	}
	return out
}

func (s *spool) list() []*gv1.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*gv1.Report, 0, len(s.reports))
	for _, r := range s.reports {
		out = append(out, r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].FinishedAt.AsTime().Before(out[b].FinishedAt.AsTime()) })
	return out
}

// reportsInFlight is how many results an agent delivers at once: each
// waits for its commit, and the leader batches concurrent commits into
// one Raft entry, so one at a time would cap an agent at one result per
// commit latency.
const reportsInFlight = 32

// reportLoop delivers spooled results to the leader until each is answered,
// up to reportsInFlight at once. An answer, accepted or refused as stale,
// is final; no answer (no leader, a timeout) means try again after a pause.
func (a *Agent) reportLoop(ctx context.Context) {
	var (
		mu       sync.Mutex
		inFlight = map[refKey]bool{}
		failed   bool
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	sem := make(chan struct{}, reportsInFlight)
	done := make(chan struct{}, 1)
	wait := 50 * time.Millisecond
	for {
		changed := a.spool.changed()
		mu.Lock()
		retry := failed
		failed = false
		mu.Unlock()
		if retry {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
				wait = min(2*wait, time.Second)
			}
		}
		for _, r := range a.spool.list() {
			if ctx.Err() != nil || a.isKilled() {
				return
			}
			k := keyOf(r.Ref)
			mu.Lock()
			busy := inFlight[k]
			if !busy {
				inFlight[k] = true
			}
			mu.Unlock()
			if busy {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok := a.deliver(ctx, r)
				mu.Lock()
				delete(inFlight, k)
				if !ok {
					failed = true
				}
				mu.Unlock()
				<-sem
				select {
				case done <- struct{}{}:
				default:
				}
			}()
		}
		mu.Lock()
		if !failed {
			wait = 50 * time.Millisecond
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-done:
		}
	}
}

func (a *Agent) deliver(ctx context.Context, r *gv1.Report) bool {
	data, err := marshal(r)
	if err != nil {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ReportTimeout)
	defer cancel()
	msg, err := a.nc.RequestWithContext(rctx, a.ns.Report(a.cfg.Name), data)
	if err != nil {
		a.log.Debug("deliver result", zap.String("job", r.Ref.JobId), zap.String("task", r.Ref.Task), zap.Error(err))
		return false
	}
	var reply gv1.ReportReply
	if err := proto.Unmarshal(msg.Data, &reply); err != nil {
		return false
	}
	if !reply.Accepted {
		a.log.Warn("result refused", zap.String("job", r.Ref.JobId), zap.String("task", r.Ref.Task),
			zap.Int32("attempt", r.Ref.Attempt), zap.String("reason", reply.Reason))
	}
	a.spool.remove(keyOf(r.Ref))
	return true
}
