package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func newAppCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "GitOps applications: manifests in Git kept running in a cluster",
	}
	cmd.AddCommand(newAppCreateCmd(g), newAppListCmd(g), newAppStatusCmd(g), newAppDiffCmd(g),
		newAppSyncCmd(g), newAppHistoryCmd(g), newAppRollbackCmd(g), newAppUnpinCmd(g), newAppDeleteCmd(g))
	return cmd
}

func newAppCreateCmd(g *globals) *cobra.Command {
	var (
		spec          gv1.AppSpec
		poll, healthT time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create NAME --repo URL --cluster C --namespace NS",
		Short: "Register an application: the manifests at --path of --repo, deployed to --namespace of --cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			if poll > 0 {
				spec.PollInterval = durationpb.New(poll)
			}
			if healthT > 0 {
				spec.HealthTimeout = durationpb.New(healthT)
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Raw().CreateApp(ctx, &gv1.CreateAppRequest{Spec: &spec})
				if err != nil {
					return err
				}
				if resp.GetHookError() != "" {
					fmt.Fprintf(os.Stderr, "warning: %s\n", resp.GetHookError())
				}
				return g.print(resp, func(w io.Writer) {
					mode := "manual sync"
					if spec.AutoSync {
						mode = "auto-sync"
					}
					fmt.Fprintf(w, "application %s created (%s)\n", spec.Name, mode)
					if resp.GetHookRegistered() {
						fmt.Fprintf(w, "push webhook registered on %s, delivering to %s\n", spec.Forge, resp.GetWebhookUrl())
					} else if resp.GetWebhookSecret() != "" {
						fmt.Fprintf(w, "to see pushes at once, add a push webhook to the repository:\n  URL     %s\n  secret  %s\n", resp.GetWebhookUrl(), resp.GetWebhookSecret())
					} else {
						fmt.Fprintf(w, "to see pushes at once, add a push webhook to the repository delivering to %s (signed with the coordinators' --webhook-secret)\n", resp.GetWebhookUrl())
					}
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Repo, "repo", "", "Git repository URL (required)")
	f.StringVar(&spec.Path, "path", "", "directory of the manifests inside the repository (plain YAML or kustomize)")
	f.StringVar(&spec.Revision, "revision", "", "branch or tag to follow (default: the remote's HEAD)")
	f.StringVar(&spec.Cluster, "cluster", "", "cluster name, as agents advertise it (required; gantry dev names its cluster local)")
	f.StringVar(&spec.Namespace, "namespace", "default", "namespace of the application's objects")
	f.BoolVar(&spec.AutoSync, "auto-sync", false, "deploy every new commit of the branch")
	f.BoolVar(&spec.SelfHeal, "self-heal", false, "revert changes made to live objects behind Gantry's back")
	f.BoolVar(&spec.Prune, "prune", false, "delete live objects removed from Git")
	f.DurationVar(&poll, "poll-interval", 0, "how often the repository is polled (default 1m; pushes to /hooks/git are seen at once)")
	f.StringVar(&spec.Forge, "forge", "", "forge hosting --repo: gitea, forgejo, github, gitlab or none; with --credential the push webhook is registered there")
	f.StringVar(&spec.ForgeUrl, "forge-url", "", "forge base URL when it is not --repo's origin")
	f.StringVar(&spec.Credential, "credential", "", "name of a secret (gantry secret set) holding the token that reads the repository and registers its webhook")
	f.DurationVar(&healthT, "health-timeout", 0, "how long a rollout may take to become healthy before it is rolled back (default 5m)")
	return cmd
}

func syncName(s gv1.SyncStatus) string {
	if s == gv1.SyncStatus_SYNC_STATUS_UNSPECIFIED {
		return "unknown"
	}
	return strings.ReplaceAll(trimEnum(s.String(), "SYNC_STATUS_"), "_", "-")
}

func healthName(s gv1.HealthStatus) string {
	if s == gv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
		return "unknown"
	}
	return trimEnum(s.String(), "HEALTH_STATUS_")
}
func deployResult(r gv1.DeployResult) string {
	return strings.ReplaceAll(trimEnum(r.String(), "DEPLOY_RESULT_"), "_", "-")
}

func shortRev(r string) string {
	if len(r) > 10 {
		return r[:10]
	}
	return dash(r)
}

func newAppListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List applications with their sync and health status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				apps, err := c.Apps(ctx)
				if err != nil {
					return err
				}
				return g.print(&gv1.ListAppsResponse{Apps: apps}, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tCLUSTER\tNAMESPACE\tSYNC\tHEALTH\tDEPLOYED\tLATEST\tPINNED\tLAST DEPLOY")
					for _, a := range apps {
						last := "-"
						if d := a.LastDeploy; d != nil {
							last = fmt.Sprintf("#%d %s %s", d.Id, deployResult(d.Result), ago(d.StartedAt))
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Spec.Name, a.Spec.Cluster, a.Spec.Namespace,
							syncName(a.Sync), healthName(a.Health), shortRev(a.DeployedRevision), shortRev(a.LatestRevision), shortRev(a.PinnedRevision), last)
					}
				})
			})
		},
	}
}

func newAppStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show an application: source, sync, health, pin, last deploy and drift",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.App(ctx, args[0])
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					s, spec := resp.Summary, resp.App.Spec
					fmt.Fprintf(w, "Name:\t%s\n", spec.Name)
					if spec.Repo != "" {
						fmt.Fprintf(w, "Source:\t%s %s (branch %s)\n", spec.Repo, dash(spec.Path), dash(spec.Revision))
					}
					fmt.Fprintf(w, "Target:\tcluster %s, namespace %s\n", spec.Cluster, spec.Namespace)
					fmt.Fprintf(w, "Policy:\tauto-sync=%v self-heal=%v prune=%v\n", spec.AutoSync, spec.SelfHeal, spec.Prune)
					fmt.Fprintf(w, "Sync:\t%s %s\n", syncName(s.Sync), s.Reason)
					fmt.Fprintf(w, "Health:\t%s\n", healthName(s.Health))
					fmt.Fprintf(w, "Deployed:\t%s\n", dash(s.DeployedRevision))
					fmt.Fprintf(w, "Latest in Git:\t%s\n", dash(s.LatestRevision))
					if s.PinnedRevision != "" {
						fmt.Fprintf(w, "Pinned:\t%s (auto-sync paused; gantry app unpin %s resumes it)\n", s.PinnedRevision, spec.Name)
					}
					if d := s.LastDeploy; d != nil {
						fmt.Fprintf(w, "Last deploy:\t#%d %s %s (%s, job %s) %s\n", d.Id, deployResult(d.Result), shortRev(d.Revision), d.Trigger, d.JobId, d.Message)
					}
					if dr := resp.Drift; dr != nil && len(dr.Items) > 0 {
						fmt.Fprintf(w, "Drift:\t%d field(s), seen by agent %s %s\n", len(dr.Items), dr.Agent, ago(dr.ObservedAt))
					}
				})
			})
		},
	}
}

// renderDrift writes a drift report as a readable diff.
func renderDrift(w io.Writer, items []*gv1.DriftItem) {
	last := ""
	for _, it := range items {
		if it.Object != last {
			fmt.Fprintln(w, it.Object)
			last = it.Object
		}
		switch {
		case it.Field == "":
			fmt.Fprintln(w, "  missing from the cluster")
		case it.Live == "":
			fmt.Fprintf(w, "  %s: %s (git) != absent (live)\n", it.Field, it.Want)
		default:
			fmt.Fprintf(w, "  %s: %s (git) != %s (live)\n", it.Field, it.Want, it.Live)
		}
	}
}

func newAppDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff NAME",
		Short: "Show how the live objects differ from what Gantry applied; exit 1 when they differ",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.App(ctx, args[0])
				if err != nil {
					return err
				}
				dr := resp.Drift
				if g.output == "json" {
					if dr == nil {
						dr = &gv1.DriftReport{App: args[0]}
					}
					return g.print(dr, nil)
				}
				s := resp.Summary
				if s.LatestRevision != "" && s.Sync == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC && (dr == nil || len(dr.Items) == 0) {
					fmt.Printf("%s\n", s.Reason)
					return exitError{code: 1}
				}
				if dr == nil {
					fmt.Println("no report from an agent watching this application yet")
					return nil
				}
				if dr.Error != "" {
					return fmt.Errorf("watch of %s by agent %s: %s", args[0], dr.Agent, dr.Error)
				}
				if len(dr.Items) == 0 {
					fmt.Printf("live objects match revision %s\n", shortRev(dr.Revision))
					return nil
				}
				renderDrift(os.Stdout, dr.Items)
				return exitError{code: 1}
			})
		},
	}
}

func newAppSyncCmd(g *globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "sync NAME",
		Short: "Deploy the newest commit of the application's branch (or its pinned commit) now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.deployCall(cmd, wait, func(ctx context.Context, c *client.Client) (string, string, error) {
				resp, err := c.SyncApp(ctx, args[0])
				return resp.GetJobId(), resp.GetRevision(), err
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the deploy until it ends; exit 1 unless it succeeded")
	return cmd
}

