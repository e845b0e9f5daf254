// Package agent is the Gantry agent: it connects to a cluster over NATS,
// announces itself with heartbeats, takes assignments from the leader, runs
// them with an executor, streams their output and reports each result until
// a coordinator acknowledges it.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/agent/exec"
	"github.com/gantryci/gantry/agent/kube"
	"github.com/gantryci/gantry/internal/capability"
	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/name"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/subject"
	"github.com/gantryci/gantry/internal/version"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Version is reported in heartbeats; set at build time.
var Version = version.String()

// Config configures an agent.
type Config struct {
	Name    string
	Cluster string
	// NATS is a comma-separated list of server URLs.
	NATS   string
	Labels map[string]string
	Slots  int
	// WorkDir holds the result spool and per-attempt working directories.
	WorkDir           string
	HeartbeatInterval time.Duration
	// Grace is the time between SIGTERM and SIGKILL when a task is stopped.
	Grace time.Duration
	// ReportTimeout bounds one attempt to deliver a result.
	ReportTimeout time.Duration
	// BuildkitAddr is the address of a BuildKit daemon (e.g.
	// unix:///run/buildkit/buildkitd.sock); when set the agent takes build
	// and run tasks and advertises capability.BuildKit.
	BuildkitAddr string
	// Kube lists the Kubernetes clusters the agent deploys to and watches.
	Kube []KubeCluster
	// PassEnv names variables of the agent's environment that exec tasks
	// get besides the allowlist of agent/exec (PATH, HOME, USER, LOGNAME,
	// SHELL, TMPDIR, LANG, LC_ALL, LC_CTYPE, TZ); nothing else of the
	// agent's environment reaches a task.
	PassEnv []string
	// TLSCert, TLSKey and TLSCA are the agent's certificate (gantry tls
	// cert create --agent NAME), its key and the cluster's CA: all three
	// for a cluster with TLS, whose NATS lets the agent use only its own
	// subjects; none for one without.
	TLSCert string
	TLSKey  string
	TLSCA   string
	// NATSOptions are added to the NATS connection's own; `gantry dev`
	// connects its agent in process (coordinator.Server.InProcessNATS).
	NATSOptions []nats.Option
}

// DefaultConfig names the agent after the host.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Name:              sanitizeName(host),
		Cluster:           "default",
		NATS:              nats.DefaultURL,
		Slots:             4,
		WorkDir:           filepath.Join(os.TempDir(), "gantry-agent"),
		HeartbeatInterval: 500 * time.Millisecond,
		Grace:             10 * time.Second,
		ReportTimeout:     5 * time.Second,
	}
}

// sanitizeName turns a host name into a valid agent name (name.Token).
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.TrimLeft(b.String(), "-_")
	if len(out) > name.MaxLen {
		out = out[:name.MaxLen]
	}
	if out == "" {
		return "agent"
	}
	return out
}

