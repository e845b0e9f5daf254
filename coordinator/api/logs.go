package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TaskLogs replays a job's (or one task's) log from the log stream and, with
// follow, keeps streaming until the job is final and the stream is drained.
func (s *Server) TaskLogs(req *gv1.TaskLogsRequest, stream gv1.GantryService_TaskLogsServer) error {
	ctx := stream.Context()
	job, ok := s.d.FSM.Job(req.GetJobId())
	if !ok {
		return status.Errorf(codes.NotFound, "job_id: no job %q", req.GetJobId())
	}
	filters := []string{s.d.Namespace.JobLogs(job.Id), s.d.Namespace.LegacyLogs(job.Id, "")}
	if req.GetTask() != "" {
		found := false
		for _, t := range job.Tasks {
			found = found || t.Name == req.GetTask()
		}
		if !found {
			return status.Errorf(codes.NotFound, "task: job %s has no task %q", job.Id, req.GetTask())
		}
		filters = []string{s.d.Namespace.TaskLogs(job.Id, req.GetTask()), s.d.Namespace.LegacyLogs(job.Id, req.GetTask())}
	}
	js, err := jetstream.New(s.d.NATS)
	if err != nil {
		return status.Errorf(codes.Unavailable, "log stream: %v", err)
	}
	cons, err := js.OrderedConsumer(ctx, s.d.Namespace.LogStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return status.Errorf(codes.Unavailable, "log stream: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "log stream: %v", err)
	}
	pending := info.NumPending
	it, err := cons.Messages()
	if err != nil {
		return status.Errorf(codes.Unavailable, "log stream: %v", err)
	}
	defer it.Stop()
	ended := map[string]bool{} // "task/attempt" whose end-of-log chunk was seen
	leased := &leases{s: s, jobID: job.Id, agent: map[string]string{}}
	var finalAt time.Time
	for {
		if pending == 0 {
			if !req.GetFollow() {
				return nil
			}
			if j, ok := s.d.FSM.Job(job.Id); ok && fsm.JobFinal(j.State) {
				// An agent may report before the stream stored its last
				// output (a stream leader moving); wait for every started
				// attempt's end-of-log, a bounded while.
				if finalAt.IsZero() {
					finalAt = time.Now()
				}
				if logsComplete(j, req.GetTask(), ended) || time.Since(finalAt) > logTailGrace {
					return nil
				}
			}
		}
		wait := 250 * time.Millisecond
		if pending > 0 {
			wait = 10 * time.Second
		}
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return status.Errorf(codes.Unavailable, "log stream: %v", err)
		}
		if md, err := msg.Metadata(); err == nil {
			pending = md.NumPending
		}
		var chunk gv1.LogChunk
		if err := proto.Unmarshal(msg.Data(), &chunk); err != nil {
			continue
		}
		// A chunk counts only from the agent its attempt was leased to
		// (NATS lets each agent publish only under its own name).
		if agent := s.d.Namespace.LogAgent(msg.Subject()); agent != "" && (!ownAttempt(job, chunk.GetRef()) || !leased.leasedTo(ctx, chunk.GetRef(), agent)) {
			continue
		}
		if chunk.GetEof() && ownAttempt(job, chunk.GetRef()) {
			ended[fmt.Sprintf("%s/%d", chunk.GetRef().GetTask(), chunk.GetRef().GetAttempt())] = true
		}
		if err := stream.Send(&gv1.TaskLogsResponse{Chunk: &chunk}); err != nil {
			return err
		}
	}
}

// ownAttempt reports whether ref names an attempt the job's task may have,
// so that chunks published under the job's subjects with made-up refs
// cannot grow what a log stream remembers.
func ownAttempt(job *gv1.Job, ref *gv1.TaskRef) bool {
	if ref.GetJobId() != job.GetId() {
		return false
	}
	for _, t := range job.GetTasks() {
		if t.GetName() == ref.GetTask() {
			most := t.GetSpec().GetRetries() + fsm.MaxInfraRetries + 2
			return ref.GetAttempt() >= 1 && ref.GetAttempt() <= most
		}
	}
	return false
}

// logTailGrace bounds the wait for end-of-log marks after a job ended: an
// attempt whose agent died never sends one.
const logTailGrace = 10 * time.Second

// logsComplete reports whether the last attempt of every task (or of the
// one task asked for) that its agent reported on has its end-of-log in the
// stream.
func logsComplete(j *gv1.Job, task string, ended map[string]bool) bool {
	for _, t := range j.Tasks {
		if task != "" && t.Name != task {
			continue
		}
		n := len(t.Attempts)
		if n == 0 {
			continue
		}
		// An attempt its agent reported on ran to the end of its output; a
		// lost or canceled one may never have an end mark.
		a := t.Attempts[n-1]
		// (A job failure that never started, e.g. a template that would not
		// render, has no output at all.)
		reported := a.Result == gv1.TaskState_TASK_STATE_SUCCEEDED ||
			(a.Result == gv1.TaskState_TASK_STATE_FAILED && a.Failure == gv1.FailureClass_FAILURE_CLASS_JOB &&
				(a.StartedAt != nil || a.ExitCode != -1))
		if reported && !ended[fmt.Sprintf("%s/%d", t.Name, a.Number)] {
			return false
		}
	}
	return true
}

// leases maps a job's attempts ("task/attempt") to the agents they were
// leased to, read again from the state when a chunk names one not seen yet.
type leases struct {
	s     *Server
	jobID string
	agent map[string]string
}

// leasedTo reports whether attempt ref of the job was leased to agent. An
// attempt this replica has not applied yet (a follower a little behind the
// leader that assigned it) is waited for, a bounded while.
func (l *leases) leasedTo(ctx context.Context, ref *gv1.TaskRef, agent string) bool {
	if ref.GetJobId() != l.jobID {
		return false
	}
	key := fmt.Sprintf("%s/%d", ref.GetTask(), ref.GetAttempt())
	deadline := time.NewTimer(leaseWait)
	defer deadline.Stop()
	for {
		if got, ok := l.agent[key]; ok {
			return got == agent
		}
		changed := l.s.d.FSM.Changed()
		j, found := l.s.d.FSM.Job(l.jobID)
		if !found {
			return false
		}
		for _, t := range j.GetTasks() {
			for _, a := range t.GetAttempts() {
				l.agent[fmt.Sprintf("%s/%d", t.GetName(), a.GetNumber())] = a.GetAgent()
			}
		}
		if got, ok := l.agent[key]; ok {
			return got == agent
		}
		select {
		case <-changed:
		case <-deadline.C:
			// Not leased to anyone: later chunks of it are dropped at once.
			l.agent[key] = ""
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// leaseWait bounds how long a log chunk waits for this replica to apply
// the assignment of its attempt.
const leaseWait = 5 * time.Second
