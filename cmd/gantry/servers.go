package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent"
	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/internal/gctune"
	"github.com/gantryci/gantry/internal/pki"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func defaultDataDir(name string) string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "gantry", name)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "gantry", name)
}

// signalContext ends on the first SIGINT/SIGTERM; a second one exits at once.
func signalContext(log *zap.Logger, onSecond func()) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		log.Info("signal received, shutting down", zap.String("signal", s.String()))
		cancel()
		<-ch
		log.Warn("second signal, stopping now")
		if onSecond != nil {
			onSecond()
		}
		os.Exit(1)
	}()
	return ctx, cancel
}

type coordinatorFlags struct {
	cfg       coordinator.Config
	peers     string
	natsRoute string
	store     string
	addrFile  string
	// ACL token files (acl.go).
	bootstrapTokenFile, joinTokenFile string
}

func (f *coordinatorFlags) register(cmd *cobra.Command, full bool) {
	c := &f.cfg
	fl := cmd.Flags()
	fl.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for Raft state, snapshots and the embedded NATS store")
	fl.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC API listen address")
	fl.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP listen address: the console, /healthz, /readyz, /metrics, /hooks/git")
	fl.StringSliceVar(&c.HTTPHosts, "http-hosts", nil, "more host names the console answers to, comma-separated (besides localhost, the --http-addr host and IP addresses; a guard against DNS rebinding)")
	fl.StringVar(&c.Raft.BindAddr, "raft-addr", c.Raft.BindAddr, "Raft transport address (also the address peers use)")
	fl.StringVar(&c.NATS.Listen, "nats-listen", c.NATS.Listen, "embedded NATS client listen address")
	fl.StringVar(&c.NATS.URL, "nats-url", "", "use this existing NATS cluster instead of the embedded server")
	fl.StringVar(&c.Cluster, "cluster", c.Cluster, "cluster name; namespaces NATS subjects")
	fl.DurationVar(&c.JobRetention, "job-retention", c.JobRetention, "forget jobs this long after they ended (0 keeps them forever); deploy history is kept per application")
	fl.StringVar(&c.SecretKeys, "secret-keys", os.Getenv("GANTRY_SECRET_KEYS"),
		"keyring file that seals secrets (gantry secret keygen; default $GANTRY_SECRET_KEYS, else DATA-DIR/secret-keys if it exists)")
	fl.StringVar(&c.WebhookSecret, "webhook-secret", os.Getenv("GANTRY_WEBHOOK_SECRET"),
		"secret that pushes to /hooks/git are signed with (X-Hub-Signature-256; default $GANTRY_WEBHOOK_SECRET); without it the hook refuses pushes, except under gantry dev")
	fl.StringVar(&c.ExternalURL, "external-url", os.Getenv("GANTRY_EXTERNAL_URL"),
		"URL users and forges reach the HTTP address by (links in commit statuses, the webhook URL projects register; default http(s)://HTTP-ADDR as bound, or $GANTRY_EXTERNAL_URL)")
	fl.StringVar(&c.Autoscale.Kubeconfig, "autoscale", "", "size agent pools on Kubernetes by queue depth: \"in-cluster\" or a kubeconfig path (Deployments labelled gantry.dev/autoscale=true; README, Autoscaling agents)")
	fl.StringVar(&c.Autoscale.Namespace, "autoscale-namespace", "", "namespace of the agent pools (default $POD_NAMESPACE in a cluster, else the kubeconfig's)")
	fl.StringVar(&f.addrFile, "addr-file", "", "once listening, write the bound addresses to this file as JSON (grpc, http, raft, nats, nats_route): start on port 0 and read the ports back")
	if !full {
		return
	}
	fl.StringVar(&c.NodeID, "node-id", c.NodeID, "this coordinator's Raft ID")
	fl.BoolVar(&c.Raft.Bootstrap, "bootstrap", false, "bootstrap a new cluster from --peers (or this node alone) if there is no Raft state")
	fl.StringVar(&f.peers, "peers", "", "initial voters for --bootstrap: id=host:port,id=host:port (Raft addresses)")
	fl.StringVar(&c.Join, "join", "", "gRPC address of a running coordinator to join as a voter")
	fl.StringVar(&f.store, "raft-store", string(consensus.StoreSegments), "Raft log store: segments (append-only files; a bolt log is moved into them), bolt (raft-boltdb) or wal (raft-wal, see the README)")
	fl.StringVar(&c.NATS.ClusterListen, "nats-cluster-listen", "", "embedded NATS route listen address (clusters the coordinators' servers)")
	fl.StringVar(&f.natsRoute, "nats-routes", "", "other coordinators' NATS route URLs, comma-separated (nats://host:port)")
	fl.IntVar(&c.NATS.LogReplicas, "log-replicas", 0, "replicas of the log stream (default: 3 with 3+ peers, else 1)")
	fl.DurationVar(&c.Dispatch.LeaseTTL, "lease-ttl", c.Dispatch.LeaseTTL, "requeue a task whose agent has not renewed its lease for this long")
	registerTLSFlags(fl, &c.TLS)
	fl.BoolVar(&c.Insecure, "insecure", false, "run without TLS and answer API calls without a token: for a trusted network or a test only (warned at every start)")
	fl.StringVar(&f.bootstrapTokenFile, "bootstrap-token-file", "", "file holding the cluster's first admin token (gantry token generate); committed by the first leader if the cluster has no token. Without it, run `gantry acl bootstrap` once")
	fl.StringVar(&f.joinTokenFile, "join-token-file", "", "file holding an admin token this node sends with --join (default: the bootstrap token)")
}

