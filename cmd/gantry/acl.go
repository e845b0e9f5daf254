package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator/api"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// tokenFile is where the CLI finds its token when neither --token nor
// $GANTRY_TOKEN gives one, and where `gantry dev` writes its admin token:
// $XDG_CONFIG_HOME/gantry/token, by default ~/.config/gantry/token.
func tokenFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "gantry", "token"), nil
}

// resolveToken is the token the CLI sends: --token, then $GANTRY_TOKEN,
// then the token file. Empty when there is none.
func (g *globals) resolveToken() string {
	if g.token != "" {
		return g.token
	}
	if t := os.Getenv("GANTRY_TOKEN"); t != "" {
		return t
	}
	if f, err := tokenFile(); err == nil {
		if data, err := os.ReadFile(f); err == nil {
			return strings.TrimSpace(string(data))
		}
	}
	return ""
}

// writeTokenFile stores a token for the CLI, readable by its owner only.
func writeTokenFile(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(token+"\n"), 0o600)
}

func roleName(r gv1.Role) string { return api.RoleName(r) }

func expires(t *timestamppb.Timestamp) string {
	if t == nil {
		return "never"
	}
	return t.AsTime().Local().Format(time.RFC3339)
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "API tokens and their roles: viewer, developer, operator, admin",
	}
	var (
		role string
		ttl  time.Duration
	)
	create := &cobra.Command{
		Use:   "create NAME --role ROLE [--ttl 720h]",
		Short: "Create a token; its secret is printed once and only its hash is kept",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := api.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			if ttl < 0 {
				return errors.New("--ttl: negative")
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.CreateToken(ctx, args[0], r, ttl)
				if err != nil {
					return err
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintf(w, "token %s (%s, role %s, expires %s)\n%s\n", resp.Token.Id, resp.Token.Name, roleName(resp.Token.Role), expires(resp.Token.ExpiresAt), resp.Secret)
				})
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "viewer, developer, operator or admin (required)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "the token expires after this long (0: never)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (ids, names, roles; never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				tokens, err := c.Tokens(ctx)
				if err != nil {
					return err
				}
				resp := &gv1.ListTokensResponse{Tokens: tokens}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tCREATED BY")
					for _, t := range resp.Tokens {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Id, t.Name, roleName(t.Role), ago(t.CreatedAt), expires(t.ExpiresAt), dash(t.CreatedBy))
					}
				})
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: every coordinator refuses it from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.RevokeToken(ctx, args[0]); err != nil {
					return err
				}
				fmt.Printf("token %s revoked\n", args[0])
				return nil
			})
		},
	}
	whoami := &cobra.Command{
		Use:   "whoami",
		Short: "Describe the token this CLI sends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				info, err := c.WhoAmI(ctx)
				if err != nil {
					return err
				}
				resp := &gv1.WhoAmIResponse{Token: info}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintf(w, "token %s (%s), role %s, expires %s\n", resp.Token.Id, resp.Token.Name, roleName(resp.Token.Role), expires(resp.Token.ExpiresAt))
				})
			})
		},
	}
	cmd.AddCommand(create, list, revoke, whoami, newTokenGenerateCmd())
	return cmd
}

func newACLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "acl", Short: "Access control of a cluster"}
	var save bool
	bootstrap := &cobra.Command{
		Use:   "bootstrap [--save]",
		Short: "Make the first admin token of a cluster that has none (answered once, without a token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.BootstrapACL(ctx)
				if err != nil {
					return err
				}
				if save {
					f, err := tokenFile()
					if err == nil {
						err = writeTokenFile(f, resp.Secret)
					}
					if err != nil {
						return fmt.Errorf("save token: %w", err)
					}
					fmt.Fprintf(os.Stderr, "token written to %s\n", f)
				}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintf(w, "admin token %s\n%s\n", resp.Token.Id, resp.Secret)
				})
			})
		},
	}
	bootstrap.Flags().BoolVar(&save, "save", false, "also write the token where the CLI finds it (~/.config/gantry/token)")
	cmd.AddCommand(bootstrap)
	return cmd
}

