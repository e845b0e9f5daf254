package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/agent/mask"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// logSink batches a task's output into LogChunks on the task's log subject.
// Chunks go to the log stream with JetStream acks; close waits for them, so
// a task's log is stored before its result is reported.
//
// Before anything is published the output is masked, each stream through
// its own mask.Stream (a secret split across two writes is masked too),
// then rate limited: one token bucket per task, limit.LogRate bytes a
// second with bursts of limit.LogBurst. Output past it is dropped, and a
// system line says how many bytes were (at most once a second, and at the
// end). Chunks hold at most limit.LogChunk bytes, and at most
// logRetryBytes of published chunks are kept for publishing again, so a
// task printing forever holds a bounded amount of the agent's memory.
type logSink struct {
	a    *Agent
	ref  *gv1.TaskRef
	subj string
	mask *mask.Masker
	now  func() time.Time

	mu      sync.Mutex
	closed  bool
	streams map[gv1.LogStream]*mask.Stream
	bucket  bucket
	// dropped counts the bytes dropped since the last notice.
	dropped    int64
	lastNotice time.Time
	seq        uint64
	buf        []byte
	stream     gv1.LogStream
	timer      *time.Timer
	// sent are published chunks not yet known to be stored; sentBytes
	// their size. forgotten counts chunks dropped from sent unconfirmed.
	sent      []sentChunk
	sentBytes int
	forgotten int
}

type sentChunk struct {
	data []byte
	ack  jetstream.PubAckFuture // nil when the publish itself failed
}

const (
	logFlushBytes = 32 << 10
	logFlushAfter = 100 * time.Millisecond
	// logRetryBytes and logRetryChunks bound the published chunks a task
	// keeps until the stream confirms them, to publish them again if it
	// does not; older ones are forgotten.
	logRetryBytes  = 8 << 20
	logRetryChunks = 1024
)

func newLogSink(a *Agent, ref *gv1.TaskRef, m *mask.Masker) *logSink {
	return newLogSinkClock(a, ref, m, time.Now)
}

func newLogSinkClock(a *Agent, ref *gv1.TaskRef, m *mask.Masker, now func() time.Time) *logSink {
	return &logSink{
		a: a, ref: ref, subj: a.ns.Log(ref.JobId, ref.Task, a.cfg.Name), mask: m, now: now,
		streams: map[gv1.LogStream]*mask.Stream{},
		bucket:  newBucket(limit.LogRate, limit.LogBurst, now()),
	}
}

// Write masks p and publishes it, within the rate limit.
func (s *logSink) Write(stream gv1.LogStream, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	ms := s.streams[stream]
	if ms == nil {
		ms = s.mask.Stream()
		s.streams[stream] = ms
	}
	s.emitLocked(stream, ms.Write(p))
}

// system writes a line of the agent's own.
func (s *logSink) system(line string) {
	s.Write(gv1.LogStream_LOG_STREAM_SYSTEM, []byte(line+"\n"))
}

// emitLocked adds what the rate limit lets through of masked data.
func (s *logSink) emitLocked(stream gv1.LogStream, data []byte) {
	if len(data) == 0 {
		return
	}
	now := s.now()
	if s.dropped > 0 && now.Sub(s.lastNotice) >= time.Second {
		s.noticeLocked(now)
	}
	n := s.bucket.take(now, len(data))
	s.dropped += int64(len(data) - n)
	s.appendLocked(stream, data[:n])
}

// noticeLocked says how much output was dropped since the last notice.
// Notices are not charged to the bucket; there is at most one a second.
func (s *logSink) noticeLocked(now time.Time) {
	line := fmt.Sprintf("[gantry] %d bytes of output dropped: over the log rate limit of %d KiB/s (bursts of %d MiB)\n",
		s.dropped, limit.LogRate>>10, limit.LogBurst>>20)
	s.dropped = 0
	s.lastNotice = now
	s.appendLocked(gv1.LogStream_LOG_STREAM_SYSTEM, []byte(line))
}

// appendLocked buffers data, publishing a chunk whenever logFlushBytes
// are buffered; no chunk exceeds limit.LogChunk.
func (s *logSink) appendLocked(stream gv1.LogStream, data []byte) {
	if len(data) == 0 {
		return
	}
	if len(s.buf) > 0 && stream != s.stream {
		s.flushLocked(false)
	}
	s.stream = stream
	for len(data) > 0 {
		n := min(len(data), limit.LogChunk-len(s.buf))
		s.buf = append(s.buf, data[:n]...)
		data = data[n:]
		if len(s.buf) >= logFlushBytes {
			s.flushLocked(false)
		}
	}
	if len(s.buf) > 0 && s.timer == nil {
		s.timer = time.AfterFunc(logFlushAfter, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.timer = nil
			s.flushLocked(false)
		})
	}
}