// writeAddrs writes srv's bound addresses to --addr-file, if given.
func (f *coordinatorFlags) writeAddrs(srv *coordinator.Server) error {
	if f.addrFile == "" {
		return nil
	}
	if err := srv.Addrs().WriteFile(f.addrFile); err != nil {
		return fmt.Errorf("--addr-file: %w", err)
	}
	return nil
}

func (f *coordinatorFlags) finish() error {
	c := &f.cfg
	if err := f.readTokenFiles(); err != nil {
		return err
	}
	if f.peers != "" {
		peers, err := consensus.ParsePeers(f.peers)
		if err != nil {
			return fmt.Errorf("--peers: %w", err)
		}
		c.Raft.Peers = peers
	}
	if f.store != "" {
		c.Raft.Store = consensus.Store(f.store)
	}
	for _, r := range strings.Split(f.natsRoute, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.NATS.Routes = append(c.NATS.Routes, r)
		}
	}
	if c.NATS.LogReplicas == 0 {
		c.NATS.LogReplicas = 1
		if len(c.Raft.Peers) >= 3 || len(c.NATS.Routes) >= 2 {
			c.NATS.LogReplicas = 3
		}
	}
	return nil
}

func newCoordinatorCmd(g *globals) *cobra.Command {
	f := &coordinatorFlags{cfg: coordinator.DefaultConfig()}
	f.cfg.DataDir = defaultDataDir("coordinator")
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator (one of 1, 3 or 5 Raft voters)",
		Long: `Run a coordinator. A new cluster starts with --bootstrap on every initial node,
all given the same --peers; later nodes start with --join pointing at any member.
Each coordinator embeds a NATS server; give them --nats-cluster-listen and
--nats-routes so they form one NATS cluster, or point all at --nats-url.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.finish(); err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			go gctune.Run(cmd.Context(), time.Second)
			if err := requireSecure(log, f.cfg); err != nil {
				return err
			}
			srv, err := coordinator.Start(f.cfg, log)
			if err != nil {
				return err
			}
			if err := f.writeAddrs(srv); err != nil {
				srv.Close()
				return err
			}
			ctx, cancel := signalContext(log, nil)
			defer cancel()
			<-ctx.Done()
			return srv.Shutdown()
		},
	}
	f.register(cmd, true)
	return cmd
}

type agentFlags struct {
	cfg    agent.Config
	labels []string
	kube   []string
	// Enrollment: a join token and the coordinators to present it to.
	joinToken    string
	coordinators []string
}

func (f *agentFlags) register(cmd *cobra.Command, full bool) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.labels, "label", nil, "agent label k=v (repeatable); tasks select agents by labels")
	fl.IntVar(&f.cfg.Slots, "slots", f.cfg.Slots, "tasks run at once")
	fl.StringVar(&f.cfg.BuildkitAddr, "buildkit-addr", os.Getenv("BUILDKIT_HOST"),
		"BuildKit daemon address for build and run tasks, e.g. unix:///run/buildkit/buildkitd.sock (default $BUILDKIT_HOST; empty: exec tasks only)")
	fl.StringArrayVar(&f.cfg.PassEnv, "pass-env", nil,
		"pass this variable of the agent's environment to exec tasks (repeatable); by default they get only PATH, HOME, USER, LOGNAME, SHELL, TMPDIR, LANG, LC_ALL, LC_CTYPE and TZ")
	if !full {
		return
	}
	fl.StringArrayVar(&f.kube, "kube", nil, "a Kubernetes cluster this agent deploys to and watches: NAME=KUBECONFIG, or NAME=in-cluster (repeatable)")
	fl.StringVar(&f.cfg.Name, "name", f.cfg.Name, "agent name (unique in the cluster)")
	fl.StringVar(&f.cfg.Cluster, "cluster", f.cfg.Cluster, "cluster name")
	fl.StringVar(&f.cfg.NATS, "nats", f.cfg.NATS, "NATS server URLs, comma-separated")
	fl.StringVar(&f.cfg.WorkDir, "work-dir", f.cfg.WorkDir, "directory for working copies and the result spool")
	fl.DurationVar(&f.cfg.HeartbeatInterval, "heartbeat", f.cfg.HeartbeatInterval, "heartbeat interval")
	fl.DurationVar(&f.cfg.Grace, "grace", f.cfg.Grace, "time between SIGTERM and SIGKILL when a task is stopped")
	fl.StringVar(&f.cfg.TLSCert, "tls-cert", "", "this agent's certificate (gantry tls cert create --agent NAME); with --tls-key and --tls-ca, NATS uses TLS and lets the agent use only its own subjects")
	fl.StringVar(&f.cfg.TLSKey, "tls-key", "", "the key of --tls-cert")
	fl.StringVar(&f.cfg.TLSCA, "tls-ca", "", "the cluster's CA certificate (ca.pem): the NATS servers' certificates must be signed by it")
	fl.StringVar(&f.joinToken, "join-token", os.Getenv("GANTRY_JOIN_TOKEN"), "enroll with this join token (gantry agent-token create; env GANTRY_JOIN_TOKEN): the agent gets its own certificate from --coordinator and keeps it in WORK-DIR/tls; with --tls-ca, instead of --tls-cert and --tls-key")
	fl.StringSliceVar(&f.coordinators, "coordinator", nil, "coordinators' gRPC addresses to enroll with (comma-separated)")
}

// enroll obtains the agent's certificate with --join-token, or reuses the
// one it kept.
func (f *agentFlags) enroll(ctx context.Context) error {
	if f.joinToken == "" {
		return nil
	}
	if f.cfg.TLSCert != "" || f.cfg.TLSKey != "" {
		return errors.New("--join-token: the agent gets its certificate by enrolling; drop --tls-cert and --tls-key")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cert, key, err := agent.Enroll(ctx, agent.Enrollment{
		Name: f.cfg.Name, JoinToken: f.joinToken, Addrs: f.coordinators, CAFile: f.cfg.TLSCA,
		Dir: filepath.Join(f.cfg.WorkDir, "tls"),
	})
	if err != nil {
		return err
	}
	f.cfg.TLSCert, f.cfg.TLSKey = cert, key
	return nil
}

func (f *agentFlags) finish() error {
	f.cfg.Labels = map[string]string{}
	for _, l := range f.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: want k=v", l)
		}
		f.cfg.Labels[k] = v
	}
	for _, k := range f.kube {
		c, err := agent.ParseKubeCluster(k)
		if err != nil {
			return fmt.Errorf("--kube: %w", err)
		}
		f.cfg.Kube = append(f.cfg.Kube, c)
	}
	return nil
}

func newAgentCmd(g *globals) *cobra.Command {
	f := &agentFlags{cfg: agent.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run an agent that takes tasks from the cluster",
		Long: `Run an agent. SIGTERM drains it: it takes no new work, finishes what runs,
delivers the results and exits; a second SIGTERM stops it at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.finish(); err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			if err := f.enroll(cmd.Context()); err != nil {
				return err
			}
			a, err := agent.New(f.cfg, log)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(log, a.Kill)
			defer cancel()
			return a.Run(ctx)
		},
	}
	f.register(cmd, true)
	return cmd
}

