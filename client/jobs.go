package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Pauses before a broken watch or log stream is opened again.
const (
	watchReopen = 200 * time.Millisecond
	logsReopen  = 300 * time.Millisecond
)

// logGrace bounds how long FollowJob waits for the end of the log once the
// job is final; the coordinator ends the stream within 10 s of that.
const logGrace = 15 * time.Second

// Submit submits a pipeline: req.SpecYaml as written in a file, or
// req.Spec. If req.IdempotencyKey is empty, Submit first sets it to a
// random key, so that a submit retried after a failover returns the job the
// first attempt created instead of a second one; submitting req again
// later does the same. Existing in the answer says the key matched a job
// submitted before.
func (c *Client) Submit(ctx context.Context, req *gv1.SubmitJobRequest) (*gv1.SubmitJobResponse, error) {
	if req.IdempotencyKey == "" {
		var b [12]byte
		_, _ = rand.Read(b[:]) // never fails
		req.IdempotencyKey = "auto-" + hex.EncodeToString(b[:])
	}
	return c.api.SubmitJob(ctx, req)
}

// Job returns a job with its tasks.
func (c *Client) Job(ctx context.Context, id string) (*gv1.Job, error) {
	resp, err := c.api.GetJob(ctx, &gv1.GetJobRequest{JobId: id})
	return resp.GetJob(), err
}

// Jobs lists the newest jobs first: at most limit of them (zero means
// 100), only those in states when any are given.
func (c *Client) Jobs(ctx context.Context, limit int32, states ...gv1.JobState) ([]*gv1.Job, error) {
	resp, err := c.api.ListJobs(ctx, &gv1.ListJobsRequest{Limit: limit, States: states})
	return resp.GetJobs(), err
}

// Cancel cancels a job and stops its running tasks; reason is recorded on
// the job. It returns the job as it is after the cancel.
func (c *Client) Cancel(ctx context.Context, id, reason string) (*gv1.Job, error) {
	resp, err := c.api.CancelJob(ctx, &gv1.CancelJobRequest{JobId: id, Reason: reason})
	return resp.GetJob(), err
}

// Final reports whether a job in state s has ended.
func Final(s gv1.JobState) bool {
	return s == gv1.JobState_JOB_STATE_SUCCEEDED || s == gv1.JobState_JOB_STATE_FAILED || s == gv1.JobState_JOB_STATE_CANCELED
}

// permanent reports whether a stream error will not go away by asking
// again.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return true
	}
	return false
}

// callbackError marks an error returned by a caller's function.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// pause waits d or until ctx ends, and reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Watch calls fn with the job now and after every change until it is
// final, and returns the final job. A broken stream is opened again, on
// another coordinator if need be, so fn may see a state twice; fn may be
// nil to just wait. Watch returns early with fn's error, with ctx's error
// when ctx ends, or with the API's error when the job cannot be watched
// (codes.NotFound).
func (c *Client) Watch(ctx context.Context, id string, fn func(*gv1.Job) error) (*gv1.Job, error) {
	var last *gv1.Job
	for {
		err := c.watchOnce(ctx, id, func(j *gv1.Job) error {
			last = j
			if fn == nil {
				return nil
			}
			if err := fn(j); err != nil {
				return callbackError{err}
			}
			return nil
		})
		if last != nil && Final(last.State) {
			return last, nil
		}
		var cb callbackError
		if errors.As(err, &cb) {
			return nil, cb.err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if permanent(err) {
			return nil, err
		}
		if !pause(ctx, watchReopen) {
			return nil, ctx.Err()
		}
	}
}

func (c *Client) watchOnce(ctx context.Context, id string, fn func(*gv1.Job) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.WatchJob(ctx, &gv1.WatchJobRequest{JobId: id})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := fn(resp.GetJob()); err != nil {
			return err
		}
	}
}

// chunkID names a log chunk.
type chunkID struct {
	task    string
	attempt int32
	seq     uint64
}

// Logs calls fn with each chunk of a job's log in order: of every task, or
// of one when task is not empty. Without follow it replays the log stored
// so far; with follow it then streams new chunks until the job is final and
// the log of every attempt has ended. Logs returns nil at the end of the
// log. With follow, a broken stream is opened again (on another coordinator
// if need be) and the chunks already passed to fn are skipped, so fn sees
// each chunk once. Logs returns early with fn's error, with ctx's error, or
// with the API's error when the log cannot be read (codes.NotFound for an
// unknown job or task).
func (c *Client) Logs(ctx context.Context, jobID, task string, follow bool, fn func(*gv1.LogChunk) error) error {
	done := map[chunkID]bool{}
	for {
		err := c.logsOnce(ctx, jobID, task, follow, func(ch *gv1.LogChunk) error {
			id := chunkID{ch.GetRef().GetTask(), ch.GetRef().GetAttempt(), ch.GetSeq()}
			if done[id] {
				return nil
			}
			done[id] = true
			if err := fn(ch); err != nil {
				return callbackError{err}
			}
			return nil
		})
		var cb callbackError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &cb):
			return cb.err
		case ctx.Err() != nil:
			return ctx.Err()
		case !follow, permanent(err):
			return err
		}
		if !pause(ctx, logsReopen) {
			return ctx.Err()
		}
	}
}

func (c *Client) logsOnce(ctx context.Context, jobID, task string, follow bool, fn func(*gv1.LogChunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.TaskLogs(ctx, &gv1.TaskLogsRequest{JobId: jobID, Task: task, Follow: follow})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(resp.GetChunk()); err != nil {
			return err
		}
	}
}

// FollowJob follows a job until it is final, as `gantry submit --wait`
// does, and returns the final job: onJob is called with the job now and
// after every change (see Watch), onLog with each chunk of every task's
// log once (see Logs). Either may be nil; they are never called at the
// same time, nor after FollowJob returns. Once the job is final, FollowJob
// waits a bounded while for the rest of the log. A log that cannot be read
// does not stop it: the job's state decides. FollowJob returns early with
// a callback's error or with Watch's.
func (c *Client) FollowJob(ctx context.Context, id string, onJob func(*gv1.Job) error, onLog func(*gv1.LogChunk) error) (*gv1.Job, error) {
	var mu sync.Mutex // one callback at a time
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	lctx, stopLogs := context.WithCancel(ctx)
	defer stopLogs()
	var logErr error
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		_ = c.Logs(lctx, id, "", true, func(ch *gv1.LogChunk) error {
			mu.Lock()
			defer mu.Unlock()
			if onLog == nil {
				return nil
			}
			if err := onLog(ch); err != nil {
				logErr = err
				stopWatch()
				return err
			}
			return nil
		})
	}()
	job, err := c.Watch(wctx, id, func(j *gv1.Job) error {
		if onJob == nil {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		return onJob(j)
	})
	if err == nil {
		t := time.NewTimer(logGrace)
		select {
		case <-logsDone:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	stopLogs()
	<-logsDone
	if logErr != nil {
		return nil, logErr
	}
	if err != nil {
		return nil, err
	}
	return job, nil
}

// DecideTask approves (reject false) or rejects a waiting approval task of
// a job; comment is recorded with the decision.
func (c *Client) DecideTask(ctx context.Context, jobID, task string, reject bool, comment string) (*gv1.Job, error) {
	resp, err := c.api.DecideTask(ctx, &gv1.DecideTaskRequest{JobId: jobID, Task: task, Reject: reject, Comment: comment})
	return resp.GetJob(), err
}
