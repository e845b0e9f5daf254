package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/relay"
)

// localClusterName is the Gantry cluster name of a local cluster.
const localClusterName = "bench"

// benchNATSCert names the server certificate bench's NATS connections
// present to a local cluster with TLS (localCluster.natsTLS).
const benchNATSCert = "bench-nats"

// localCluster is a cluster of coordinator processes started by bench.
// Every coordinator binds port 0 and writes the addresses it bound to a
// file (gantry coordinator --addr-file). The first one bootstraps the
// cluster alone; the others join it and route their NATS servers to the
// ones already running.
type localCluster struct {
	dir    string
	binary string
	keep   bool
	nodes  []*localNode
	// agents are real gantry agent processes (--local-agents).
	agents []*localNode
	// token is the cluster's admin token: every node is given it as its
	// bootstrap token (a joining node asks with it too), and bench's
	// clients present it.
	token string
	// tls is the cluster's CA and node certificates; nil when insecure.
	tls       *pki.Local
	clientTLS *tls.Config
	// natsTLS is the TLS of bench's own NATS connections (the simulated
	// agents'); nil when insecure. It presents a server certificate, a
	// coordinator's kind: a simulated agent shares its connection with
	// hundreds of others, which an agent certificate (one name, its own
	// subjects) would not allow.
	natsTLS *tls.Config
	// seed relays the first NATS server's route to the second one's
	// route port: clustered JetStream wants a configured route at start,
	// before any other server has bound its port.
	seed *relay.Relay
}

type localNode struct {
	id       string
	addrFile string
	args     []string // of its first start
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited

	mu    sync.Mutex
	addrs coordinator.Addrs // once the process listens
}

// exited reports whether the node's process has ended.
func (nd *localNode) exited() bool {
	select {
	case <-nd.done:
		return true
	default:
		return false
	}
}

// route is the node's NATS route address, or "" before it listens.
func (nd *localNode) route() string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.addrs.NATSRoute
}

