// Command gantry is the single Gantry binary: the coordinator, the agent,
// a one-process development setup and the client commands.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// exitError carries a process exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "gantry:", err)
		os.Exit(1)
	}
}

type globals struct {
	addr      string
	token     string
	output    string
	logLevel  string
	logFormat string
	// TLS of client commands: the CA that signed the coordinators'
	// certificates, and an optional client certificate.
	tlsCA, tlsCert, tlsKey string
	// plaintext allows plain text to a coordinator that is not on this
	// machine (one started with --insecure).
	plaintext bool
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gantry",
		Short:         "Gantry builds, tests and deploys every change, from one source of truth",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addr := os.Getenv("GANTRY_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7420"
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", addr, "coordinator gRPC address, or several separated by commas (env GANTRY_ADDR)")
	// Read from the environment when used (resolveToken), so that help
	// never shows it.
	root.PersistentFlags().StringVar(&g.token, "token", "", "API token sent to the coordinators (default $GANTRY_TOKEN, else ~/.config/gantry/token)")
	root.PersistentFlags().StringVar(&g.tlsCA, "tls-ca", os.Getenv("GANTRY_TLS_CA"), "client commands: CA certificate the coordinators' certificates are checked against; connects with TLS (env GANTRY_TLS_CA)")
	root.PersistentFlags().StringVar(&g.tlsCert, "tls-client-cert", os.Getenv("GANTRY_TLS_CLIENT_CERT"), "client commands: client certificate to present (env GANTRY_TLS_CLIENT_CERT)")
	root.PersistentFlags().StringVar(&g.tlsKey, "tls-client-key", os.Getenv("GANTRY_TLS_CLIENT_KEY"), "client commands: key of --tls-client-cert (env GANTRY_TLS_CLIENT_KEY)")
	root.PersistentFlags().BoolVar(&g.plaintext, "plaintext", false, "client commands: talk plain text to a coordinator on another machine (one started with --insecure); loopback needs no flag")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format of client commands: table or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level of servers: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "console", "log format of servers: console or json")
	root.AddCommand(
		newDevCmd(g), withInspect(newCoordinatorCmd(g), g), newAgentCmd(g),
		newSubmitCmd(g), newJobsCmd(g), newJobCmd(g), newLogsCmd(g), newCancelCmd(g), newDecideCmd(g, false), newDecideCmd(g, true),
		newAgentsCmd(g), newDrainCmd(g), newClusterCmd(g), newBenchCmd(g),
		newAppCmd(g), newProjectCmd(g), newBuildCmd(g), newSnapshotCmd(g), newSecretCmd(g),
		newTLSCmd(), newTokenCmd(g), newAgentTokenCmd(g), newVersionCmd(g), newACLCmd(g), newAuditCmd(g),
	)
	return root
}

func (g *globals) logger() (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(g.logLevel); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	switch g.logFormat {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice == 0 {
			cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		}
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", g.logFormat)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}
