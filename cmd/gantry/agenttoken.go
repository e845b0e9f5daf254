package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// newAgentTokenCmd manages join tokens: an agent started with one
// (gantry agent --join-token) enrolls and receives its own certificate.
func newAgentTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent-token",
		Short: "Join tokens: agents started with one enroll and receive their own certificate",
	}
	var (
		labels []string
		ttl    time.Duration
	)
	create := &cobra.Command{
		Use:   "create NAME [--label k=v ...] [--ttl 24h]",
		Short: "Create a join token; it is printed once and only its hash is kept",
		Long: `Create a join token. Agents enrolled with it may claim only the labels given
here (a cluster capability cluster:NAME needs --label cluster.NAME=true);
without --label they may claim any. Revoking the token revokes and
disconnects its agents.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < 0 {
				return errors.New("--ttl: negative")
			}
			req := &gv1.CreateJoinTokenRequest{Name: args[0], Labels: map[string]string{}, TtlSeconds: int64(ttl.Seconds())}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want k=v", l)
				}
				req.Labels[k] = v
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Raw().CreateJoinToken(ctx, req)
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintf(w, "join token %s (%s, labels %s, expires %s)\n%s\n", resp.Token.Id, resp.Token.Name, labelList(resp.Token.Labels), expires(resp.Token.ExpiresAt), resp.Secret)
				})
			})
		},
	}
	create.Flags().StringArrayVar(&labels, "label", nil, "a label its agents may claim, k=v (repeatable); none: any")
	create.Flags().DurationVar(&ttl, "ttl", 0, "the token expires after this long (0: never; enrolled agents keep their certificates)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List join tokens and the agents enrolled with them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Raw().ListJoinTokens(ctx, &gv1.ListJoinTokensRequest{})
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tNAME\tLABELS\tCREATED\tEXPIRES\tAGENTS")
					for _, t := range resp.Tokens {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Id, dash(t.Name), labelList(t.Labels), ago(t.CreatedAt), expires(t.ExpiresAt), dash(strings.Join(t.Agents, ",")))
					}
					var revoked []string
					for _, e := range resp.Enrollments {
						if e.Revoked {
							revoked = append(revoked, e.Agent)
						}
					}
					if len(revoked) > 0 {
						fmt.Fprintf(w, "revoked agents (refused until their certificates expire): %s\n", strings.Join(revoked, ", "))
					}
				})
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: the agents enrolled with it are disconnected and refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Raw().RevokeJoinToken(ctx, &gv1.RevokeJoinTokenRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintf(w, "join token %s revoked; agents revoked: %s\n", args[0], dash(strings.Join(resp.Agents, ", ")))
				})
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// labelList is k=v,... in key order, or "any".
func labelList(l map[string]string) string {
	if len(l) == 0 {
		return "any"
	}
	out := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		out = append(out, k+"="+l[k])
	}
	return strings.Join(out, ",")
}
