package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/internal/limit"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func (g *globals) client() (gv1.GantryServiceClient, func(), error) {
	idx := &readIndex{}
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit.Message), grpc.MaxCallSendMsgSize(limit.Message)),
		grpc.WithChainUnaryInterceptor(idx.unary), grpc.WithChainStreamInterceptor(idx.stream))
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", g.addr, err)
	}
	return gv1.NewGantryServiceClient(conn), func() { conn.Close() }, nil
}

// readIndex makes one client's reads monotonic: it remembers the highest
// state index any answer came from and asks every later call not to be
// answered from an older one (api.MinIndexHeader). Unary calls refused
// with Unavailable (no leader, a coordinator catching up after a restart,
// a replica behind) are retried for up to unaryRetry.
type readIndex struct{ max atomic.Uint64 }

const unaryRetry = 30 * time.Second

func (r *readIndex) outgoing(ctx context.Context) context.Context {
	if n := r.max.Load(); n > 0 {
		return metadata.AppendToOutgoingContext(ctx, api.MinIndexHeader, strconv.FormatUint(n, 10))
	}
	return ctx
}

func (r *readIndex) seen(md metadata.MD) {
	for _, v := range md.Get(api.IndexHeader) {
		n, err := strconv.ParseUint(v, 10, 64)
		for err == nil {
			old := r.max.Load()
			if n <= old || r.max.CompareAndSwap(old, n) {
				break
			}
		}
	}
}

func (r *readIndex) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	deadline := time.Now().Add(unaryRetry)
	wait := 50 * time.Millisecond
	for {
		var md metadata.MD
		err := invoker(r.outgoing(ctx), method, req, reply, cc, append(opts, grpc.Header(&md))...)
		r.seen(md)
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
			wait = min(2*wait, time.Second)
		}
	}
}

func (r *readIndex) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(r.outgoing(ctx), desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &indexedStream{ClientStream: cs, r: r}, nil
}

// indexedStream records the index header of a stream when it arrives.
type indexedStream struct {
	grpc.ClientStream
	r    *readIndex
	once sync.Once
}

func (s *indexedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.once.Do(func() {
		if md, herr := s.Header(); herr == nil {
			s.r.seen(md)
		}
	})
	return err
}

// retry runs an idempotent call again while the cluster has no leader.
func retry[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	wait := 100 * time.Millisecond
	for {
		v, err := call(ctx)
		if status.Code(err) != codes.Unavailable {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
			wait = min(2*wait, 2*time.Second)
		}
	}
}

func newSubmitCmd(g *globals) *cobra.Command {
	var (
		file, key string
		wait      bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "submit -f FILE",
		Short: "Submit a pipeline; with --wait, follow it and exit 0 only if it succeeds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return errors.New("-f: a pipeline file is required (- reads standard input)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("read pipeline: %w", err)
			}
			if key == "" {
				// A key of our own makes retrying safe: a submit that did
				// commit before a failover returns the same job.
				var b [12]byte
				_, _ = rand.Read(b[:])
				key = "cli-" + hex.EncodeToString(b[:])
			}
			c, closeConn, err := g.client()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			resp, err := retry(ctx, func(ctx context.Context) (*gv1.SubmitJobResponse, error) {
				return c.SubmitJob(ctx, &gv1.SubmitJobRequest{SpecYaml: string(data), IdempotencyKey: key})
			})
			cancel()
			if err != nil {
				if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
					return fmt.Errorf("%s: %s", file, st.Message())
				}
				return fmt.Errorf("submit: %w", err)
			}
			job := resp.Job
			if !wait {
				return g.print(job, func(w io.Writer) { fmt.Fprintln(w, job.Id) })
			}
			fmt.Fprintf(os.Stderr, "job %s submitted (%s)\n", job.Id, job.Spec.GetName())
			wctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(wctx, timeout)
				defer cancel()
			}
			final, err := follow(wctx, c, job.Id, os.Stdout, os.Stderr)
			if err != nil {
				return err
			}
			if g.output == "json" {
				if err := g.print(final, nil); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "job %s %s\n", final.Id, jobState(final.State))
			if final.State != gv1.JobState_JOB_STATE_SUCCEEDED {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "pipeline YAML file (- for standard input)")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "submitting the same key again returns the existing job")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the job's logs and state until it ends; exit 1 unless it succeeded")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, give up after this long")
	return cmd
}

