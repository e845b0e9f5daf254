package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// print writes m as JSON with -o json, or as a table drawn by table.
func (g *globals) print(m proto.Message, table func(w io.Writer)) error {
	switch g.output {
	case "json":
		data, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
		if err != nil {
			return err
		}
		fmt.Println(string(data))
		return nil
	case "table", "":
		if table == nil {
			return nil
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		table(w)
		return w.Flush()
	}
	return fmt.Errorf("-o %q: want table or json", g.output)
}

func trimEnum(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

func jobState(s gv1.JobState) string   { return trimEnum(s.String(), "JOB_STATE_") }
func taskState(s gv1.TaskState) string { return trimEnum(s.String(), "TASK_STATE_") }

func ago(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return time.Since(t.AsTime()).Round(time.Second).String() + " ago"
}

func duration(from, to *timestamppb.Timestamp) string {
	if from == nil {
		return "-"
	}
	end := time.Now()
	if to != nil {
		end = to.AsTime()
	}
	return end.Sub(from.AsTime()).Round(time.Millisecond).String()
}

func newJobsCmd(g *globals) *cobra.Command {
	var states []string
	var limit int32
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List the newest jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var want []gv1.JobState
			for _, s := range states {
				v, ok := gv1.JobState_value["JOB_STATE_"+strings.ToUpper(s)]
				if !ok {
					return fmt.Errorf("--state %q: want pending, running, succeeded, failed or canceled", s)
				}
				want = append(want, gv1.JobState(v))
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				// The table needs no task specs; JSON prints whole jobs.
				view := gv1.JobView_JOB_VIEW_BASIC
				if g.output == "json" {
					view = gv1.JobView_JOB_VIEW_FULL
				}
				resp, err := c.Raw().ListJobs(ctx, &gv1.ListJobsRequest{Limit: limit, States: want, View: view})
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tNAME\tSTATE\tTASKS\tCREATED\tDURATION")
					for _, j := range resp.Jobs {
						done := 0
						for _, t := range j.Tasks {
							if t.State == gv1.TaskState_TASK_STATE_SUCCEEDED {
								done++
							}
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.Id, j.Spec.GetName(), jobState(j.State), done, len(j.Tasks), ago(j.CreatedAt), duration(j.CreatedAt, j.FinishedAt))
					}
				})
			})
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", nil, "only jobs in these states")
	cmd.Flags().Int32Var(&limit, "limit", 50, "at most this many")
	return cmd
}

func newJobCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "job ID",
		Short: "Show a job and its tasks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				j, err := c.Job(ctx, args[0])
				if err != nil {
					return err
				}
				return g.print(j, func(w io.Writer) {
					fmt.Fprintf(w, "job %s (%s): %s, created %s, %s\n\n", j.Id, j.Spec.GetName(), jobState(j.State), ago(j.CreatedAt), duration(j.CreatedAt, j.FinishedAt))
					fmt.Fprintln(w, "TASK\tSTATE\tATTEMPT\tAGENT\tNEEDS\tDURATION\tDETAIL")
					for _, t := range j.Tasks {
						detail := t.Error
						if len(t.Outputs) > 0 {
							keys := make([]string, 0, len(t.Outputs))
							for k := range t.Outputs {
								keys = append(keys, k+"="+t.Outputs[k])
							}
							sort.Strings(keys)
							detail = strings.TrimSpace(detail + " " + strings.Join(keys, " "))
						}
						fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", t.Name, taskState(t.State), t.Attempt, dash(t.Agent),
							dash(strings.Join(t.Spec.GetNeeds(), ",")), duration(t.StartedAt, t.FinishedAt), detail)
					}
				})
			})
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newLogsCmd(g *globals) *cobra.Command {
	var followLogs bool
	cmd := &cobra.Command{
		Use:   "logs JOB [TASK]",
		Short: "Print a job's logs (all tasks, or one); -f follows until the job ends",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			task := ""
			if len(args) == 2 {
				task = args[1]
			}
			// A log is read to its end, however long it takes.
			return g.withClient(cmd, func(_ context.Context, c *client.Client) error {
				p := newLogPrinter(os.Stdout, task == "")
				defer p.flush()
				return c.Logs(cmd.Context(), args[0], task, followLogs, func(ch *gv1.LogChunk) error {
					p.chunk(ch)
					return nil
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&followLogs, "follow", "f", false, "keep streaming until the job ends")
	return cmd
}

func newCancelCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job and stop its running tasks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				job, err := c.Cancel(ctx, args[0], reason)
				if err != nil {
					return err
				}
				return g.print(job, func(w io.Writer) {
					fmt.Fprintf(w, "job %s %s\n", job.Id, jobState(job.State))
				})
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "canceled by user", "why, recorded on the job")
	return cmd
}

// newDecideCmd approves or rejects a job's approval task (a manual gate,
// approval: in the pipeline).
func newDecideCmd(g *globals, reject bool) *cobra.Command {
	var comment string
	use, short, did := "approve JOB TASK", "Approve a job's waiting approval task: what needs it runs", "approved"
	if reject {
		use, short, did = "reject JOB TASK", "Reject a job's waiting approval task: it fails and what needs it is skipped", "rejected"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				job, err := c.DecideTask(ctx, args[0], args[1], reject, comment)
				if err != nil {
					return err
				}
				return g.print(job, func(w io.Writer) {
					fmt.Fprintf(w, "task %s of job %s %s; job %s\n", args[1], job.Id, did, jobState(job.State))
				})
			})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why, recorded with the decision")
	return cmd
}

func newAgentsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agents",
		Short: "List agents with their labels, slots and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				agents, err := c.Agents(ctx)
				if err != nil {
					return err
				}
				return g.print(&gv1.ListAgentsResponse{Agents: agents}, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tSTATE\tSLOTS\tLABELS\tCAPABILITIES\tLAST HEARTBEAT\tVERSION")
					for _, a := range agents {
						labels := make([]string, 0, len(a.Info.Labels))
						for k, v := range a.Info.Labels {
							labels = append(labels, k+"="+v)
						}
						sort.Strings(labels)
						fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", a.Info.Name, trimEnum(a.State.String(), "AGENT_STATE_"),
							len(a.Running), a.Info.Slots, dash(strings.Join(labels, ",")), dash(strings.Join(a.Info.Capabilities, ",")), ago(a.LastHeartbeat), a.Info.Version)
					}
				})
			})
		},
	}
}

func newDrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain AGENT",
		Short: "Tell an agent to take no new work, finish what it runs and exit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Drain(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "agent %s draining\n", args[0])
				return nil
			})
		},
	}
}

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the coordinators, the leader and Raft indexes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster(ctx)
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintf(w, "cluster %s, leader %s, term %d\n\n", resp.Cluster, dash(resp.LeaderId), resp.Term)
					fmt.Fprintln(w, "NODE\tSTATE\tVOTER\tRAFT\tGRPC\tHTTP\tCOMMIT\tAPPLIED\tVERSION")
					for _, n := range resp.Nodes {
						fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\t%s\t%d\t%d\t%s\n", n.Id, dash(n.RaftState), n.Voter, n.RaftAddr, dash(n.GrpcAddr), dash(n.HttpAddr), n.CommitIndex, n.AppliedIndex, dash(n.Version))
					}
				})
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add-node ID RAFT_ADDR",
		Short: "Add a coordinator as a voter (it must already be running)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				return c.AddNode(ctx, args[0], args[1])
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "remove-node ID",
		Short: "Remove a coordinator from the Raft configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				return c.RemoveNode(ctx, args[0])
			})
		},
	})
	return cmd
}
