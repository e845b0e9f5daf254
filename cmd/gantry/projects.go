package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// statusBuilds is how many builds project status shows.
const statusBuilds = 10

func newProjectCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Projects: repositories whose pipeline file is built on every change",
	}
	cmd.AddCommand(newProjectCreateCmd(g), newProjectListCmd(g), newProjectStatusCmd(g),
		newProjectBuildsCmd(g), newProjectRunCmd(g), newProjectDeleteCmd(g))
	return cmd
}

func newProjectCreateCmd(g *globals) *cobra.Command {
	var (
		spec gv1.ProjectSpec
		poll time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create NAME --repo URL --forge gitea|forgejo|github|gitlab|none",
		Short: "Register a project: the pipeline file of --repo, built on every push, tag and pull request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			if poll > 0 {
				spec.PollEvery = durationpb.New(poll)
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.CreateProject(ctx, &spec)
				if err != nil {
					return err
				}
				if resp.HookError != "" {
					fmt.Fprintf(os.Stderr, "warning: %s\n", resp.HookError)
				}
				return g.print(resp, func(w io.Writer) {
					s := resp.GetProject().GetSpec()
					fmt.Fprintf(w, "project %s created\n", spec.Name)
					if resp.HookRegistered {
						fmt.Fprintf(w, "webhook registered on %s (pointing at %s)\n", s.GetForge(), resp.WebhookUrl)
						return
					}
					fmt.Fprintf(w, "configure a webhook on your forge: URL %s, secret %s, content type application/json, events %s; this secret is shown once\n",
						resp.WebhookUrl, resp.WebhookSecret, hookEvents(s.GetForge(), s.GetEvents()))
					fmt.Fprintf(w, "until it is, changes are seen by polling the repository every %s\n", pollEvery(s))
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Repo, "repo", "", "Git repository URL (required)")
	f.StringVar(&spec.Forge, "forge", "", "forge hosting the repository: gitea, forgejo, github, gitlab, or none for plain Git (no webhook registration, no statuses)")
	f.StringVar(&spec.ForgeUrl, "forge-url", "", "the forge's web root (default: the scheme and host of --repo)")
	f.StringVar(&spec.Credential, "credential", "", "secret holding the forge API token, used to clone, register the webhook and report statuses (default: a public repository, no statuses)")
	f.StringVar(&spec.Pipeline, "pipeline", "", "path of the pipeline file in the repository (default .gantry/pipeline.yaml)")
	f.StringSliceVar(&spec.Branches, "branches", nil, "branch globs built on push, and pull requests into them (default: all)")
	f.StringSliceVar(&spec.Events, "events", nil, "events that build: push, tag, pull_request (default: all three)")
	f.StringVar(&spec.Cron, "cron", "", "cron schedule building the default branch: five fields, UTC")
	f.StringSliceVar(&spec.Paths, "paths", nil, "build only when a changed file matches one of these globs (default: any)")
	f.StringSliceVar(&spec.PathsIgnore, "paths-ignore", nil, "do not build when every changed file matches one of these globs")
	f.BoolVar(&spec.KeepSuperseded, "keep-superseded", false, "keep older builds of a branch or pull request running when a newer commit arrives")
	f.BoolVar(&spec.TaskStatuses, "task-statuses", false, "report a commit status per task too, not only per build")
	f.DurationVar(&poll, "poll-every", 0, "how often the repository is polled, the fallback for lost webhooks (default 1m)")
	f.StringVar(&spec.ExternalUrl, "external-url", "", "URL the forge reaches the coordinators by, for the webhook and status links (default: the coordinator's --external-url)")
	_ = cmd.MarkFlagRequired("forge")
	return cmd
}

// hookEvents names, in the forge's words, the webhook events that carry a
// project's events; tags arrive as push events except on GitLab.
func hookEvents(forge string, events []string) string {
	if len(events) == 0 {
		events = []string{"push", "tag", "pull_request"}
	}
	names := map[string]string{"push": "push", "tag": "push", "pull_request": "pull_request"}
	if forge == "gitlab" {
		names = map[string]string{"push": "push", "tag": "tag push", "pull_request": "merge request"}
	}
	var out []string
	for _, e := range []string{"push", "tag", "pull_request"} {
		if n := names[e]; slices.Contains(events, e) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

func pollEvery(s *gv1.ProjectSpec) time.Duration {
	if d := s.GetPollEvery().AsDuration(); d > 0 {
		return d
	}
	return time.Minute
}

// buildState is the state of a build: its job's, or where it stands
// without one.
func buildState(b *gv1.BuildSummary) string {
	switch {
	case b.GetBuild().GetJobId() != "":
		if b.GetState() == gv1.JobState_JOB_STATE_UNSPECIFIED {
			return "unknown"
		}
		return jobState(b.GetState())
	case b.GetBuild().GetAwaitingApproval():
		return "awaiting-approval"
	case b.GetBuild().GetError() != "":
		return "error"
	}
	return "queued"
}

// buildRef is what a build built: a pull request, a tag, a branch or a
// commit.
func buildRef(t *gv1.Trigger) string {
	switch {
	case t.GetPullRequest() != 0:
		return fmt.Sprintf("#%d", t.GetPullRequest())
	case t.GetTag() != "":
		return t.GetTag()
	case t.GetBranch() != "":
		return t.GetBranch()
	case t.GetRef() != "" && t.GetRef() == t.GetSha():
		return shortRev(t.GetRef())
	}
	return dash(t.GetRef())
}

// buildNote tells why a build has no job, who let it run and whether the
// change is untrusted.
func buildNote(b *gv1.Build) string {
	var notes []string
	switch {
	case b.GetError() != "":
		notes = append(notes, b.GetError())
	case b.GetSupersededBy() != 0:
		notes = append(notes, fmt.Sprintf("superseded by #%d", b.GetSupersededBy()))
	case b.GetApprovedBy() != nil:
		notes = append(notes, "approved by "+actorName(b.GetApprovedBy()))
	}
	if b.GetTrigger().GetUntrusted() {
		notes = append(notes, "untrusted")
	}
	return strings.Join(notes, "; ")
}

func actorName(a *gv1.Actor) string {
	switch {
	case a.GetName() != "":
		return a.GetName()
	case a.GetTokenId() != "":
		return a.GetTokenId()
	}
	return "an operator"
}

// buildLine is a build in one line: number, state, event, ref, commit, age.
func buildLine(b *gv1.BuildSummary) string {
	bd := b.GetBuild()
	t := bd.GetTrigger()
	return fmt.Sprintf("#%d %s %s %s %s %s", bd.GetNumber(), buildState(b), dash(t.GetEvent()), buildRef(t), shortRev(t.GetSha()), ago(bd.GetCreatedAt()))
}

// writeBuilds writes builds, newest first, as a table.
func writeBuilds(w io.Writer, builds []*gv1.BuildSummary) {
	fmt.Fprintln(w, "BUILD\tEVENT\tREF\tCOMMIT\tSOURCE\tJOB\tSTATE\tNOTE")
	for _, b := range builds {
		bd := b.GetBuild()
		t := bd.GetTrigger()
		fmt.Fprintf(w, "#%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", bd.GetNumber(), dash(t.GetEvent()), buildRef(t), shortRev(t.GetSha()),
			dash(t.GetSource()), dash(bd.GetJobId()), buildState(b), buildNote(bd))
	}
}

func newProjectListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List projects with their newest build",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				projects, err := c.Projects(ctx)
				if err != nil {
					return err
				}
				return g.print(&gv1.ListProjectsResponse{Projects: projects}, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tREPO\tFORGE\tBRANCHES\tLAST BUILD")
					for _, p := range projects {
						s := p.GetSpec()
						last := "-"
						if len(p.GetBuilds()) > 0 {
							last = buildLine(p.GetBuilds()[0])
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.GetName(), s.GetRepo(), dash(s.GetForge()), orAll(s.GetBranches()), last)
					}
				})
			})
		},
	}
}

