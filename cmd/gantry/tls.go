package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/internal/pki"
)

const tlsLayout = `Files, all PEM, in --dir (default: the current directory):

  ca.pem                the CA's certificate: give it to every coordinator,
                        agent and client (--tls-ca)
  ca-key.pem            the CA's key: signs certificates; keep it off the servers
  NAME.pem, NAME-key.pem  a certificate and its key

Keys are written with mode 0600. Existing files are never replaced unless
--force is given.`

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make the cluster's certificate authority and its certificates",
		Long: `Make the cluster's certificate authority (CA) and the certificates that
identify coordinators, clients and agents.

  gantry tls ca create
  gantry tls cert create --server node1 --dns node1.example.com --ip 10.0.0.1
  gantry coordinator --tls-cert node1.pem --tls-key node1-key.pem --tls-ca ca.pem ...

` + tlsLayout + `

To rotate a certificate, replace NAME.pem and NAME-key.pem (cert create
--force): coordinators read them again at their next handshake.`,
		Args: cobra.NoArgs,
	}
	ca := &cobra.Command{Use: "ca", Short: "Manage the certificate authority", Args: cobra.NoArgs}
	ca.AddCommand(newTLSCACreateCmd())
	cert := &cobra.Command{Use: "cert", Short: "Issue certificates signed by the CA", Args: cobra.NoArgs}
	cert.AddCommand(newTLSCertCreateCmd())
	cmd.AddCommand(ca, cert)
	return cmd
}

