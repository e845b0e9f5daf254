// Package coordinator assembles a Gantry coordinator: the Raft node and its
// state machine, an embedded NATS server (or a connection to an existing
// one), the dispatcher, the gRPC API and the HTTP endpoints.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/coordinator/autoscale"
	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/dispatch"
	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/gitops"
	"github.com/gantryci/gantry/coordinator/metrics"
	"github.com/gantryci/gantry/coordinator/project"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	"github.com/gantryci/gantry/internal/vt"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Config configures a coordinator.
type Config struct {
	// NodeID names this coordinator in the Raft configuration.
	NodeID string
	// Cluster names the Gantry cluster; it namespaces NATS subjects.
	Cluster string
	DataDir string
	// GRPCAddr serves the API; HTTPAddr serves health, metrics and hooks.
	GRPCAddr string
	HTTPAddr string
	// Join is the gRPC address of a running coordinator; a node without Raft
	// state asks it to add this node as a voter.
	Join     string
	Raft     consensus.Config
	NATS     NATSConfig
	Dispatch dispatch.Config
	// TLS secures the API, HTTP and Raft; see TLSConfig. Empty: plain text.
	TLS TLSConfig
	// WebhookSecret is the secret pushes to /hooks/git are signed with
	// (X-Hub-Signature-256, as GitHub sends it). Without it the hook
	// refuses every push (403), unless UnsignedHooks.
	WebhookSecret string
	// UnsignedHooks lets /hooks/git take unsigned pushes when there is no
	// WebhookSecret (gantry dev): anyone who reaches the HTTP address can
	// then make the GitOps controller poll a repository early.
	UnsignedHooks bool
	// PlainHTTP serves the HTTP address (console, hooks, metrics) without
	// TLS even when TLS is configured: gantry dev, on loopback only, so
	// that browsers and forges on the machine need not trust its CA.
	PlainHTTP bool
	// HTTPHosts are host names, besides localhost and the HTTP address's
	// own, that the console and /debug/pprof/ answer to (the names users
	// and proxies reach them by); IP addresses always are. A guard against
	// DNS rebinding (coordinator/DESIGN.md, "The HTTP address").
	HTTPHosts []string
	// JobRetention is how long ended jobs are kept; zero keeps them forever.
	JobRetention time.Duration
	// SecretKeys is the keyring file (package secret) that seals secrets;
	// empty means DataDir/secret-keys when that exists.
	SecretKeys string
	// GenerateSecretKeys creates DataDir/secret-keys when SecretKeys is
	// empty and the file does not exist (gantry dev).
	GenerateSecretKeys bool
	// BootstrapToken, when set, is committed by the leader as the first
	// admin token if the cluster has none (`gantry dev`, or
	// --bootstrap-token-file). Without it, `gantry acl bootstrap` makes one.
	BootstrapToken string
	// JoinToken is the admin token a node without Raft state sends when it
	// asks Join to add it; empty means BootstrapToken.
	JoinToken string
	// ExternalURL is where users and forges reach the HTTP address (the
	// console's links in commit statuses, the webhook URL projects
	// register); empty means http(s)://HTTPAddr as bound.
	ExternalURL string
	// Insecure answers API calls without a token (roles are not checked)
	// and lets `gantry coordinator` run without TLS: for a trusted network
	// or a test only. It is logged as a warning at every start.
	Insecure bool
	// Autoscale, when its Kubeconfig is set, lets the leader size agent
	// pools on Kubernetes by queue depth (package autoscale).
	Autoscale AutoscaleConfig
}

// AutoscaleConfig says where the agent pools to scale are.
type AutoscaleConfig struct {
	// Kubeconfig is "in-cluster" (the pod's service account) or the path of
	// a kubeconfig file; empty turns autoscaling off.
	Kubeconfig string
	// Namespace holds the pools' Deployments; empty means the in-cluster
	// namespace ($POD_NAMESPACE or the service account's), else the
	// kubeconfig's current namespace.
	Namespace string
}

// DefaultConfig is a single node on loopback.
func DefaultConfig() Config {
	rc := consensus.DefaultConfig()
	rc.BindAddr = "127.0.0.1:7422"
	return Config{
		NodeID:       "node1",
		Cluster:      "default",
		DataDir:      "gantry-data",
		GRPCAddr:     "127.0.0.1:7420",
		HTTPAddr:     "127.0.0.1:7421",
		Raft:         rc,
		NATS:         NATSConfig{Listen: "127.0.0.1:4222", LogReplicas: 1},
		Dispatch:     dispatch.DefaultConfig(),
		JobRetention: DefaultJobRetention,
	}
}