// orAll joins a list, or says "all" for an empty one.
func orAll(list []string) string {
	if len(list) == 0 {
		return "all"
	}
	return strings.Join(list, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newProjectStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show a project: repository, forge, build rules, webhook and newest builds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				p, err := c.Project(ctx, args[0], statusBuilds)
				if err != nil {
					return err
				}
				return g.print(p, func(w io.Writer) {
					s := p.GetSpec()
					fmt.Fprintf(w, "Name:\t%s\n", s.GetName())
					fmt.Fprintf(w, "Repository:\t%s\n", s.GetRepo())
					forge := dash(s.GetForge())
					if s.GetForgeUrl() != "" {
						forge += " (" + s.GetForgeUrl() + ")"
					}
					fmt.Fprintf(w, "Forge:\t%s\n", forge)
					fmt.Fprintf(w, "Credential:\t%s\n", dash(s.GetCredential()))
					fmt.Fprintf(w, "Pipeline:\t%s\n", dash(s.GetPipeline()))
					fmt.Fprintf(w, "Branches:\t%s\n", orAll(s.GetBranches()))
					fmt.Fprintf(w, "Events:\t%s\n", orAll(s.GetEvents()))
					cron := "-"
					if s.GetCron() != "" {
						cron = s.GetCron() + " (UTC)"
					}
					fmt.Fprintf(w, "Cron:\t%s\n", cron)
					paths := "any"
					if len(s.GetPaths()) > 0 {
						paths = strings.Join(s.GetPaths(), ",")
					}
					if len(s.GetPathsIgnore()) > 0 {
						paths += ", ignoring " + strings.Join(s.GetPathsIgnore(), ",")
					}
					fmt.Fprintf(w, "Paths:\t%s\n", paths)
					fmt.Fprintf(w, "Keep superseded:\t%s\n", yesNo(s.GetKeepSuperseded()))
					fmt.Fprintf(w, "Task statuses:\t%s\n", yesNo(s.GetTaskStatuses()))
					fmt.Fprintf(w, "Poll every:\t%s\n", pollEvery(s))
					if s.GetExternalUrl() != "" {
						fmt.Fprintf(w, "External URL:\t%s\n", s.GetExternalUrl())
					}
					fmt.Fprintf(w, "Webhook registered:\t%s\n", yesNo(p.GetHookRegistered()))
					fmt.Fprintf(w, "Created:\t%s\n", ago(p.GetCreatedAt()))
					fmt.Fprintf(w, "Builds:\t%d\n", p.GetBuildsTotal())
					if len(p.GetBuilds()) > 0 {
						fmt.Fprintln(w)
						writeBuilds(w, p.GetBuilds())
					}
				})
			})
		},
	}
}

func newProjectBuildsCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "builds NAME",
		Short: "List a project's builds, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				p, err := c.Project(ctx, args[0], limit)
				if err != nil {
					return err
				}
				return g.print(p, func(w io.Writer) { writeBuilds(w, p.GetBuilds()) })
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many")
	return cmd
}

func newProjectRunCmd(g *globals) *cobra.Command {
	var ref string
	cmd := &cobra.Command{
		Use:   "run NAME [--ref REF]",
		Short: "Build a branch, tag or commit of a project now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				b, err := c.RunProject(ctx, args[0], ref)
				if err != nil {
					return err
				}
				return g.print(b, func(w io.Writer) {
					bd := b.GetBuild()
					fmt.Fprintf(w, "build #%d of %s: commit %s (%s)\n", bd.GetNumber(), args[0], dash(bd.GetTrigger().GetSha()), buildJob(b))
				})
			})
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "branch, tag or commit to build (default: the default branch)")
	return cmd
}

// buildJob names a build's job, or says why it has none.
func buildJob(b *gv1.BuildSummary) string {
	bd := b.GetBuild()
	switch {
	case bd.GetJobId() != "":
		return "job " + bd.GetJobId()
	case bd.GetAwaitingApproval():
		return "awaiting approval"
	case bd.GetError() != "":
		return "no job: " + bd.GetError()
	}
	return "queued"
}

func newProjectDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Forget a project and its builds, and remove its webhook from the forge",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.DeleteProject(ctx, args[0])
				if err != nil {
					return err
				}
				if resp.HookError != "" {
					fmt.Fprintf(os.Stderr, "warning: %s\n", resp.HookError)
				}
				return g.print(resp, func(w io.Writer) { fmt.Fprintf(w, "project %s deleted\n", args[0]) })
			})
		},
	}
}

func newBuildCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Builds of projects held for approval: let them run or end them",
	}
	cmd.AddCommand(
		buildApproveCmd(g, "approve PROJECT NUMBER", "Let a build held for approval (an untrusted change) run", false),
		buildApproveCmd(g, "reject PROJECT NUMBER", "End a build held for approval without running it", true),
	)
	return cmd
}

// buildApproveCmd approves or rejects a build.
func buildApproveCmd(g *globals, use, short string, reject bool) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseUint(strings.TrimPrefix(args[1], "#"), 10, 64)
			if err != nil || n == 0 {
				return fmt.Errorf("%s: not a build number", args[1])
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				b, err := c.ApproveBuild(ctx, args[0], n, reject)
				if err != nil {
					return err
				}
				did := "approved"
				if reject {
					did = "rejected"
				}
				return g.print(b, func(w io.Writer) {
					fmt.Fprintf(w, "build #%d of %s %s (%s)\n", n, args[0], did, buildJob(b))
				})
			})
		},
	}
}