func newDevCmd(g *globals) *cobra.Command {
	cf := &coordinatorFlags{cfg: coordinator.DefaultConfig()}
	cf.cfg.DataDir = defaultDataDir("dev")
	cf.cfg.NodeID = "dev"
	cf.cfg.Raft.Bootstrap = true
	cf.cfg.GenerateSecretKeys = true
	cf.cfg.UnsignedHooks = true
	af := &agentFlags{cfg: agent.DefaultConfig()}
	af.cfg.Name = "local"
	var (
		kubeconfig string
		check      bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Gantry in one process: a single-node coordinator, embedded NATS and a local agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.finish(); err != nil {
				return err
			}
			if err := af.finish(); err != nil {
				return err
			}
			if kubeconfig != "" {
				af.cfg.Kube = append(af.cfg.Kube, agent.KubeCluster{Name: "local", Kubeconfig: kubeconfig})
			}
			// Loopback only: its HTTP address is plain text, and it is one
			// machine's playground.
			for flag, a := range map[string]string{"--grpc-addr": cf.cfg.GRPCAddr, "--http-addr": cf.cfg.HTTPAddr, "--raft-addr": cf.cfg.Raft.BindAddr, "--nats-listen": cf.cfg.NATS.Listen} {
				if host, _, err := net.SplitHostPort(a); a != "" && (err != nil || !isLoopback(host)) {
					return fmt.Errorf("%s %q: gantry dev listens on loopback only (127.0.0.1, ::1, localhost); for other addresses run gantry coordinator with TLS", flag, a)
				}
			}
			token, savedTo, err := devToken(cf.cfg.DataDir)
			if err != nil {
				return fmt.Errorf("admin token: %w", err)
			}
			if cf.cfg.BootstrapToken == "" {
				cf.cfg.BootstrapToken = token
			}
			// Its own CA and certificates, kept in the data dir: the API,
			// Raft and NATS speak TLS. The HTTP address (console, webhooks)
			// stays plain on loopback, where browsers and local forges need
			// not trust the CA; logging in still takes the token.
			tlsMaterial, err := pki.EnsureLocal(filepath.Join(cf.cfg.DataDir, "tls"), "dev")
			if err != nil {
				return fmt.Errorf("TLS material: %w", err)
			}
			cert, key := tlsMaterial.CertFiles("dev")
			cf.cfg.TLS = coordinator.TLSConfig{CertFile: cert, KeyFile: key, CAFile: tlsMaterial.CAFile(), CAKeyFile: filepath.Join(tlsMaterial.Dir, "ca-key.pem")}
			cf.cfg.PlainHTTP = true
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			go gctune.Run(cmd.Context(), time.Second)
			srv, err := coordinator.Start(cf.cfg, log)
			if err != nil {
				return err
			}
			if err := cf.writeAddrs(srv); err != nil {
				srv.Close()
				return err
			}
			// The CLI finds the CA of this address there.
			if err := rememberDevCA(srv.GRPCAddr(), tlsMaterial.CAFile()); err != nil {
				log.Warn("the CLI will need --tls-ca "+tlsMaterial.CAFile(), zap.Error(err))
			}
			// The agent shares the coordinator's process: it connects to
			// the embedded NATS server in process, without a socket or TLS,
			// with the same permissions its certificate would give.
			if af.cfg.NATSOptions, err = srv.InProcessNATS(af.cfg.Name); err != nil {
				srv.Close()
				return err
			}
			af.cfg.NATS = coordinator.InProcessURL
			af.cfg.Cluster = cf.cfg.Cluster
			af.cfg.WorkDir = filepath.Join(cf.cfg.DataDir, "agent")
			a, err := agent.New(af.cfg, log)
			if err != nil {
				srv.Close()
				return err
			}
			// Say it runs once its admin token is committed (the first
			// leader commits it), so that the CLI's first call is answered.
			waitCtx, waitCancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			for {
				changed := srv.FSM().Changed()
				if srv.FSM().TokenCount() > 0 {
					break
				}
				select {
				case <-changed:
					continue
				case <-waitCtx.Done():
				}
				break
			}
			waitCancel()
			fmt.Fprintf(os.Stderr, `Gantry dev is running.
  gRPC API    %s   (TLS; gantry --addr %s ...)
  HTTP        http://%s   (the console: log in with the admin token; /healthz /readyz /metrics)
  NATS        %s
  Raft        %s
  data        %s   (CA in tls/ca.pem)
  agent       %s (%d slots)
  kubernetes  %s
  admin token %s
              %s
`, srv.GRPCAddr(), srv.GRPCAddr(), srv.HTTPAddr(), srv.NATSURL(), srv.RaftAddr(), cf.cfg.DataDir, af.cfg.Name, af.cfg.Slots, kubeSummary(kubeconfig),
				token, tokenHint(savedTo, cf.cfg.DataDir))
			ctx, cancel := signalContext(log, a.Kill)
			defer cancel()
			agentDone := make(chan error, 1)
			actx, stopAgent := context.WithCancel(context.Background())
			defer stopAgent()
			go func() { agentDone <- a.Run(actx) }()
			if check {
				err := checkDev(ctx, srv.GRPCAddr(), token, tlsMaterial.CAFile(), af.cfg.Name)
				stopAgent()
				select {
				case <-agentDone:
				case <-time.After(30 * time.Second):
					a.Kill()
					<-agentDone
				}
				if serr := srv.Shutdown(); err == nil {
					err = serr
				}
				return err
			}
			select {
			case <-ctx.Done():
				// Drain the local agent: it finishes what runs, then stops.
				stopAgent()
				select {
				case <-agentDone:
				case <-time.After(30 * time.Second):
					a.Kill()
					<-agentDone
				}
			case err := <-agentDone:
				// The agent was drained remotely; the coordinator keeps
				// serving until the process is told to stop.
				if err != nil {
					log.Error("local agent stopped", zap.Error(err))
				} else {
					log.Info("local agent drained; the coordinator keeps running")
				}
				<-ctx.Done()
			}
			return srv.Shutdown()
		},
	}
	cf.register(cmd, false)
	af.register(cmd, false)
	cmd.Flags().StringVar(&af.cfg.Name, "agent-name", af.cfg.Name, "name of the local agent")
	cmd.Flags().BoolVar(&check, "check", false, "start, check that the API answers with the admin token and the local agent joins, then stop (exit 0 when both do): a smoke test of a build or an image")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"),
		"kubeconfig of the cluster the local agent deploys to, named local (default $KUBECONFIG; empty: no cluster)")
	return cmd
}

// checkDev asks the dev coordinator at addr, as a client would, for the
// cluster's status and waits until the local agent is in the fleet.
func checkDev(ctx context.Context, addr, token, caFile, agentName string) error {
	cfg, err := pki.ClientTLS(caFile, "", "")
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	c, err := client.New([]string{addr}, client.WithToken(token), client.WithTLS(cfg))
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := c.Raw().ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
	if err != nil {
		return fmt.Errorf("check: cluster status: %w", err)
	}
	for {
		agents, err := c.Agents(ctx)
		if err != nil {
			return fmt.Errorf("check: agents: %w", err)
		}
		for _, ag := range agents {
			if ag.GetInfo().GetName() == agentName && ag.GetState() == gv1.AgentState_AGENT_STATE_ACTIVE {
				version := ""
				for _, n := range st.GetNodes() {
					version = n.GetVersion()
				}
				fmt.Printf("gantry dev answers: coordinator %s (%s) leads, agent %s is active\n", st.GetLeaderId(), version, agentName)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("check: agent %s did not join: %w", agentName, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func kubeSummary(kubeconfig string) string {
	if kubeconfig == "" {
		return "none (set $KUBECONFIG or --kubeconfig to deploy)"
	}
	return "cluster local = " + kubeconfig
}
