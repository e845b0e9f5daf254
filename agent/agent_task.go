package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/agent/exec"
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
	if as.GetSpec().GetExec() == nil {
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
	res := a.runner.Run(ctx, exec.Request{
		Spec:    as.GetSpec().GetExec(),
		Timeout: as.GetSpec().GetTimeout().AsDuration(),
		Env: []string{
			"GANTRY_JOB_ID=" + ref.JobId,
			"GANTRY_JOB_NAME=" + as.GetJobName(),
			"GANTRY_TASK=" + ref.Task,
			fmt.Sprintf("GANTRY_ATTEMPT=%d", ref.Attempt),
			"GANTRY_AGENT=" + a.cfg.Name,
		},
		Name: fmt.Sprintf("%s-%s-%d", ref.JobId, ref.Task, ref.Attempt),
	}, sink)
	sink.close()
	rep := &gv1.Report{
		Ref:        ref,
		Success:    res.Success(),
		ExitCode:   int32(res.ExitCode),
		Failure:    res.Class,
		StartedAt:  timestamppb.New(started),
		FinishedAt: timestamppb.Now(),
		Agent:      a.cfg.Name,
	}
	if res.Err != nil {
		rep.Error = res.Err.Error()
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
	if _, err := s.a.js.PublishAsync(s.subj, data); err != nil {
		s.a.log.Debug("publish log", zap.Error(err))
	}
}

// close flushes the rest with an end-of-log mark and waits (bounded) for
// the stream to have stored every chunk.
func (s *logSink) close() {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.flushLocked(true)
	s.mu.Unlock()
	select {
	case <-s.a.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		s.a.log.Warn("log stream did not acknowledge all output", zap.String("job", s.ref.JobId), zap.String("task", s.ref.Task))
	}
}
