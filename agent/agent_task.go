package agent

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func marshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func nowProto() *timestamppb.Timestamp { return timestamppb.Now() }

// handleAssignment accepts or refuses an assignment. An attempt is the
// agent's only once it has answered yes; a lost answer makes the leader
// requeue it, and the next heartbeat's reconciliation stops the orphan.
func (a *Agent) handleAssignment(m *nats.Msg) {
	respond := func(ok bool, reason string) {
		data, _ := marshal(&gv1.AssignmentReply{Accepted: ok, Reason: reason})
		if err := m.Respond(data); err != nil {
			a.log.Debug("answer assignment", zap.Error(err))
		}
	}
	var as gv1.Assignment
	if err := proto.Unmarshal(m.Data, &as); err != nil {
		respond(false, "malformed assignment: "+err.Error())
		return
	}
	ref := as.GetRef()
	if ref.GetJobId() == "" || ref.GetTask() == "" || ref.GetAttempt() <= 0 {
		respond(false, "assignment.ref: job_id, task and a positive attempt are required")
		return
	}
	if !a.canRun(as.GetSpec()) {
		respond(false, "no executor for this task on this agent")
		return
	}
	k := keyOf(ref)
	a.mu.Lock()
	switch {
	case a.killed || a.draining:
		a.mu.Unlock()
		respond(false, "draining")
		return
	case a.running[k] != nil || a.spool.has(k):
		a.mu.Unlock()
		respond(true, "") // a repeated delivery of what we already hold
		return
	case len(a.running) >= a.cfg.Slots:
		a.mu.Unlock()
		respond(false, "no free slot")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.running[k] = &task{ref: ref, cancel: cancel}
	a.wg.Add(1)
	a.mu.Unlock()
	respond(true, "")
	go func() {
		defer a.wg.Done()
		defer cancel()
		a.runTask(ctx, &as)
	}()
}

func (a *Agent) runTask(ctx context.Context, as *gv1.Assignment) {
	ref := as.GetRef()
	log := a.log.With(zap.String("job", ref.JobId), zap.String("task", ref.Task), zap.Int32("attempt", ref.Attempt))
	log.Info("task started")
	sink := newLogSink(a, ref)
	started := time.Now()
	res := a.execute(ctx, as, sink)
	sink.close()
	rep := &gv1.Report{
		Ref:        ref,
		Success:    res.success(),
		ExitCode:   int32(res.exitCode),
		Failure:    res.class,
		Outputs:    res.outputs,
		StartedAt:  timestamppb.New(started),
		FinishedAt: timestamppb.Now(),
		Agent:      a.cfg.Name,
	}
	if res.err != nil {
		rep.Error = res.err.Error()
	}
	a.mu.Lock()
	if !a.killed {
		if err := a.spool.put(rep); err != nil {
			log.Error("spool result", zap.Error(err))
		}
	}
	delete(a.running, keyOf(ref))
	a.mu.Unlock()
	log.Info("task finished", zap.Bool("success", rep.Success), zap.Int32("exit_code", rep.ExitCode), zap.String("error", rep.Error))
}

// handleControl obeys drain and cancel.
func (a *Agent) handleControl(m *nats.Msg) {
	var c gv1.AgentControl
	if err := proto.Unmarshal(m.Data, &c); err != nil {
		a.log.Warn("malformed control message", zap.Error(err))
		return
	}
	switch x := c.Action.(type) {
	case *gv1.AgentControl_Drain:
		a.Drain()
	case *gv1.AgentControl_Cancel:
		a.mu.Lock()
		t := a.running[keyOf(x.Cancel.GetRef())]
		a.mu.Unlock()
		if t != nil {
			a.log.Info("task canceled", zap.String("job", t.ref.JobId), zap.String("task", t.ref.Task),
				zap.Int32("attempt", t.ref.Attempt), zap.String("reason", x.Cancel.GetReason()))
			t.cancel()
		}
	}
}

// logSink batches a task's output into LogChunks on the task's log subject.
// Chunks go to the log stream with JetStream acks; close waits for them, so
// a task's log is stored before its result is reported.
type logSink struct {
	a    *Agent
	ref  *gv1.TaskRef
	subj string

	mu     sync.Mutex
	seq    uint64
	buf    []byte
	stream gv1.LogStream
	timer  *time.Timer
	// sent are published chunks not yet known to be stored.
	sent []sentChunk
}

type sentChunk struct {
	data []byte
	ack  jetstream.PubAckFuture // nil when the publish itself failed
}

const (
	logFlushBytes = 32 << 10
	logFlushAfter = 100 * time.Millisecond
)

func newLogSink(a *Agent, ref *gv1.TaskRef) *logSink {
	return &logSink{a: a, ref: ref, subj: a.ns.Log(ref.JobId, ref.Task)}
}

func (s *logSink) Write(stream gv1.LogStream, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) > 0 && stream != s.stream {
		s.flushLocked(false)
	}
	s.stream = stream
	s.buf = append(s.buf, p...)
	if len(s.buf) >= logFlushBytes {
		s.flushLocked(false)
		return
	}
	if s.timer == nil {
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
	// Forget chunks already stored, oldest first.
	for len(s.sent) > 0 && stored(s.sent[0].ack) {
		s.sent = s.sent[1:]
	}
	s.sent = append(s.sent, sentChunk{data: data, ack: ack})
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

// close flushes the rest with an end-of-log mark and waits, briefly, for
// the stream to store every chunk, so that normally a task's output is
// stored before its result is reported. Chunks the stream refused (a log
// stream still forming, a stream leader that moved) are published again in
// the background for a while; the result does not wait for them.
func (s *logSink) close() {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.flushLocked(true)
	sent := s.sent
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