func newAuditCmd(g *globals) *cobra.Command {
	var (
		since time.Duration
		n     int32
	)
	cmd := &cobra.Command{
		Use:   "audit [--since 1h] [-n 100]",
		Short: "Mutating API calls: when, who, from where, what, and the result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var from time.Time
			if since > 0 {
				from = time.Now().Add(-since)
			}
			return g.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				events, err := c.Audit(ctx, from, n)
				if err != nil {
					return err
				}
				resp := &gv1.ListAuditResponse{Events: events}
				return g.print(resp, func(w io.Writer) {
					fmt.Fprintln(w, "TIME\tWHO\tROLE\tFROM\tCALL\tTARGET\tRESULT")
					for _, e := range resp.Events {
						who := e.GetActor().GetName()
						if id := e.GetActor().GetTokenId(); id != "" {
							who += " (" + id + ")"
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.AsTime().Local().Format(time.RFC3339),
							dash(strings.TrimSpace(who)), dash(roleIf(e.GetActor().GetRole())), dash(e.GetActor().GetPeer()), e.Method, dash(e.Target), e.Result)
					}
				})
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 0, "only calls in this last while (default: all kept)")
	cmd.Flags().Int32VarP(&n, "limit", "n", 0, "at most this many of the newest (default 1000)")
	return cmd
}

func roleIf(r gv1.Role) string {
	if r == gv1.Role_ROLE_UNSPECIFIED {
		return ""
	}
	return roleName(r)
}

// readTokenFiles reads --bootstrap-token-file and --join-token-file.
func (f *coordinatorFlags) readTokenFiles() error {
	for _, x := range []struct {
		flag, path string
		into       *string
	}{{"--bootstrap-token-file", f.bootstrapTokenFile, &f.cfg.BootstrapToken}, {"--join-token-file", f.joinTokenFile, &f.cfg.JoinToken}} {
		if x.path == "" {
			continue
		}
		data, err := os.ReadFile(x.path)
		if err != nil {
			return fmt.Errorf("%s: %w", x.flag, err)
		}
		tok := strings.TrimSpace(string(data))
		if _, _, err := api.ParseToken(tok); err != nil {
			return fmt.Errorf("%s %s: %w", x.flag, x.path, err)
		}
		*x.into = tok
	}
	return nil
}

// devToken is the admin token of `gantry dev`: the one its data dir was
// bootstrapped with (DATA/admin-token), else the CLI's token file if it
// holds a Gantry token (so a fresh data dir keeps the CLI working), else a
// new one. It is written to both places when they have none, and the token
// file's path is returned when the CLI will find it there.
func devToken(dataDir string) (token, savedTo string, err error) {
	own := filepath.Join(dataDir, "admin-token")
	cfgFile, cfgErr := tokenFile()
	if data, err := os.ReadFile(own); err == nil {
		token = strings.TrimSpace(string(data))
	} else if cfgErr == nil {
		if data, err := os.ReadFile(cfgFile); err == nil {
			if t := strings.TrimSpace(string(data)); strings.HasPrefix(t, api.TokenPrefix) {
				token = t
			}
		}
	}
	if _, _, err := api.ParseToken(token); err != nil {
		_, token, _ = api.NewToken()
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", err
	}
	if _, err := os.Stat(own); err != nil {
		if err := writeTokenFile(own, token); err != nil {
			return "", "", fmt.Errorf("write %s: %w", own, err)
		}
	}
	if cfgErr == nil {
		if data, err := os.ReadFile(cfgFile); err != nil {
			if writeTokenFile(cfgFile, token) == nil {
				savedTo = cfgFile
			}
		} else if strings.TrimSpace(string(data)) == token {
			savedTo = cfgFile
		}
	}
	return token, savedTo, nil
}

// newTokenGenerateCmd prints a new token for --bootstrap-token-file.
func newTokenGenerateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "generate",
		Short: "Print a new random token, for --bootstrap-token-file (nothing is sent to a coordinator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, token, _ := api.NewToken()
			fmt.Println(token)
			return nil
		},
	}
}

func tokenHint(savedTo, dataDir string) string {
	if savedTo != "" {
		return "(in " + savedTo + ": the gantry CLI uses it)"
	}
	return "(in " + filepath.Join(dataDir, "admin-token") + "; export GANTRY_TOKEN=$(cat " + filepath.Join(dataDir, "admin-token") + ")"
}