// Validate checks the configuration and names the offending setting.
func (c Config) Validate() error {
	if err := subject.ValidToken(c.NodeID); err != nil {
		return fmt.Errorf("node id: %w", err)
	}
	if err := subject.ValidToken(c.Cluster); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.BootstrapToken != "" {
		if _, _, err := api.ParseToken(c.BootstrapToken); err != nil {
			return fmt.Errorf("bootstrap token: %w", err)
		}
	}
	if c.DataDir == "" {
		return errors.New("data dir: required")
	}
	for name, a := range map[string]string{"grpc address": c.GRPCAddr, "http address": c.HTTPAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%s %q: %w", name, a, err)
		}
	}
	if c.NATS.URL == "" {
		if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
			return fmt.Errorf("nats listen %q: %w", c.NATS.Listen, err)
		}
	}
	if c.Dispatch.LeaseTTL <= 0 || c.Dispatch.AssignTimeout <= 0 || c.Dispatch.Tick <= 0 {
		return errors.New("dispatch: lease ttl, assign timeout and tick must be positive")
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if err := validHTTPHosts(c.HTTPHosts); err != nil {
		return err
	}
	rc := c.Raft
	rc.ID, rc.Dir = c.NodeID, filepath.Join(c.DataDir, "raft")
	return rc.Validate()
}

