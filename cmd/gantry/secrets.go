package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Store secrets that pipelines refer to by name; values go in and never come out",
	}
	cmd.AddCommand(newSecretSetCmd(g), newSecretListCmd(g), newSecretDeleteCmd(g), newSecretKeygenCmd())
	return cmd
}

func newSecretSetCmd(g *globals) *cobra.Command {
	var file, scope string
	cmd := &cobra.Command{
		Use:   "set NAME [--from-file F]",
		Short: "Create or replace a secret; the value is read from --from-file or standard input (never from the command line)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				value []byte
				err   error
			)
			if file != "" && file != "-" {
				value, err = os.ReadFile(file)
			} else {
				value, err = io.ReadAll(io.LimitReader(os.Stdin, limit.SecretValue+1))
			}
			if err != nil {
				return fmt.Errorf("read secret value: %w", err)
			}
			if file == "" || file == "-" {
				// A value typed or piped with `echo` ends with one newline
				// that is not part of it.
				value = []byte(strings.TrimSuffix(strings.TrimSuffix(string(value), "\n"), "\r"))
			}
			if len(value) == 0 {
				return errors.New("secret value is empty (give it on standard input or with --from-file)")
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				info, err := c.SetSecret(ctx, args[0], value, scope)
				if err != nil {
					return err
				}
				return g.print(info, func(w io.Writer) { fmt.Fprintf(w, "secret %s set\n", info.Name) })
			})
		},
	}
	cmd.Flags().StringVar(&file, "from-file", "", "read the value from this file, as it is (- for standard input)")
	cmd.Flags().StringVar(&scope, "scope", "", "limit where the secret may be used: app:NAME, job:NAME (pipeline name) or label:KEY=VALUE (agents)")
	return cmd
}

func newSecretListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List secrets by name (never their values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				secrets, err := c.Secrets(ctx)
				if err != nil {
					return err
				}
				return g.print(&gv1.ListSecretsResponse{Secrets: secrets}, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tSCOPE\tKEY\tUPDATED")
					for _, s := range secrets {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Name, dash(s.Scope), s.KeyId, ago(s.UpdatedAt))
					}
				})
			})
		},
	}
}

func newSecretDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a secret; tasks referring to it fail from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.DeleteSecret(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "secret %s deleted\n", args[0])
				return nil
			})
		},
	}
}

func newSecretKeygenCmd() *cobra.Command {
	var rotate bool
	cmd := &cobra.Command{
		Use:   "keygen FILE",
		Short: "Create the coordinators' secret keyring (mode 0600); --rotate puts a new primary key before the old ones",
		Long: `Creates the keyring that coordinators seal secrets with (--secret-keys FILE).
Every coordinator of a cluster needs the same file. To rotate, run
keygen --rotate on one copy, install it on every coordinator (they reload it
within 5 seconds); the leader then re-encrypts every secret under the new
key. Remove an old key only after 'gantry secret list' shows none under it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err == nil && !rotate {
				return fmt.Errorf("%s exists: use --rotate to add a new primary key", args[0])
			}
			k, err := secret.Create(args[0], rotate)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s: primary key %s\n", args[0], k.Primary())
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "add a new primary key to an existing keyring")
	return cmd
}