// Validate checks the configuration and names the offending setting. What
// the agent announces in its heartbeats must pass the coordinator's checks
// (package limit, package name).
func (c Config) Validate() error {
	if err := name.Token(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if err := name.Token(c.Cluster); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if c.NATS == "" {
		return errors.New("nats: at least one server URL is required")
	}
	if c.Slots < 1 || c.Slots > limit.HeartbeatRunning/2 {
		return fmt.Errorf("slots: %d, want 1 to %d", c.Slots, limit.HeartbeatRunning/2)
	}
	if c.WorkDir == "" {
		return errors.New("work dir: required")
	}
	if c.HeartbeatInterval <= 0 || c.ReportTimeout <= 0 || c.Grace < 0 {
		return errors.New("heartbeat interval and report timeout must be positive, grace not negative")
	}
	if n := len(c.Labels) + len(c.Kube); n > limit.Labels {
		return fmt.Errorf("labels: %d (with one per kube cluster), more than the limit of %d", n, limit.Labels)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		if err := name.Check(k); err != nil {
			return fmt.Errorf("label: %w", err)
		}
		if v := c.Labels[k]; len(v) > limit.LabelValue {
			return fmt.Errorf("label %s: value is %d bytes, longer than the limit of %d", k, len(v), limit.LabelValue)
		}
	}
	for _, k := range c.Kube {
		if err := name.Token(k.Name); err != nil {
			return fmt.Errorf("kube cluster name: %w", err)
		}
	}
	if tls := [3]string{c.TLSCert, c.TLSKey, c.TLSCA}; tls != [3]string{} && slices.Contains(tls[:], "") {
		return errors.New("tls: give the certificate, its key and the CA, or none of them")
	}
	for _, e := range c.PassEnv {
		if err := exec.ValidEnvName(e); err != nil {
			return fmt.Errorf("pass env: %w", err)
		}
	}
	return nil
}

// Agent runs tasks for one cluster.
type Agent struct {
	cfg     Config
	log     *zap.Logger
	ns      subject.Namespace
	session string
	// executors run the tasks (executor.go); caps are their capabilities.
	executors executors
	caps      []string
	spool     *spool
	// clusters are the Kubernetes clusters reached, by name: the deploy
	// executor's, and watched (agent_kube.go).
	clusters map[string]*kube.Cluster

	watchMu   sync.Mutex
	watchCtx  context.Context
	watchStop context.CancelFunc
	watchers  map[string]*watcher
	watchWG   sync.WaitGroup

	nc *nats.Conn
	js jetstream.JetStream

	mu       sync.Mutex
	running  map[refKey]*task
	draining bool
	drained  chan struct{} // closed when draining starts
	killed   bool

	wg sync.WaitGroup

	// Log chunks the stream did not acknowledge in time are published
	// again in the background; Run waits (a bounded while) for them.
	logWG   sync.WaitGroup
	logCtx  context.Context
	logStop context.CancelFunc
}

type refKey struct {
	job     string
	task    string
	attempt int32
}

func keyOf(r *gv1.TaskRef) refKey { return refKey{r.GetJobId(), r.GetTask(), r.GetAttempt()} }

type task struct {
	ref    *gv1.TaskRef
	cancel context.CancelFunc
}

// New returns an agent; Run connects it.
func New(cfg Config, log *zap.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clusters, err := openClusters(cfg.Kube, log)
	if err != nil {
		return nil, err
	}
	execs, err := newExecutors(cfg, clusters, log)
	if err != nil {
		return nil, err
	}
	// Reaching a cluster is advertised as a label too, so tasks of any
	// kind can select agents that reach a cluster (labels: {cluster.prod: "true"}).
	if len(cfg.Kube) > 0 {
		labels := maps.Clone(cfg.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		for _, k := range cfg.Kube {
			labels["cluster."+k.Name] = "true"
		}
		cfg.Labels = labels
	}
	sp, err := openSpool(filepath.Join(cfg.WorkDir, "spool"))
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	logCtx, logStop := context.WithCancel(context.Background())
	watchCtx, watchStop := context.WithCancel(context.Background())
	return &Agent{
		clusters:  clusters,
		watchCtx:  watchCtx,
		watchStop: watchStop,
		watchers:  map[string]*watcher{},
		logCtx:    logCtx,
		logStop:   logStop,
		cfg:       cfg,
		log:       log.Named("agent").With(zap.String("agent", cfg.Name)),
		ns:        subject.New(cfg.Cluster),
		session:   hex.EncodeToString(b[:]),
		executors: execs,
		caps:      execs.capabilities(),
		spool:     sp,
		running:   map[refKey]*task{},
		drained:   make(chan struct{}),
	}, nil
}

// natsOptions are the options of the agent's NATS connection. Its inbox is
// its own (subject.AgentInbox): on a cluster with TLS it may subscribe to
// no other.
func (a *Agent) natsOptions() ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("gantry-agent-" + a.cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(8 << 20),
		nats.CustomInboxPrefix(subject.AgentInbox(a.cfg.Name)),
	}
	opts = append(opts, a.cfg.NATSOptions...)
	if a.cfg.TLSCA == "" {
		return opts, nil
	}
	tc, err := pki.ClientTLS(a.cfg.TLSCA, a.cfg.TLSCert, a.cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("nats tls: %w", err)
	}
	return append(opts, nats.Secure(tc)), nil
}

// Name is the agent's name.
func (a *Agent) Name() string { return a.cfg.Name }

// Run serves until ctx ends or a drain completes. When ctx ends the agent
// drains: it takes no new work, finishes what runs, delivers its results and
// returns. Kill stops it at once.
func (a *Agent) Run(ctx context.Context) error {
	opts, err := a.natsOptions()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(a.cfg.NATS, opts...)
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", a.cfg.NATS, err)
	}
	a.mu.Lock()
	a.nc = nc
	a.mu.Unlock()
	defer nc.Close()
	if a.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if _, err := nc.Subscribe(a.ns.Assign(a.cfg.Name), a.handleAssignment); err != nil {
		return fmt.Errorf("subscribe assignments: %w", err)
	}
	if _, err := nc.Subscribe(a.ns.Control(a.cfg.Name), a.handleControl); err != nil {
		return fmt.Errorf("subscribe control: %w", err)
	}
	if len(a.clusters) > 0 {
		if _, err := nc.Subscribe(a.ns.Watch(a.cfg.Name), a.handleWatch); err != nil {
			return fmt.Errorf("subscribe watch: %w", err)
		}
		defer a.stopWatches()
	}
	a.log.Info("agent started", zap.String("nats", a.cfg.NATS), zap.Int("slots", a.cfg.Slots),
		zap.Any("labels", a.cfg.Labels), zap.Strings("capabilities", a.caps), zap.String("session", a.session))

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var bgwg sync.WaitGroup
	bgwg.Add(2)
	go func() { defer bgwg.Done(); a.heartbeatLoop(bg) }()
	go func() { defer bgwg.Done(); a.reportLoop(bg) }()

	select {
	case <-ctx.Done():
		a.Drain()
	case <-a.drained:
	}
	// Draining: wait for running tasks, then for their results to be taken.
	a.wg.Wait()
	for !a.isKilled() && a.spool.len() > 0 {
		select {
		case <-a.spool.changed():
		case <-time.After(a.cfg.HeartbeatInterval):
		}
	}
	a.sendHeartbeat() // announce the drained state one last time
	a.waitLogs(10 * time.Second)
	_ = nc.Flush()
	stopBG()
	bgwg.Wait()
	a.spool.close()
	a.log.Info("agent stopped")
	return nil
}