func (s *logSink) flushLocked(eof bool) {
	if len(s.buf) == 0 && !eof {
		return
	}
	s.seq++
	chunk := &gv1.LogChunk{Ref: s.ref, Seq: s.seq, Stream: s.stream, Data: s.buf, At: timestamppb.Now(), Eof: eof}
	s.buf = nil
	data, err := marshal(chunk)
	if err != nil {
		return
	}
	ack, err := s.a.js.PublishAsync(s.subj, data)
	if err != nil {
		s.a.log.Debug("publish log", zap.Error(err))
		ack = nil
	}
	// Forget chunks already stored, oldest first, and the oldest of the
	// rest past the bounds.
	for len(s.sent) > 0 && stored(s.sent[0].ack) {
		s.sentBytes -= len(s.sent[0].data)
		s.sent = s.sent[1:]
	}
	s.sent = append(s.sent, sentChunk{data: data, ack: ack})
	s.sentBytes += len(data)
	for len(s.sent) > 1 && (s.sentBytes > logRetryBytes || len(s.sent) > logRetryChunks) {
		if !stored(s.sent[0].ack) {
			s.forgotten++
		}
		s.sentBytes -= len(s.sent[0].data)
		s.sent = s.sent[1:]
	}
}

func stored(ack jetstream.PubAckFuture) bool {
	if ack == nil {
		return false
	}
	select {
	case <-ack.Ok():
		return true
	default:
		return false
	}
}

// close publishes what the masks held back, a last notice of dropped
// output and the rest with an end-of-log mark, and waits, briefly, for the
// stream to store every chunk, so that normally a task's output is stored
// before its result is reported. Chunks the stream refused (a log stream
// still forming, a stream leader that moved) are published again in the
// background for a while; the result does not wait for them.
func (s *logSink) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	for _, st := range slices.Sorted(maps.Keys(s.streams)) {
		s.emitLocked(st, s.streams[st].Flush())
	}
	if s.dropped > 0 {
		s.noticeLocked(s.now())
	}
	s.flushLocked(true)
	s.closed = true
	sent := s.sent
	forgotten := s.forgotten
	s.sent = nil
	s.mu.Unlock()
	deadline := time.After(2 * time.Second)
	expired := false
	var retry [][]byte
	for _, c := range sent {
		if c.ack != nil && !expired {
			select {
			case <-c.ack.Ok():
				continue
			case <-c.ack.Err():
				retry = append(retry, c.data)
				continue
			case <-deadline:
				expired = true
			}
		}
		if !stored(c.ack) {
			retry = append(retry, c.data)
		}
	}
	if forgotten > 0 && !s.a.isKilled() {
		s.a.log.Warn("log stream did not confirm all output in time", zap.String("job", s.ref.JobId),
			zap.String("task", s.ref.Task), zap.Int("chunks_unconfirmed", forgotten))
	}
	if len(retry) == 0 {
		return
	}
	s.a.logWG.Add(1)
	go func() {
		defer s.a.logWG.Done()
		ctx, cancel := context.WithTimeout(s.a.logCtx, 2*time.Minute)
		defer cancel()
		lost := 0
		for _, data := range retry {
			if !s.republish(ctx, data) {
				lost++
			}
		}
		if lost > 0 && !s.a.isKilled() {
			s.a.log.Warn("log stream did not store all output", zap.String("job", s.ref.JobId),
				zap.String("task", s.ref.Task), zap.Int("chunks_lost", lost))
		}
	}()
}

func (s *logSink) republish(ctx context.Context, data []byte) bool {
	wait := 100 * time.Millisecond
	for !s.a.isKilled() {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.a.js.Publish(pctx, s.subj, data)
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
			wait = min(2*wait, 2*time.Second)
		}
	}
	return false
}

// bucket is a token bucket of bytes.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newBucket(rate, burst int, now time.Time) bucket {
	return bucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// take returns how many of n bytes may pass at now, and takes them.
func (b *bucket) take(now time.Time, n int) int {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	k := min(n, int(b.tokens))
	b.tokens -= float64(k)
	return k
}