// Server is a running coordinator.
type Server struct {
	cfg      Config
	log      *zap.Logger
	ns       subject.Namespace
	natsd    *server.Server
	natsdRef atomic.Pointer[server.Server] // natsd, for loops and the address getters, which race RestartNATS
	// inProcess admits in-process connections to natsd (natsAuth): nc's,
	// and those of InProcessNATS.
	inProcess inProcessUsers
	nc        *nats.Conn
	fsm       *fsm.FSM
	node      *consensus.Node
	prop      *consensus.Proposer
	disp      *dispatch.Dispatcher
	gitops    *gitops.Controller
	projects  *project.Controller
	scaler    *autoscale.Controller // nil without Config.Autoscale
	api       *api.Server
	metrics   *metrics.Metrics
	nodes     *nodeTable

	logStreamReady atomic.Bool
	keyring        atomic.Pointer[secret.Keyring]
	started        time.Time
	caughtUp       atomic.Bool // see catchup.go
	leadReady      atomic.Bool // leader, and its barrier applied every committed entry
	keyringMu      sync.Mutex
	keyringMod     time.Time // modification time of the loaded keyring file

	grpc     *grpc.Server
	grpcLis  net.Listener
	self     *client.Client // the console's client of this node's API
	http     *http.Server
	httpLis  net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

// Start starts a coordinator; it runs until Close.
func Start(cfg Config, log *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.Named("coordinator").With(zap.String("node", cfg.NodeID))
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, ns: subject.New(cfg.Cluster), fsm: fsm.New(), metrics: metrics.New(), cancel: cancel, started: time.Now()}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	cfg := s.cfg
	natsOpts := []nats.Option{
		nats.Name("gantry-coordinator-" + cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// Asynchronous errors (a subscription too slow for what it
		// receives drops messages) are logged: a dropped report or
		// heartbeat shows up later as a requeue.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			s.log.Warn("nats", zap.String("subscription", subj), zap.Error(err))
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by Close
				s.log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { s.log.Info("nats reconnected") }),
	}
	natsURL := cfg.NATS.URL
	connectURL := natsURL
	if natsURL == "" {
		ns, err := startNATS(cfg, s.log, s.fsm.Enrollment, &s.inProcess)
		if err != nil {
			return err
		}
		s.natsd = ns
		s.natsdRef.Store(ns)
		natsURL = ns.ClientURL()
		connectURL = InProcessURL
		// The coordinator talks to its own server in process: no socket,
		// no TLS, no system calls for every message it sends and receives
		// (assignments, reports, heartbeats). natsAuth admits the
		// connection by its token.
		natsOpts = append(natsOpts, s.inProcessOptions(pki.Server, cfg.NodeID)...)
	}
	nc, err := nats.Connect(connectURL, natsOpts...)
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", natsURL, err)
	}
	s.nc = nc

	rc := cfg.Raft
	rc.ID, rc.Dir = cfg.NodeID, filepath.Join(cfg.DataDir, "raft")
	if rc.TLS, err = cfg.TLS.raft(); err != nil {
		return err
	}
	node, err := consensus.Open(rc, s.fsm, s.log)
	if err != nil {
		return err
	}
	s.node = node
	s.prop = consensus.NewProposer(node.Raft)
	s.prop.Observe = func(n int, took time.Duration) {
		s.metrics.RaftApply.Observe(took.Seconds())
		s.metrics.BatchSize.Observe(float64(n))
	}
	agents := fleet.New(cfg.Dispatch.LeaseTTL)
	s.disp = dispatch.New(cfg.Dispatch, s.log, nc, s.ns, s.fsm, s.prop, agents, s.metrics)
	s.nodes = newNodeTable(s)
	s.prop.Gate = s.nodes.gateCommand
	if s.scaler, err = newScaler(cfg.Autoscale, s.fsm, agents, s.metrics, s.log); err != nil {
		return err
	}
	s.gitops = gitops.New(gitops.Deps{
		Log: s.log, FSM: s.fsm, Proposer: s.prop, NATS: nc, Namespace: s.ns, Fleet: agents, NewJobID: api.NewJobID,
		Credential: func(name string) ([]byte, error) { return s.projects.Secret(name) },
	})
	s.projects = project.New(project.Deps{
		Log: s.log, FSM: s.fsm, Proposer: s.prop, Keyring: s.keyring.Load, Cancel: s.disp.Cancel,
		NewJobID: api.NewJobID, Dir: cfg.DataDir, ExternalURL: s.externalURL,
	})
	var agentCA *pki.CA
	if cfg.TLS.CAKeyFile != "" {
		if agentCA, err = pki.LoadCA(cfg.TLS.CAFile, cfg.TLS.CAKeyFile); err != nil {
			return fmt.Errorf("--tls-ca-key: %w", err)
		}
	}
	s.api = api.New(api.Deps{
		Log: s.log, NATS: nc, Namespace: s.ns, FSM: s.fsm, Raft: node, Proposer: s.prop,
		Dispatcher: s.disp, Cluster: s.nodes, GitOps: s.gitops, Projects: s.projects, AppHookSecret: cfg.WebhookSecret, AgentCA: agentCA, Insecure: cfg.Insecure,
	})
	if cfg.Insecure {
		s.log.Warn("insecure: the API answers calls without a token and checks no role (--insecure)")
	}
	if err := s.loadKeyring(); err != nil {
		return err
	}
	if _, err := nc.Subscribe(s.ns.AllDrift(), s.gitops.HandleDrift); err != nil {
		return fmt.Errorf("subscribe drift reports: %w", err)
	}
	if _, err := nc.Subscribe(s.ns.GitPush(), s.gitops.HandlePush); err != nil {
		return fmt.Errorf("subscribe git pushes: %w", err)
	}
	if _, err := nc.Subscribe(s.ns.AllHeartbeats(), s.disp.HandleHeartbeat); err != nil {
		return fmt.Errorf("subscribe heartbeats: %w", err)
	}
	if _, err := nc.Subscribe(s.ns.AllNodeStatus(), s.nodes.handle); err != nil {
		return fmt.Errorf("subscribe node status: %w", err)
	}

	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	creds, selfTLS, err := s.serveTLS()
	if err != nil {
		return err
	}
	s.grpc = grpc.NewServer(
		creds,
		grpc.MaxRecvMsgSize(limit.Message),
		grpc.MaxSendMsgSize(limit.Message),
		grpc.ForceServerCodec(vt.Codec{}),
		grpc.ChainUnaryInterceptor(s.api.UnaryInterceptor(s.ready)),
		grpc.ChainStreamInterceptor(s.api.StreamInterceptor(s.ready)),
	)
	gv1.RegisterGantryServiceServer(s.grpc, s.api)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, hs)
	reflection.Register(s.grpc)
	// The console is an API client like any other: it dials this node
	// with the public client.
	if s.self, err = client.New([]string{loopback(s.GRPCAddr())}, selfTLS...); err != nil {
		return fmt.Errorf("console api client: %w", err)
	}
	s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}

	s.run(ctx, func(ctx context.Context) { s.prop.Run(ctx) })
	s.run(ctx, s.catchUp)
	s.run(ctx, s.keyringLoop)
	s.run(ctx, s.disconnectRevoked)
	s.run(ctx, s.watchLeadership)
	s.run(ctx, s.nodes.announce)
	s.run(ctx, func(ctx context.Context) {
		ensureLogStream(ctx, nc, cfg, s.ns.LogStream(), s.ns.AllLogs(), s.log, func() { s.logStreamReady.Store(true) })
	})
	s.run(ctx, s.logStreamKnown)
	s.run(ctx, func(context.Context) {
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			s.log.Error("grpc serve", zap.Error(err))
		}
	})
	s.run(ctx, func(context.Context) {
		if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http serve", zap.Error(err))
		}
	})
	if cfg.Join != "" {
		s.run(ctx, s.join)
	}
	s.log.Info("coordinator started",
		zap.String("grpc", s.GRPCAddr()), zap.String("http", s.HTTPAddr()),
		zap.String("raft", node.Addr()), zap.String("nats", natsURL))
	return nil
}

func (s *Server) run(ctx context.Context, f func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(ctx)
	}()
}