func startLocalCluster(ctx context.Context, binary string, n int, keep, insecure bool) (*localCluster, error) {
	if binary == "" {
		return nil, errors.New("local cluster: no gantry binary")
	}
	dir, err := os.MkdirTemp("", "gantry-bench-")
	if err != nil {
		return nil, err
	}
	_, token, _ := api.NewToken()
	lc := &localCluster{dir: dir, binary: binary, keep: keep, token: token}
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		lc.stop()
		return nil, err
	}
	fail := func(err error) (*localCluster, error) {
		lc.keep = true
		lc.stop()
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	var ids []string
	for i := range n {
		nd := &localNode{id: fmt.Sprintf("n%d", i+1)}
		nd.addrFile = filepath.Join(dir, nd.id+".addrs")
		lc.nodes = append(lc.nodes, nd)
		ids = append(ids, nd.id)
	}
	if !insecure {
		// Secure as in production: TLS on the API, HTTP and Raft, tokens.
		l, err := pki.EnsureLocal(filepath.Join(dir, "tls"), ids...)
		if err != nil {
			return fail(err)
		}
		lc.tls = &l
		if lc.clientTLS, err = pki.ClientTLS(l.CAFile(), "", ""); err != nil {
			return fail(err)
		}
		if err := l.EnsureServer(benchNATSCert); err != nil {
			return fail(err)
		}
		cert, key := l.CertFiles(benchNATSCert)
		if lc.natsTLS, err = pki.ClientTLS(l.CAFile(), cert, key); err != nil {
			return fail(err)
		}
	}
	if n > 1 {
		second := lc.nodes[1]
		if lc.seed, err = relay.New(second.route); err != nil {
			lc.stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for i, nd := range lc.nodes {
		args := []string{"coordinator", "--node-id", nd.id, "--cluster", localClusterName,
			"--data-dir", filepath.Join(dir, nd.id), "--addr-file", nd.addrFile, "--bootstrap-token-file", tokenFile,
			"--raft-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--nats-listen", "127.0.0.1:0", "--log-level", "warn", "--log-format", "json"}
		if lc.tls != nil {
			cert, key := lc.tls.CertFiles(nd.id)
			args = append(args, "--tls-cert", cert, "--tls-key", key, "--tls-ca", lc.tls.CAFile())
		} else {
			args = append(args, "--insecure")
		}
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", lc.nodes[0].addrs.GRPC)
		}
		if n > 1 {
			var routes []string
			if i == 0 {
				routes = append(routes, "nats://"+lc.seed.Addr())
			}
			for _, prev := range lc.nodes[:i] {
				routes = append(routes, "nats://"+prev.route())
			}
			replicas := 1
			if n >= 3 {
				replicas = 3
			}
			args = append(args, "--nats-cluster-listen", "127.0.0.1:0", "--nats-routes", strings.Join(routes, ","),
				"--log-replicas", strconv.Itoa(replicas))
		}
		nd.args = args
		if err := lc.start(nd, binary, args); err != nil {
			return fail(err)
		}
		// The next node joins through this one's addresses.
		if err := nd.waitAddrs(ctx, deadline); err != nil {
			return fail(err)
		}
	}
	for _, nd := range lc.nodes {
		if err := lc.waitReady(ctx, nd, deadline); err != nil {
			return fail(err)
		}
	}
	if err := lc.waitVoters(ctx, deadline); err != nil {
		return fail(err)
	}
	return lc, nil
}

// start starts nd's process with its output in the cluster's directory,
// after the output of its earlier runs (a restarted node's log keeps what
// it wrote before it was killed).
func (lc *localCluster) start(nd *localNode, binary string, args []string) error {
	logf, err := os.OpenFile(filepath.Join(lc.dir, nd.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	nd.cmd = exec.Command(binary, args...)
	nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
	if err := nd.cmd.Start(); err != nil {
		logf.Close()
		nd.cmd = nil
		return fmt.Errorf("start %s: %w", nd.id, err)
	}
	nd.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) {
		_ = c.Wait()
		logf.Close()
		close(done)
	}(nd.cmd, nd.done)
	return nil
}

// waitAddrs waits for the addresses the node writes once it listens.
func (nd *localNode) waitAddrs(ctx context.Context, deadline time.Time) error {
	for {
		if a, err := coordinator.ReadAddrs(nd.addrFile); err == nil {
			nd.mu.Lock()
			nd.addrs = a
			nd.mu.Unlock()
			return nil
		}
		if err := nd.check(ctx, deadline); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady waits for the node's /readyz to answer 200.
func (lc *localCluster) waitReady(ctx context.Context, nd *localNode, deadline time.Time) error {
	hc := lc.httpClient()
	defer hc.CloseIdleConnections()
	for {
		resp, err := hc.Get(lc.scheme() + nd.addrs.HTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := nd.check(ctx, deadline); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check says why to stop waiting for the node, if there is a reason.
func (nd *localNode) check(ctx context.Context, deadline time.Time) error {
	switch {
	case nd.exited():
		return fmt.Errorf("coordinator %s exited while starting", nd.id)
	case ctx.Err() != nil:
		return fmt.Errorf("coordinator %s not ready: %w", nd.id, ctx.Err())
	case time.Now().After(deadline):
		return fmt.Errorf("coordinator %s not ready", nd.id)
	}
	return nil
}

// waitVoters waits until the first node counts every node as a voter.
func (lc *localCluster) waitVoters(ctx context.Context, deadline time.Time) error {
	c, err := lc.client(lc.nodes[0])
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		st, err := c.Cluster(ctx)
		voters := 0
		for _, n := range st.GetNodes() {
			if n.GetVoter() {
				voters++
			}
		}
		if err == nil && voters == len(lc.nodes) && st.GetLeaderId() != "" {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%d of %d coordinators are voters", voters, len(lc.nodes))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (lc *localCluster) natsURLs() string {
	var urls []string
	for _, nd := range lc.nodes {
		urls = append(urls, "nats://"+nd.addrs.NATS)
	}
	return strings.Join(urls, ",")
}

// restart starts node i again on the addresses it bound at its first
// start (peers know it by them), with its Raft state, and waits until it
// is ready.
func (lc *localCluster) restart(ctx context.Context, i int, binary string) error {
	nd := lc.nodes[i]
	bound := map[string]string{
		"--raft-addr": nd.addrs.Raft, "--grpc-addr": nd.addrs.GRPC, "--http-addr": nd.addrs.HTTP,
		"--nats-listen": nd.addrs.NATS, "--nats-cluster-listen": nd.addrs.NATSRoute,
	}
	var args []string
	for j := 0; j < len(nd.args); j++ {
		a := nd.args[j]
		switch {
		case a == "--bootstrap":
			continue
		case a == "--join":
			j++
			continue
		case bound[a] != "" && j+1 < len(nd.args):
			args = append(args, a, bound[a])
			j++
			continue
		}
		args = append(args, a)
	}
	if err := lc.start(nd, binary, args); err != nil {
		return err
	}
	return lc.waitReady(ctx, nd, time.Now().Add(60*time.Second))
}

// kill sends SIGKILL to node i.
func (lc *localCluster) kill(i int) {
	if c := lc.nodes[i].cmd; c != nil && c.Process != nil {
		_ = c.Process.Signal(syscall.SIGKILL)
		<-lc.nodes[i].done
		lc.nodes[i].cmd = nil
	}
}

// startAgents starts n gantry agent processes of slots slots each
// (bench-agent-1, ...), with their own certificates unless the cluster is
// insecure.
func (lc *localCluster) startAgents(n, slots int) error {
	for i := range n {
		name := fmt.Sprintf("bench-agent-%d", i+1)
		args := []string{"agent", "--name", name, "--nats", lc.natsURLs(), "--cluster", localClusterName,
			"--slots", strconv.Itoa(slots), "--work-dir", filepath.Join(lc.dir, name), "--log-level", "warn", "--log-format", "json"}
		if lc.tls != nil {
			if err := lc.tls.EnsureAgent(name); err != nil {
				return err
			}
			cert, key := lc.tls.AgentCertFiles(name)
			args = append(args, "--tls-cert", cert, "--tls-key", key, "--tls-ca", lc.tls.CAFile())
		}
		nd := &localNode{id: name}
		if err := lc.start(nd, lc.binary, args); err != nil {
			return err
		}
		lc.agents = append(lc.agents, nd)
	}
	return nil
}

func (lc *localCluster) stop() {
	for _, nd := range lc.agents {
		if nd.cmd != nil && nd.cmd.Process != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGKILL)
			<-nd.done
		}
	}
	for _, nd := range lc.nodes {
		if nd.cmd != nil && nd.cmd.Process != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, nd := range lc.nodes {
		if nd.cmd != nil && nd.cmd.Process != nil {
			select {
			case <-nd.done:
			case <-time.After(10 * time.Second):
				_ = nd.cmd.Process.Kill()
				<-nd.done
			}
		}
	}
	if lc.seed != nil {
		lc.seed.Close()
	}
	if !lc.keep {
		os.RemoveAll(lc.dir)
	}
}

// client is a client of nd's API with the admin token, over TLS unless the
// cluster is insecure, without retries: the scenarios choose the node and
// time each call.
func (lc *localCluster) client(nd *localNode) (*client.Client, error) {
	return lc.clientOf([]string{nd.addrs.GRPC})
}

// clusterClient is a client of every node, node i's address first: it
// calls node i, and sends writes to the leader once an answer named it,
// as a user's client given the cluster's addresses does.
func (lc *localCluster) clusterClient(i int) (*client.Client, error) {
	addrs := []string{lc.nodes[i].addrs.GRPC}
	for j, nd := range lc.nodes {
		if j != i {
			addrs = append(addrs, nd.addrs.GRPC)
		}
	}
	return lc.clientOf(addrs)
}

func (lc *localCluster) clientOf(addrs []string) (*client.Client, error) {
	opts := []client.Option{client.WithRetryTimeout(0), client.WithToken(lc.token)}
	if lc.clientTLS != nil {
		opts = append(opts, client.WithTLS(lc.clientTLS))
	}
	return client.New(addrs, opts...)
}

func (lc *localCluster) scheme() string {
	if lc.tls != nil {
		return "https://"
	}
	return "http://"
}

func (lc *localCluster) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: lc.clientTLS}, Timeout: 5 * time.Second}
}