// Drain stops taking new work; Run returns once running tasks are finished
// and reported.
func (a *Agent) Drain() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.draining {
		a.draining = true
		close(a.drained)
		a.log.Info("draining", zap.Int("running", len(a.running)))
	}
}

// Kill stops the agent at once, as a crash would: running tasks are killed
// and nothing more is reported or announced.
func (a *Agent) Kill() {
	a.mu.Lock()
	a.killed = true
	for _, t := range a.running {
		t.cancel()
	}
	nc := a.nc
	a.mu.Unlock()
	a.logStop()
	if nc != nil {
		nc.Close()
	}
	a.Drain()
}

// waitLogs waits for background log publishing, at most d, then stops it.
func (a *Agent) waitLogs(d time.Duration) {
	done := make(chan struct{})
	go func() {
		a.logWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		a.logStop()
		<-done
	}
	a.logStop()
}

func (a *Agent) isKilled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.killed
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		a.sendHeartbeat()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) sendHeartbeat() {
	hb := a.heartbeat()
	if hb == nil {
		return
	}
	data, err := marshal(hb)
	if err != nil {
		return
	}
	if err := a.nc.Publish(a.ns.Heartbeat(a.cfg.Name), data); err != nil {
		a.log.Debug("publish heartbeat", zap.Error(err))
	}
}

// heartbeat lists every attempt the agent holds: running, or finished with a
// result not yet acknowledged. Listing renews their leases.
func (a *Agent) heartbeat() *gv1.Heartbeat {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.killed {
		return nil
	}
	hb := &gv1.Heartbeat{
		Agent: &gv1.AgentInfo{
			Name:         a.cfg.Name,
			Labels:       a.cfg.Labels,
			Slots:        int32(a.cfg.Slots),
			Capabilities: a.caps,
			WarmCache:    a.executors.warm(),
			Version:      Version,
			Draining:     a.draining,
			Session:      a.session,
			Protocol:     capability.Protocol,
		},
		SentAt: nowProto(),
	}
	for _, t := range a.running {
		hb.Running = append(hb.Running, t.ref)
	}
	hb.Running = append(hb.Running, a.spool.refs()...)
	// A coordinator refuses a longer list; the leases of the results left
	// out expire, and their tasks run again.
	if len(hb.Running) > limit.HeartbeatRunning {
		hb.Running = hb.Running[:limit.HeartbeatRunning]
	}
	return hb
}
