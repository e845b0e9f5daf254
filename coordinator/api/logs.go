package api

import (
	"context"
	"errors"
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
	filter := s.d.Namespace.JobLogs(job.Id)
	if req.GetTask() != "" {
		found := false
		for _, t := range job.Tasks {
			found = found || t.Name == req.GetTask()
		}
		if !found {
			return status.Errorf(codes.NotFound, "task: job %s has no task %q", job.Id, req.GetTask())
		}
		filter = s.d.Namespace.Log(job.Id, req.GetTask())
	}
	js, err := jetstream.New(s.d.NATS)
	if err != nil {
		return status.Errorf(codes.Unavailable, "log stream: %v", err)
	}
	cons, err := js.OrderedConsumer(ctx, s.d.Namespace.LogStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
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
	for {
		if pending == 0 {
			if !req.GetFollow() {
				return nil
			}
			if j, ok := s.d.FSM.Job(job.Id); ok && fsm.JobFinal(j.State) {
				return nil
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
		if err := stream.Send(&gv1.TaskLogsResponse{Chunk: &chunk}); err != nil {
			return err
		}
	}
}