// follow streams a job's logs and state changes until it is final, riding
// through coordinator failovers.
func follow(ctx context.Context, c gv1.GantryServiceClient, jobID string, out, status io.Writer) (*gv1.Job, error) {
	logsDone := make(chan struct{})
	lctx, stopLogs := context.WithCancel(ctx)
	defer stopLogs()
	go func() {
		defer close(logsDone)
		streamLogs(lctx, c, jobID, "", true, true, out)
	}()
	seen := map[string]string{}
	var last *gv1.Job
	for {
		stream, err := c.WatchJob(ctx, &gv1.WatchJobRequest{JobId: jobID})
		if err == nil {
			for {
				resp, err := stream.Recv()
				if err != nil {
					break
				}
				last = resp.Job
				for _, t := range last.Tasks {
					st := taskState(t.State)
					if seen[t.Name] != st {
						seen[t.Name] = st
						fmt.Fprintf(status, "  %-20s %s%s\n", t.Name, st, taskNote(t))
					}
				}
			}
		}
		if last != nil && jobFinal(last.State) {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for job %s: %w", jobID, ctx.Err())
		}
		time.Sleep(200 * time.Millisecond) // the coordinator went away: reconnect
	}
	// The log stream ends by itself once every attempt's output is in.
	select {
	case <-logsDone:
	case <-time.After(15 * time.Second):
	}
	return last, nil
}

func taskNote(t *gv1.Task) string {
	var parts []string
	if t.Agent != "" && t.State != gv1.TaskState_TASK_STATE_PENDING {
		parts = append(parts, "on "+t.Agent)
	}
	if t.Attempt > 1 {
		parts = append(parts, fmt.Sprintf("attempt %d", t.Attempt))
	}
	if t.Error != "" && t.State != gv1.TaskState_TASK_STATE_SUCCEEDED {
		parts = append(parts, t.Error)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// logPrinter prints log chunks as lines, each prefixed with its task name
// when prefix is set. It remembers which chunks it printed, so a stream
// opened again after a failover replays without repeating lines.
type logPrinter struct {
	out     io.Writer
	prefix  bool
	printed map[chunkID]bool
	partial map[string]string
}

type chunkID struct {
	task    string
	attempt int32
	seq     uint64
}

func newLogPrinter(out io.Writer, prefix bool) *logPrinter {
	return &logPrinter{out: out, prefix: prefix, printed: map[chunkID]bool{}, partial: map[string]string{}}
}

func (p *logPrinter) line(task, l string) {
	if p.prefix {
		fmt.Fprintf(p.out, "[%s] %s\n", task, l)
	} else {
		fmt.Fprintln(p.out, l)
	}
}

func (p *logPrinter) chunk(ch *gv1.LogChunk) {
	id := chunkID{ch.GetRef().GetTask(), ch.GetRef().GetAttempt(), ch.GetSeq()}
	if p.printed[id] {
		return
	}
	p.printed[id] = true
	name := id.task
	lines := strings.Split(p.partial[name]+string(ch.GetData()), "\n")
	p.partial[name] = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		p.line(name, l)
	}
	if ch.GetEof() && p.partial[name] != "" {
		p.line(name, p.partial[name])
		p.partial[name] = ""
	}
}

func (p *logPrinter) flush() {
	for name, rest := range p.partial {
		if rest != "" {
			p.line(name, rest)
		}
		delete(p.partial, name)
	}
}

// stream prints one TaskLogs stream to its end.
func (p *logPrinter) stream(ctx context.Context, c gv1.GantryServiceClient, jobID, task string, follow bool) error {
	stream, err := c.TaskLogs(ctx, &gv1.TaskLogsRequest{JobId: jobID, Task: task, Follow: follow})
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
		p.chunk(resp.Chunk)
	}
}

// streamLogs prints a job's logs; with follow it rides through coordinator
// failovers until the job ends.
func streamLogs(ctx context.Context, c gv1.GantryServiceClient, jobID, task string, follow, prefix bool, out io.Writer) error {
	p := newLogPrinter(out, prefix)
	defer p.flush()
	for {
		err := p.stream(ctx, c, jobID, task, follow)
		if err == nil || !follow || ctx.Err() != nil {
			return err
		}
		if c := status.Code(err); c == codes.NotFound || c == codes.InvalidArgument {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
