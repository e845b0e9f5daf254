package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/internal/pki"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// callTimeout bounds the API calls of a command; following a job or a log
// is bounded by the command's own flags instead.
const callTimeout = time.Minute

// dial returns a client of the coordinators named by --addr, sending the
// token resolveToken finds, over TLS when --tls-ca (or a client
// certificate) is given.
func (g *globals) dial() (*client.Client, error) {
	opts := []client.Option{client.WithToken(g.resolveToken())}
	ca := g.tlsCA
	if ca == "" && g.tlsCert == "" && !g.plaintext && !strings.Contains(g.addr, ",") {
		ca = devCA(g.addr) // a gantry dev on this machine
	}
	if ca != "" || g.tlsCert != "" {
		cfg, err := pki.ClientTLS(ca, g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca/--tls-cert: %w", err)
		}
		opts = append(opts, client.WithTLS(cfg))
	} else if g.plaintext {
		opts = append(opts, client.WithInsecure())
	}
	return client.New([]string{g.addr}, opts...)
}

// withClient runs fn with a client and a context bounded to callTimeout.
func (g *globals) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
	defer cancel()
	return fn(ctx, c)
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
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				// Without --idempotency-key, Submit makes up a key: a
				// submit that did commit before a failover returns the
				// same job when retried.
				resp, err := c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: string(data), IdempotencyKey: key})
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
				final, err := follow(wctx, c, job.Id)
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
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "pipeline YAML file (- for standard input)")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "submitting the same key again returns the existing job")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the job's logs and state until it ends; exit 1 unless it succeeded")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, give up after this long")
	return cmd
}

// follow prints a job's logs to standard output, each line prefixed with
// its task, and its tasks' state changes to standard error until the job
// is final.
func follow(ctx context.Context, c *client.Client, jobID string) (*gv1.Job, error) {
	p := newLogPrinter(os.Stdout, true)
	seen := map[string]string{}
	final, err := c.FollowJob(ctx, jobID, func(j *gv1.Job) error {
		for _, t := range j.Tasks {
			st := taskState(t.State)
			if seen[t.Name] != st {
				seen[t.Name] = st
				fmt.Fprintf(os.Stderr, "  %-20s %s%s\n", t.Name, st, taskNote(t))
			}
		}
		return nil
	}, func(ch *gv1.LogChunk) error {
		p.chunk(ch)
		return nil
	})
	p.flush()
	if err != nil {
		return nil, fmt.Errorf("wait for job %s: %w", jobID, err)
	}
	return final, nil
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
// when prefix is set. The client passes each chunk once, also across
// failovers.
type logPrinter struct {
	out     io.Writer
	prefix  bool
	partial map[string]string
}

func newLogPrinter(out io.Writer, prefix bool) *logPrinter {
	return &logPrinter{out: out, prefix: prefix, partial: map[string]string{}}
}

func (p *logPrinter) line(task, l string) {
	if p.prefix {
		fmt.Fprintf(p.out, "[%s] %s\n", task, l)
	} else {
		fmt.Fprintln(p.out, l)
	}
}

func (p *logPrinter) chunk(ch *gv1.LogChunk) {
	name := ch.GetRef().GetTask()
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
