package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
//
// They are appended to one file (spoolLog): a record per result and one
// per acknowledgement, and the file is rewritten with only the results
// still held once it is mostly acknowledgements. A file per result cost a
// create, a rename and an unlink per task: a quarter of the agent's CPU
// running `true` tasks, with creates waiting on the filesystem journal
// behind the coordinators' syncs.
type spool struct {
	dir string

	mu      sync.Mutex
	reports map[refKey]*gv1.Report
	notify  chan struct{}
	log     *os.File
	size    int64 // bytes in log
	held    int64 // bytes of the records of the results held
}

const (
	// spoolLog is the file the results and acknowledgements go to.
	spoolLog = "results.log"
	// spoolCompactAt is the size from which the log is rewritten once
	// three quarters of it are acknowledged results.
	spoolCompactAt = 1 << 20

	recordPut  byte = 1 // a result (gv1.Report)
	recordDone byte = 2 // an acknowledgement (gv1.TaskRef)

	// recordHeader: payload length (4 bytes), CRC-32C of kind and
	// payload (4), kind (1).
	recordHeader = 9
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func openSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	s := &spool{dir: dir, reports: map[refKey]*gv1.Report{}, notify: make(chan struct{})}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	// Results an older agent spooled a file each.
	var legacy []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pb") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		legacy = append(legacy, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read spool: %w", err)
		}
		var r gv1.Report
		if err := proto.Unmarshal(data, &r); err != nil {
			// A torn write from a crash: the lease will expire and the task
			// runs again, so dropping it loses nothing acknowledged.
			continue
		}
		if err := checkRef(r.GetRef()); err != nil || legacyFile(dir, keyOf(r.Ref)) != path {
			// Not a result this agent could have spooled (an older
			// version took unchecked names): its lease expires.
			continue
		}
		s.reports[keyOf(r.Ref)] = &r
	}
	data, err := os.ReadFile(filepath.Join(dir, spoolLog))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	s.replay(data)
	// Start from a log of the results held alone; the files go once it
	// holds them.
	if err := s.rewrite(); err != nil {
		return nil, err
	}
	for _, path := range legacy {
		os.Remove(path)
	}
	return s, nil
}

// replay applies the records of data, up to the first that is torn or
// damaged (a crash in the middle of an append: what follows it was never
// written).
func (s *spool) replay(data []byte) {
	for len(data) >= recordHeader {
		n := int(binary.LittleEndian.Uint32(data))
		if n > len(data)-recordHeader {
			return
		}
		body := data[8 : recordHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[4:]) {
			return
		}
		switch kind, payload := body[0], body[1:]; kind {
		case recordPut:
			var r gv1.Report
			if proto.Unmarshal(payload, &r) == nil && checkRef(r.GetRef()) == nil {
				s.reports[keyOf(r.Ref)] = &r
			}
		case recordDone:
			var ref gv1.TaskRef
			if proto.Unmarshal(payload, &ref) == nil {
				delete(s.reports, keyOf(&ref))
			}
		}
		data = data[recordHeader+n:]
	}
}

func record(kind byte, m proto.Message) ([]byte, error) {
	payload, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	b := make([]byte, recordHeader+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	b[8] = kind
	copy(b[recordHeader:], payload)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b, nil
}

// rewrite replaces the log by one holding only the results held (written
// aside, then renamed over it). With s.mu held, or before s is shared.
func (s *spool) rewrite() error {
	var buf []byte
	for _, r := range s.reports {
		rec, err := record(recordPut, r)
		if err != nil {
			return fmt.Errorf("write spool: %w", err)
		}
		buf = append(buf, rec...)
	}
	path := filepath.Join(s.dir, spoolLog)
	if err := os.WriteFile(path+".tmp", buf, 0o644); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	if s.log != nil {
		s.log.Close()
	}
	s.log, s.size, s.held = f, int64(len(buf)), int64(len(buf))
	return nil
}

// appendLocked appends a record; with s.mu held.
func (s *spool) appendLocked(rec []byte) error {
	if s.log == nil {
		return errors.New("write spool: closed")
	}
	n, err := s.log.Write(rec)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	return nil
}

// legacyFile is where an older agent spooled the result of k.
func legacyFile(dir string, k refKey) string {
	return filepath.Join(dir, fmt.Sprintf("%s_%s_%d.pb", k.job, k.task, k.attempt))
}

// checkRef checks the names of ref (they were the names of spool files,
// and are the agent's own subjects' tokens).
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
	rec, err := record(recordPut, r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.appendLocked(rec); err != nil {
		return err
	}
	s.held += int64(len(rec))
	s.reports[keyOf(r.Ref)] = r
	s.signalLocked()
	return nil
}

func (s *spool) remove(k refKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reports[k]
	if !ok {
		return
	}
	delete(s.reports, k)
	s.signalLocked()
	s.held -= int64(recordHeader + proto.Size(r))
	rec, err := record(recordDone, r.Ref)
	if err == nil {
		err = s.appendLocked(rec)
	}
	if err == nil && (s.size < spoolCompactAt || s.held*4 > s.size) {
		return
	}
	// Rewritten once mostly acknowledged, or to mend a failed append.
	// Should the rewrite fail too, the next acknowledgement tries again;
	// meanwhile a restart may deliver an acknowledged result again, which
	// the leader refuses as stale.
	_ = s.rewrite()
}

// close closes the log; what is held stays on disk for the next start.
func (s *spool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log != nil {
		s.log.Close()
		s.log = nil
	}
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