// watchLeadership runs the leader's work while this node leads.
func (s *Server) watchLeadership(ctx context.Context) {
	var (
		leading bool
		stop    context.CancelFunc
		done    chan struct{}
		rpcSub  *nats.Subscription
	)
	step := func(now bool) {
		if now == leading {
			return
		}
		leading = now
		if !now {
			s.log.Info("leadership lost")
			s.metrics.Leader.Set(0)
			if rpcSub != nil {
				rpcSub.Unsubscribe()
				rpcSub = nil
			}
			stop()
			<-done
			return
		}
		// Apply everything committed by earlier leaders before scheduling.
		if err := s.node.Raft.Barrier(10 * time.Second).Error(); err != nil {
			s.log.Warn("barrier after election", zap.Error(err))
			leading = false
			return
		}
		s.leadReady.Store(true)
		s.log.Info("leadership gained", zap.Uint64("applied", s.fsm.AppliedIndex()))
		s.metrics.Leader.Set(1)
		lctx, cancel := context.WithCancel(ctx)
		stop, done = cancel, make(chan struct{})
		go func() {
			defer close(done)
			var wg sync.WaitGroup
			wg.Add(6)
			go func() { defer wg.Done(); s.autoscaleLead(lctx) }()
			go func() { defer wg.Done(); s.projects.Lead(lctx) }()
			go func() { defer wg.Done(); s.bootstrapACL(lctx) }()
			go func() { defer wg.Done(); s.gitops.Lead(lctx) }()
			go func() { defer wg.Done(); s.pruneLoop(lctx) }()
			go func() { defer wg.Done(); s.rekeyLoop(lctx) }()
			if err := s.disp.Lead(lctx); err != nil {
				s.log.Error("lead", zap.Error(err))
			}
			wg.Wait()
		}()
		sub, err := s.nc.Subscribe(s.ns.AllRPC(), func(m *nats.Msg) { go s.api.ServeForwarded(lctx, m) })
		if err != nil {
			s.log.Error("subscribe forwarded calls", zap.Error(err))
		}
		rpcSub = sub
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			step(false)
			return
		case <-s.node.Raft.LeaderCh():
		case <-tick.C:
		}
		step(s.node.Raft.State() == raft.Leader)
	}
}

// IsLeader reports whether this node leads.
func (s *Server) IsLeader() bool { return s.node.Raft.State() == raft.Leader }

// FSM is the local replica of the state.
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Raft is the node's Raft instance.
func (s *Server) Raft() *raft.Raft { return s.node.Raft }

// Close stops the coordinator. It does not hand leadership over: to the
// rest of the cluster it looks like a crash, which is what tests want.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		var errs []error
		if s.grpc != nil {
			s.grpc.Stop()
		}
		if s.http != nil {
			s.http.Close()
		}
		if s.self != nil {
			s.self.Close()
		}
		if s.node != nil {
			errs = append(errs, s.node.Close())
		}
		s.wg.Wait()
		if s.nc != nil {
			s.nc.Close()
		}
		if s.natsd != nil {
			s.natsd.Shutdown()
			s.natsd.WaitForShutdown()
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// RestartNATS stops the embedded NATS server and starts it again on the
// same addresses, as a crash and restart of the server would. The
// coordinator's own connection reconnects by itself. For fault injection.
func (s *Server) RestartNATS() error {
	if s.natsd == nil {
		return errors.New("restart nats: no embedded server")
	}
	cfg := s.cfg
	if a := s.natsd.Addr(); a != nil {
		cfg.NATS.Listen = a.String()
	}
	if a := s.natsd.ClusterAddr(); a != nil {
		cfg.NATS.ClusterListen = a.String()
	}
	s.natsd.Shutdown()
	s.natsd.WaitForShutdown()
	ns, err := startNATS(cfg, s.log, s.fsm.Enrollment, &s.inProcess)
	if err != nil {
		return fmt.Errorf("restart nats: %w", err)
	}
	s.natsd = ns
	s.natsdRef.Store(ns)
	return nil
}

// Shutdown stops the coordinator gracefully: a leader of a multi-node
// cluster first hands leadership to another voter.
func (s *Server) Shutdown() error {
	if s.IsLeader() {
		if f := s.node.Raft.GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) > 1 {
			if err := s.node.Raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer", zap.Error(err))
			}
		}
	}
	return s.Close()
}

// externalURL is where users and forges reach this node's HTTP address:
// Config.ExternalURL, else the address as bound.
func (s *Server) externalURL() string {
	if s.cfg.ExternalURL != "" {
		return s.cfg.ExternalURL
	}
	scheme := "http"
	if s.cfg.TLS.Enabled() && !s.cfg.PlainHTTP {
		scheme = "https"
	}
	if s.httpLis == nil {
		return ""
	}
	return scheme + "://" + s.HTTPAddr()
}
