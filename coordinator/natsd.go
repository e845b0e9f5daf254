package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// NATSConfig says which NATS the coordinator uses: its own embedded server
// (the default) or an existing deployment.
type NATSConfig struct {
	// URL of an existing NATS cluster; empty starts an embedded server.
	URL string
	// Listen is the embedded server's client address (port 0 picks one).
	Listen string
	// ClusterListen is the embedded server's route address; empty means the
	// server does not cluster.
	ClusterListen string
	// Routes are the other coordinators' route URLs (nats://host:port).
	Routes []string
	// LogReplicas is the replica count of the log stream.
	LogReplicas int
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	return host, port, nil
}

// startNATS starts the embedded server.
// enrolled looks an agent's enrollment up in the replicated state;
// inProcess admits in-process connections (see natsAuth).
func startNATS(cfg Config, log *zap.Logger, enrolled func(agent string) (*gv1.Enrollment, bool), inProcess *inProcessUsers) (*server.Server, error) {
	host, port, err := splitHostPort(cfg.NATS.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", cfg.NATS.Listen, err)
	}
	opts := &server.Options{
		ServerName: cfg.NodeID,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir + "/nats",
		NoSigs:     true,
		NoLog:      true,
		HTTPPort:   0,
		// Set, not left to the default (1 MiB), so the bound is the one
		// agents and the API are told: limit.Message.
		MaxPayload: limit.Message,
		// JetStream holds only the log stream (logMaxBytes); the server's
		// own bounds keep any other stream someone creates from filling
		// the disk or the memory.
		JetStreamMaxStore:  2 * logMaxBytes,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.NATS.ClusterListen != "" {
		ch, cp, err := splitHostPort(cfg.NATS.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("nats cluster listen %q: %w", cfg.NATS.ClusterListen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: "gantry-" + cfg.Cluster, Host: ch, Port: cp}
		for _, r := range cfg.NATS.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("nats route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if err := natsTLS(cfg, opts, log, enrolled, inProcess); err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go ns.Start()
	if ns.ReadyForConnections(10 * time.Second) {
		return ns, nil
	}
	// Start is slow now and then (JetStream recovering its store on a busy
	// disk). With a fixed port the coordinator's connection simply retries
	// until the server listens; a random port must be known first.
	if port > 0 {
		log.Warn("embedded nats not listening after 10s; continuing, connections retry", zap.String("listen", cfg.NATS.Listen))
		return ns, nil
	}
	if !ns.ReadyForConnections(50 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server: not listening after 60s")
	}
	return ns, nil
}

// natsTLS secures the embedded server when the coordinator has TLS:
// clients connect over TLS and must present a certificate of the cluster's
// CA, which natsAuth maps to permissions (coordinators everything, an agent
// its own subjects); routes are mutual TLS between coordinators, like Raft.
// Without TLS (--insecure) the server is open.
func natsTLS(cfg Config, opts *server.Options, log *zap.Logger, enrolled func(string) (*gv1.Enrollment, bool), inProcess *inProcessUsers) error {
	c := cfg.TLS
	if !c.Enabled() {
		return nil
	}
	clients, err := pki.ServerTLS(c.CertFile, c.KeyFile, c.CAFile)
	if err != nil {
		return fmt.Errorf("nats tls: %w", err)
	}
	clients.ClientAuth = tls.RequireAndVerifyClientCert
	opts.TLS, opts.TLSVerify, opts.TLSConfig = true, true, clients
	opts.TLSTimeout = 5
	log = log.Named("nats")
	opts.CustomClientAuthentication = natsAuth{ns: subject.New(cfg.Cluster), log: log, enrolled: enrolled, inProcess: inProcess}
	if cfg.NATS.ClusterListen != "" {
		routes, err := cfg.TLS.raft()
		if err != nil {
			return fmt.Errorf("nats route tls: %w", err)
		}
		opts.Cluster.TLSConfig = routes
		opts.Cluster.TLSTimeout = 5
		opts.CustomRouterAuthentication = routeAuth{log: log}
	}
	return nil
}

// inProcessNATS opens in-process connections to the embedded server that
// is current: RestartNATS replaces it, and the coordinator's connection
// reconnects to the new one.
type inProcessNATS struct {
	ref *atomic.Pointer[server.Server]
}

func (p inProcessNATS) InProcessConn() (net.Conn, error) {
	srv := p.ref.Load()
	if srv == nil {
		return nil, errors.New("no embedded nats server")
	}
	return srv.InProcessConn()
}

// InProcessURL names the embedded server to an in-process connection; it is
// never dialed (a tls:// URL would have the client ask for TLS on the pipe).
const InProcessURL = "nats://in-process"

// InProcessNATS are the options of a connection of agent name to this
// coordinator's embedded NATS server in process (at InProcessURL): no
// socket and no TLS, the agent's permissions as with its certificate.
// `gantry dev` connects its agent so.
func (s *Server) InProcessNATS(agent string) ([]nats.Option, error) {
	if s.natsdRef.Load() == nil {
		return nil, errors.New("in-process nats: no embedded server")
	}
	if err := name.Check(agent); err != nil {
		return nil, fmt.Errorf("in-process nats: agent %q: %w", agent, err)
	}
	return s.inProcessOptions(pki.Agent, agent), nil
}

// inProcessOptions connect in process to the embedded server as holder, a
// connection of kind (pki.Server or pki.Agent), by a token made for it.
func (s *Server) inProcessOptions(kind pki.Kind, holder string) []nats.Option {
	token := s.inProcess.add(kind, holder)
	return []nats.Option{nats.InProcessServer(inProcessNATS{&s.natsdRef}), nats.Token(token)}
}

// The log stream's bounds: older logs and, past the size, the oldest logs
// are dropped; a message larger than one chunk is refused.
const (
	logMaxAge   = 7 * 24 * time.Hour
	logMaxBytes = 4 << 30
)

// logStreamKnown marks the log stream ready as soon as the embedded NATS
// server has it assigned from before a restart: the stream is durable, and
// what ensureLogStream waits for then is the JetStream cluster electing a
// new meta leader (when the node that restarted held it), which took 5-8 s
// and held /readyz that long after a restart although the coordinator
// served from its first second. ensureLogStream still applies the
// configuration once JetStream answers.
//
// The server is read from natsdRef at each look (fault injection restarts
// it), and asked for the stream only once it says it is clustered: that
// answer is an atomic set after JetStream's cluster state, which the
// stream lookup reads without a lock (the race detector caught a look at
// a server still starting).
func (s *Server) logStreamKnown(ctx context.Context) {
	if srv := s.natsdRef.Load(); srv == nil || !srv.JetStreamIsClustered() {
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !s.logStreamReady.Load() {
		srv := s.natsdRef.Load()
		if srv != nil && srv.JetStreamIsClustered() && srv.JetStreamIsStreamAssigned(srv.GlobalAccount().Name, s.ns.LogStream()) {
			s.logStreamReady.Store(true)
			s.log.Info("log stream known from before the restart", zap.String("stream", s.ns.LogStream()))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// forwardReady reports whether a write sent to this node can reach the
// leader: on a follower with an embedded NATS server, whether the server
// has the leader's subscription to forwarded calls. After a restart the
// routes carried it 0.3-0.5 s after the rest was ready, and every write
// sent through the node meanwhile waited for it.
func (s *Server) forwardReady() bool {
	srv := s.natsdRef.Load()
	if srv == nil || s.node.Raft.State() == raft.Leader {
		return true
	}
	return srv.GlobalAccount().SubscriptionInterest(s.ns.RPC("SubmitJob"))
}

// ensureLogStream creates or updates the stream that keeps task logs. In a
// NATS cluster that is still forming this fails for a while; it retries
// until it succeeds or ctx ends.
func ensureLogStream(ctx context.Context, nc *nats.Conn, cfg Config, name, subjects string, log *zap.Logger, ready func()) {
	js, err := jetstream.New(nc)
	if err != nil {
		log.Error("jetstream", zap.Error(err))
		return
	}
	wait := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{subjects},
			Storage:    jetstream.FileStorage,
			Replicas:   max(cfg.NATS.LogReplicas, 1),
			MaxAge:     logMaxAge,
			MaxBytes:   logMaxBytes,
			MaxMsgSize: limit.LogMessage,
			Discard:    jetstream.DiscardOld,
			Retention:  jetstream.LimitsPolicy,
		})
		cancel()
		if err == nil {
			ready()
			log.Info("log stream ready", zap.String("stream", name), zap.Int("replicas", max(cfg.NATS.LogReplicas, 1)))
			return
		}
		log.Debug("log stream not ready", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
			wait = min(2*wait, 2*time.Second)
		}
	}
}
