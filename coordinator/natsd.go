package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/limit"
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
func startNATS(cfg Config, log *zap.Logger) (*server.Server, error) {
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

// The log stream's bounds: older logs and, past the size, the oldest logs
// are dropped; a message larger than one chunk is refused.
const (
	logMaxAge   = 7 * 24 * time.Hour
	logMaxBytes = 4 << 30
)

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