func newTLSCACreateCmd() *cobra.Command {
	var (
		dir, name string
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "create [--dir D]",
		Short: "Create a CA: ca.pem and ca-key.pem (ECDSA P-256, valid 10 years)",
		Long:  "Create a certificate authority (ECDSA P-256, valid 10 years).\n\n" + tlsLayout,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			ca, err := pki.NewCA(name)
			if err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			if err := ca.Write(certFile, keyFile, force); err != nil {
				return fmt.Errorf("%w (--force replaces it, and every certificate it signed stops being trusted)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (valid until %s)\n", certFile, keyFile, ca.Cert.NotAfter.Format(time.DateOnly))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", ".", "directory to write the files to")
	fl.StringVar(&name, "name", "Gantry CA", "common name of the CA")
	fl.BoolVar(&force, "force", false, "replace existing files")
	return cmd
}

func newTLSCertCreateCmd() *cobra.Command {
	var (
		server, client, agent string
		dns                   []string
		ips                   []net.IP
		dir, caCert, caKey    string
		role                  string
		days                  int
		force                 bool
	)
	cmd := &cobra.Command{
		Use:   "create --server|--client|--agent NAME [--dns a,b] [--ip ...] [--dir D] [--days N]",
		Short: "Issue a certificate for a coordinator, a client or an agent",
		Long: `Issue a certificate signed by the CA, with a new ECDSA P-256 key.

  --server NAME  a coordinator: serves the API and HTTP, and Raft to its peers.
                 Valid for server and client authentication. Its names (--dns,
                 --ip; default localhost and 127.0.0.1) must include every host
                 clients and peers dial it by: its gRPC and Raft addresses.
  --client NAME  a user or program calling the API (common name NAME) with
                 the role of --role: it authenticates with the certificate
                 instead of a token. Certificates cannot be revoked one by
                 one (tokens can): keep them short-lived (--days).
  --agent NAME   an agent (common name agent:NAME).

` + tlsLayout,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if days <= 0 {
				return fmt.Errorf("--days %d: want a positive number", days)
			}
			// Certificates never outlive the CA; this only keeps the
			// duration from overflowing.
			req := pki.Request{DNSNames: dns, IPs: ips, Validity: time.Duration(min(days, 100*365)) * 24 * time.Hour}
			switch {
			case server != "":
				req.Kind, req.Name = pki.Server, server
			case client != "":
				req.Kind, req.Name = pki.Client, client
				if _, err := api.ParseRole(role); err != nil {
					return fmt.Errorf("--role (required with --client): %w", err)
				}
				req.Role = role
			default:
				req.Kind, req.Name = pki.Agent, agent
			}
			if caCert == "" {
				caCert = filepath.Join(dir, "ca.pem")
			}
			if caKey == "" {
				caKey = filepath.Join(dir, "ca-key.pem")
			}
			ca, err := pki.LoadCA(caCert, caKey)
			if err != nil {
				return fmt.Errorf("load CA: %w", err)
			}
			p, err := ca.Issue(req)
			if err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(dir, req.Name+".pem"), filepath.Join(dir, req.Name+"-key.pem")
			if err := p.Write(certFile, keyFile, force); err != nil {
				return fmt.Errorf("%w (--force replaces it)", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s and %s: %s certificate %q, valid until %s\n",
				certFile, keyFile, req.Kind, p.Cert.Subject.CommonName, p.Cert.NotAfter.Format(time.DateOnly))
			if req.Kind == pki.Server {
				fmt.Fprintf(out, "names: %v %v\n", p.Cert.DNSNames, p.Cert.IPAddresses)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "", "issue a coordinator certificate named `NAME`")
	fl.StringVar(&client, "client", "", "issue a client certificate named `NAME`")
	fl.StringVar(&agent, "agent", "", "issue an agent certificate named `NAME`")
	cmd.MarkFlagsOneRequired("server", "client", "agent")
	cmd.MarkFlagsMutuallyExclusive("server", "client", "agent")
	fl.StringSliceVar(&dns, "dns", nil, "DNS names of a server certificate, comma-separated (default localhost, with 127.0.0.1, when no --ip either)")
	fl.IPSliceVar(&ips, "ip", nil, "IP addresses of a server certificate, comma-separated")
	fl.StringVar(&dir, "dir", ".", "directory with the CA's files, and to write the certificate to")
	fl.StringVar(&caCert, "ca-cert", "", "the CA's certificate (default DIR/ca.pem)")
	fl.StringVar(&caKey, "ca-key", "", "the CA's key (default DIR/ca-key.pem)")
	fl.IntVar(&days, "days", int(pki.DefaultValidity/(24*time.Hour)), "days the certificate is valid (never beyond the CA)")
	fl.StringVar(&role, "role", "", "with --client: the API role the certificate carries (viewer, developer, operator, admin)")
	fl.BoolVar(&force, "force", false, "replace existing files (rotation)")
	return cmd
}

// registerTLSFlags maps the coordinator's TLS flags onto c.
func registerTLSFlags(fl *pflag.FlagSet, c *coordinator.TLSConfig) {
	fl.StringVar(&c.CertFile, "tls-cert", "", "this coordinator's certificate (gantry tls cert create --server); with --tls-key and --tls-ca, the API, HTTP and Raft use TLS")
	fl.StringVar(&c.KeyFile, "tls-key", "", "the key of --tls-cert")
	fl.StringVar(&c.CAFile, "tls-ca", "", "the cluster's CA certificate (ca.pem): Raft peers and client certificates must be signed by it")
	fl.StringVar(&c.CAKeyFile, "tls-ca-key", "", "the CA's key (ca-key.pem): lets the coordinators sign the certificates of agents that enroll with a join token (gantry agent-token create)")
}

// warnPlaintext warns, at the start of a coordinator that is not gantry
// dev, that it runs without TLS.
func warnPlaintext(log *zap.Logger, c coordinator.TLSConfig) {
	if !c.Enabled() {
		log.Warn("TLS is off: API tokens, secrets and Raft traffic cross the network in plain text; see gantry tls --help and --tls-cert")
	}
}

// requireSecure refuses to start a production coordinator without TLS
// material unless --insecure says so, and warns at every insecure start.
func requireSecure(log *zap.Logger, c coordinator.Config) error {
	if c.Insecure {
		log.Warn("--insecure: no TLS required and no token checked; anyone who reaches this coordinator's ports controls it")
		warnPlaintext(log, c.TLS)
		return nil
	}
	if !c.TLS.Enabled() {
		return errors.New("no TLS material: give --tls-cert, --tls-key and --tls-ca (make them with `gantry tls ca create` and `gantry tls cert create --server NAME`), or run with --insecure on a trusted network")
	}
	return nil
}