func newAppRollbackCmd(g *globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "rollback NAME REVISION",
		Short: "Deploy a revision the application ran before (commit or deploy id) and pin it there",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.deployCall(cmd, wait, func(ctx context.Context, c *client.Client) (string, string, error) {
				resp, err := c.RollbackApp(ctx, args[0], args[1])
				if err == nil {
					fmt.Fprintf(os.Stderr, "%s pinned to %s; auto-sync resumes after gantry app unpin %s\n", args[0], shortRev(resp.GetRevision()), args[0])
				}
				return resp.GetJobId(), resp.GetRevision(), err
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the deploy until it ends; exit 1 unless it succeeded")
	return cmd
}

// deployCall runs a call that starts a deploy job and, with wait, follows it.
func (g *globals) deployCall(cmd *cobra.Command, wait bool, call func(ctx context.Context, c *client.Client) (job, rev string, err error)) error {
	return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
		job, rev, err := call(ctx, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "deploying %s (job %s)\n", shortRev(rev), job)
		if !wait {
			fmt.Println(job)
			return nil
		}
		final, err := follow(cmd.Context(), c, job)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "job %s %s\n", final.Id, jobState(final.State))
		if final.State != gv1.JobState_JOB_STATE_SUCCEEDED {
			return exitError{code: 1}
		}
		return nil
	})
}

func newAppHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history NAME",
		Short: "List an application's deploys, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				h, err := c.AppHistory(ctx, args[0])
				if err != nil {
					return err
				}
				return g.print(&gv1.App{History: h}, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tREVISION\tRESULT\tTRIGGER\tSTARTED\tDURATION\tJOB\tAGENT\tIMAGES\tMESSAGE")
					for i := len(h) - 1; i >= 0; i-- {
						d := h[i]
						imgs := make([]string, 0, len(d.Images))
						for _, v := range d.Images {
							imgs = append(imgs, v)
						}
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Id, shortRev(d.Revision), deployResult(d.Result), d.Trigger,
							ago(d.StartedAt), duration(d.StartedAt, d.FinishedAt), d.JobId, dash(d.Agent), dash(strings.Join(imgs, ",")), d.Message)
					}
				})
			})
		},
	}
}

func newAppUnpinCmd(g *globals) *cobra.Command {
	return appWriteCmd(g, "unpin NAME", "Let auto-sync follow the application's branch again after a rollback", "unpinned",
		func(ctx context.Context, c *client.Client, name string) error { return c.UnpinApp(ctx, name) })
}

func newAppDeleteCmd(g *globals) *cobra.Command {
	return appWriteCmd(g, "delete NAME", "Forget an application and its history (and its webhook on the forge); its live objects are left running", "deleted",
		func(ctx context.Context, c *client.Client, name string) error {
			resp, err := c.Raw().DeleteApp(ctx, &gv1.DeleteAppRequest{Name: name})
			if resp.GetHookError() != "" {
				fmt.Fprintf(os.Stderr, "warning: %s\n", resp.GetHookError())
			}
			return err
		})
}

// appWriteCmd is a command that changes one application and says what it did.
func appWriteCmd(g *globals, use, short, did string, call func(context.Context, *client.Client, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := call(ctx, c, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "%s %s\n", args[0], did)
				return nil
			})
		},
	}
}

// savePrivate writes what write writes to path with mode 0600, atomically
// (a temporary file renamed into place): a snapshot holds every job's
// outputs and the sealed secrets, so it is the owner's alone. It returns
// the bytes written.
func savePrivate(path string, write func(w io.Writer) error) (int64, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	fail := func(err error) (int64, error) {
		f.Close()
		return 0, err
	}
	// An existing temporary file keeps its mode through O_CREATE.
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	cw := &countingWriter{w: f}
	if err := write(cw); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the whole replicated state to a file, or restore a new cluster from one",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "save FILE",
		Short: "Write jobs, applications and deploy history to FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				n, err := savePrivate(args[0], func(w io.Writer) error {
					_, err := c.SaveSnapshot(ctx, w)
					return err
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "snapshot saved to %s (%d bytes)\n", args[0], n)
				return nil
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the state of a new cluster with a saved snapshot (run against its leader)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if len(data) == 0 {
				return errors.New(args[0] + ": empty file")
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.RestoreSnapshot(ctx, bytes.NewReader(data))
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "restored %d jobs and %d applications\n", resp.Jobs, resp.Apps)
				return nil
			})
		},
	})
	return cmd
}
