package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/client"
	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/relay"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// oldGantryCommit is the last build before coordinators announced their
// version and the Raft command types they know (types up to 25).
const oldGantryCommit = "61c5129ca7a2ccd58e881474a776c7757e24fd64"

// oldGantry returns the gantry binary of oldGantryCommit: built in a
// temporary git worktree the first time (about a minute and a half on two
// loaded cores) and kept in ${XDG_CACHE_HOME:-~/.cache}/gantry/.
func oldGantry(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache")
	}
	dir := filepath.Join(cache, "gantry", "gantry-"+oldGantryCommit)
	bin := filepath.Join(dir, "gantry")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		t.Logf("old gantry %.12s: cached in %s", oldGantryCommit, dir)
		return bin
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "cat-file", "-e", oldGantryCommit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s is not in this clone (shallow?): cannot build the old gantry", oldGantryCommit)
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", root}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("worktree", "add", "--detach", src, oldGantryCommit)
	defer git("worktree", "remove", "--force", src)
	start := time.Now()
	built := filepath.Join(tmp, "gantry")
	build := exec.Command("go", "build", "-o", built, "./cmd/gantry")
	build.Dir = src
	build.Env = os.Environ()
	if !strings.Contains(os.Getenv("GOFLAGS"), "-buildvcs=false") {
		// A worktree's .git is a file; the version is not needed.
		build.Env = append(build.Env, "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -buildvcs=false"))
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the old gantry (%.12s): %v\n%s", oldGantryCommit, err, out)
	}
	t.Logf("old gantry %.12s: built in %s", oldGantryCommit, time.Since(start).Round(100*time.Millisecond))
	// Into the cache by rename, so an interrupted copy is never taken for
	// a cached binary.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	part, err := os.CreateTemp(dir, "gantry.part-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(part.Name())
	in, err := os.Open(built)
	if err == nil {
		_, err = io.Copy(part, in)
		in.Close()
	}
	if cerr := part.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(part.Name(), 0o755)
	}
	if err == nil {
		err = os.Rename(part.Name(), bin)
	}
	if err != nil {
		t.Fatalf("cache the old gantry: %v", err)
	}
	return bin
}

// upgradeCluster is a three-coordinator cluster started as startCluster
// starts one, whose nodes can be restarted with another binary on the
// same data directories and addresses.
type upgradeCluster struct {
	*cluster
	tls       pki.Local
	tokenFile string
	starts    map[string]int
}

// coordinatorArgs are a node's flags, understood by the old build and the
// new one alike.
func (u *upgradeCluster) coordinatorArgs(n *coordNode, addrFile string) []string {
	cert, key := u.tls.CertFiles(n.id)
	return []string{"coordinator",
		"--node-id", n.id,
		"--data-dir", n.dataDir,
		"--addr-file", addrFile,
		"--bootstrap-token-file", u.tokenFile,
		"--tls-cert", cert, "--tls-key", key, "--tls-ca", u.tls.CAFile(),
		"--log-replicas", "3",
	}
}

// startOldCluster starts three coordinators of bin on ports of their
// choosing (n1 bootstraps, n2 and n3 join), and waits until all see one
// leader and are ready.
func startOldCluster(t *testing.T, bin string) *upgradeCluster {
	t.Helper()
	u := &upgradeCluster{cluster: &cluster{byID: map[string]*coordNode{}, token: adminToken}, starts: map[string]int{}}
	c := u.cluster
	seed, err := relay.New(func() string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.secondRoute
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(seed.Close)
	if u.tls, err = pki.EnsureLocal(filepath.Join(t.TempDir(), "tls"), "n1", "n2", "n3"); err != nil {
		t.Fatal(err)
	}
	u.tokenFile = filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(u.tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		dir := t.TempDir()
		n := &coordNode{id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, "data"), addrFile: filepath.Join(dir, "addrs.json")}
		args := append(u.coordinatorArgs(n, n.addrFile),
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
			"--nats-listen", "127.0.0.1:0", "--nats-cluster-listen", "127.0.0.1:0")
		routes := []string{}
		if i == 0 {
			args = append(args, "--bootstrap")
			routes = append(routes, "nats://"+seed.Addr())
		} else {
			args = append(args, "--join", c.nodes[0].grpcAddr)
		}
		for _, o := range c.nodes {
			routes = append(routes, "nats://"+o.natsRouteAddr)
		}
		args = append(args, "--nats-routes", strings.Join(routes, ","))
		u.starts[n.id]++
		n.proc = startBinary(t, bin, "coordinator-"+n.id+"-old", args...)
		a := readAddrs(t, n.proc.exited, n.addrFile)
		n.grpcAddr, n.httpAddr, n.raftAddr, n.natsAddr, n.natsRouteAddr = a.GRPC, a.HTTP, a.Raft, a.NATS, a.NATSRoute
		tlsCAs.Store(n.grpcAddr, u.tls.CAFile())
		tlsCAs.Store(n.httpAddr, u.tls.CAFile())
		grpcAddr, httpAddr := n.grpcAddr, n.httpAddr
		t.Cleanup(func() { tlsCAs.Delete(grpcAddr); tlsCAs.Delete(httpAddr) })
		if i == 1 {
			c.mu.Lock()
			c.secondRoute = n.natsRouteAddr
			c.mu.Unlock()
		}
		c.nodes = append(c.nodes, n)
		c.byID[n.id] = n
	}
	leader := c.waitLeader(t, c.nodes[0], "")
	for _, n := range c.nodes[1:] {
		if got := c.waitLeader(t, n, ""); got != leader {
			t.Logf("%s sees leader %s, %s saw %s: a new election in between", n.id, got, c.nodes[0].id, leader)
		}
	}
	for _, n := range c.nodes {
		waitReady(t, n.proc, n.httpAddr, 60*time.Second)
	}
	return u
}

// restart starts node n again with bin, on its data directory and the
// addresses it bound at its first start.
func (u *upgradeCluster) restart(t *testing.T, n *coordNode, bin, label string) {
	t.Helper()
	u.starts[n.id]++
	addrFile := filepath.Join(filepath.Dir(n.addrFile), fmt.Sprintf("addrs-%d.json", u.starts[n.id]))
	var routes []string
	for _, o := range u.nodes {
		if o != n {
			routes = append(routes, "nats://"+o.natsRouteAddr)
		}
	}
	args := append(u.coordinatorArgs(n, addrFile),
		"--grpc-addr", n.grpcAddr, "--http-addr", n.httpAddr, "--raft-addr", n.raftAddr,
		"--nats-listen", n.natsAddr, "--nats-cluster-listen", n.natsRouteAddr,
		"--nats-routes", strings.Join(routes, ","))
	n.proc = startBinary(t, bin, fmt.Sprintf("coordinator-%s-%s", n.id, label), args...)
	a := readAddrs(t, n.proc.exited, addrFile)
	if a.GRPC != n.grpcAddr || a.Raft != n.raftAddr || a.NATSRoute != n.natsRouteAddr {
		t.Fatalf("%s restarted on other addresses: %+v", n.id, a)
	}
}

// nodeStatus is ClusterStatus as c answers it.
func nodeStatus(ctx context.Context, c *client.Client) (*gv1.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.Raw().ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
}

func statusOf(st *gv1.ClusterStatusResponse, id string) *gv1.NodeStatus {
	for _, n := range st.GetNodes() {
		if n.GetId() == id {
			return n
		}
	}
	return nil
}

// submitter submits one-task jobs one after the other until stopped, to
// agents of either build in turn (label gen), and records every job whose
// submit was acknowledged.
type submitter struct {
	c     *client.Client
	phase atomic.Int32 // how many coordinators run the new build

	mu     sync.Mutex
	acked  map[string]ackedJob
	order  []string
	failed int
	errs   []string // the first distinct errors

	stop chan struct{}
	done chan struct{}
}

type ackedJob struct {
	gen   string // the agent build the job asked for
	phase int32
}

func (s *submitter) run() {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond) // a steady trickle, not a load test
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		gen := [2]string{"old", "new"}[i%2]
		phase := s.phase.Load()
		spec := fmt.Sprintf("name: upgrade-%s\ntasks:\n  - name: hello\n    labels: {gen: %s}\n    exec: {command: [\"sh\", \"-c\", \"echo hello from $GANTRY_AGENT\"]}\n", gen, gen)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		resp, err := s.c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: spec})
		cancel()
		s.mu.Lock()
		if err != nil {
			s.failed++
			msg := fmt.Sprintf("phase %d: %v", phase, err)
			if len(s.errs) < 10 && !slices.Contains(s.errs, msg) {
				s.errs = append(s.errs, msg)
			}
		} else {
			id := resp.GetJob().GetId()
			if _, ok := s.acked[id]; !ok {
				s.order = append(s.order, id)
			}
			s.acked[id] = ackedJob{gen: gen, phase: phase}
		}
		s.mu.Unlock()
	}
}

func (s *submitter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// waitMore waits until n more jobs are acknowledged than were at the call.
func (s *submitter) waitMore(t *testing.T, n int, what string) {
	t.Helper()
	from := s.count()
	waitFor(t, 90*time.Second, func() (bool, string) {
		got := s.count() - from
		return got >= n, fmt.Sprintf("%s: %d of %d more submits acknowledged", what, got, n)
	})
}

// TestRollingUpgrade upgrades a three-coordinator cluster of the build
// before version announcements to this build, one node at a time,
// followers first, while a client submits jobs to an agent of each build:
// every acknowledged job succeeds, a Raft command type the old build does
// not know is refused until the last node runs the new build, and the
// three replicas end with the same state.
func TestRollingUpgrade(t *testing.T) {
	skipShort(t)
	testStart := time.Now()
	old := oldGantry(t)
	var newInfo struct {
		Version    string `json:"version"`
		MaxCommand int32  `json:"max_command"`
	}
	if out, err := exec.Command(gantryBin, "version", "--client", "-o", "json").Output(); err != nil || json.Unmarshal(out, &newInfo) != nil || newInfo.MaxCommand <= 25 {
		t.Fatalf("gantry version --client -o json: %v: %s", err, out)
	}

	u := startOldCluster(t, old)
	var natsURLs []string
	for _, n := range u.nodes {
		natsURLs = append(natsURLs, "nats://"+n.natsAddr)
	}
	if err := u.tls.EnsureAgent("old", "new"); err != nil {
		t.Fatal(err)
	}
	agents := map[string]*proc{}
	for gen, bin := range map[string]string{"old": old, "new": gantryBin} {
		cert, key := u.tls.AgentCertFiles(gen)
		agents[gen] = startBinary(t, bin, "agent-"+gen, "agent",
			"--name", gen, "--label", "gen="+gen, "--slots", "4",
			"--nats", strings.Join(natsURLs, ","),
			"--work-dir", filepath.Join(t.TempDir(), "agent"),
			"--tls-cert", cert, "--tls-key", key, "--tls-ca", u.tls.CAFile())
	}

	tlsCfg, err := pki.ClientTLS(u.tls.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(addrs ...string) *client.Client {
		t.Helper()
		c, err := client.New(addrs, client.WithToken(adminToken), client.WithTLS(tlsCfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var all []string
	clients := map[string]*client.Client{}
	for _, n := range u.nodes {
		all = append(all, n.grpcAddr)
		clients[n.id] = dial(n.grpcAddr)
	}
	ctx := context.Background()

	s := &submitter{c: dial(all...), acked: map[string]ackedJob{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	stopSubmitter := sync.OnceFunc(func() { close(s.stop); <-s.done })
	t.Cleanup(stopSubmitter)
	s.waitMore(t, 10, "all old")

	// CreateJoinToken proposes a command type the old build does not know.
	probe := func(n *coordNode) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := clients[n.id].Raw().CreateJoinToken(cctx, &gv1.CreateJoinTokenRequest{Name: "upgrade-probe"})
		return err
	}

	t.Logf("old cluster up (leader %s) after %s; %d jobs acknowledged", u.leader(t).id, time.Since(testStart).Round(100*time.Millisecond), s.count())

	// upgrade stops n, restarts it with the new build and waits until it
	// has caught up with the leader's commit index and is ready; between
	// the stop and the restart it runs between().
	upgrade := func(n *coordNode, between func()) {
		t.Helper()
		began := time.Now()
		if !n.proc.stop(t, 30*time.Second) {
			t.Errorf("%s did not stop on SIGTERM", n.id)
		}
		stopped := time.Since(began)
		var live *coordNode
		for _, o := range u.nodes {
			if o != n {
				live = o
				break
			}
		}
		newLeader := u.byID[u.waitLeader(t, live, n.id)]
		if between != nil {
			between()
		}
		st, err := nodeStatus(ctx, clients[newLeader.id])
		if err != nil {
			t.Fatal(err)
		}
		target := statusOf(st, newLeader.id).GetCommitIndex()
		u.restart(t, n, gantryBin, "new")
		var applied uint64
		waitFor(t, 90*time.Second, func() (bool, string) {
			if n.proc.exited() {
				t.Fatalf("%s exited after the upgrade: %v", n.id, n.proc.err)
			}
			st, err := nodeStatus(ctx, clients[n.id])
			if err != nil {
				return false, err.Error()
			}
			self := statusOf(st, n.id)
			applied = self.GetAppliedIndex()
			return applied >= target && self.GetVersion() == newInfo.Version,
				fmt.Sprintf("%s: applied %d of %d, version %q", n.id, applied, target, self.GetVersion())
		})
		waitReady(t, n.proc, n.httpAddr, 60*time.Second)
		t.Logf("%s upgraded in %s: stopped in %s, leader then %s, caught up to %d (leader's commit at restart: %d)",
			n.id, time.Since(began).Round(10*time.Millisecond), stopped.Round(10*time.Millisecond), newLeader.id, applied, target)
	}

	upgradeStart := time.Now()
	// Followers first: each time an old node that does not lead (asked
	// again each time, should an election have moved the leadership).
	upgraded := map[*coordNode]bool{}
	for i := range 2 {
		leader := u.leader(t)
		var f *coordNode
		for _, n := range u.nodes {
			if n != leader && !upgraded[n] {
				f = n
				break
			}
		}
		upgrade(f, nil)
		upgraded[f] = true
		s.phase.Store(int32(i + 1))
		s.waitMore(t, 5, "after upgrading "+f.id)
	}
	var last, follower *coordNode
	for _, n := range u.nodes {
		if !upgraded[n] {
			last = n
		} else {
			follower = n
		}
	}
	leader := u.leader(t)
	if leader != last {
		t.Logf("%s leads, not the old %s: an election moved the leadership", leader.id, last.id)
	}

	// Followers new, leader old: the old leader has no such method, and a
	// new follower forwards to it.
	for _, n := range []*coordNode{last, follower} {
		err := probe(n)
		if err == nil {
			t.Fatalf("CreateJoinToken through %s with %s still old: want it refused", n.id, last.id)
		}
		t.Logf("CreateJoinToken through %s while %s runs the old build (leader %s): %s: %s", n.id, last.id, leader.id, status.Code(err), status.Convert(err).Message())
	}

	// The leader last: its SIGTERM hands leadership to an upgraded node;
	// while it is down, the new leader refuses what the old node does
	// not know.
	upgrade(last, func() {
		r := gantry(t, strings.Join(all, ","), "agent-token", "create", "upgrade-probe")
		if r.code == 0 || !strings.Contains(r.stderr, "FailedPrecondition") || !strings.Contains(r.stderr, "upgrading") || !strings.Contains(r.stderr, last.id) {
			t.Errorf("gantry agent-token create while %s still runs the old build: want FailedPrecondition naming it and upgrading, got %s", last.id, r)
		}
		t.Logf("gantry agent-token create while %s is not upgraded: %s", last.id, strings.TrimSpace(r.stderr))
		s.waitMore(t, 5, "with "+last.id+" down")
	})
	s.phase.Store(3)
	upgradeTook := time.Since(upgradeStart)

	// The command the old build did not know passes once the last
	// node's announcement reaches the leader.
	lastUp := time.Now()
	var created *gv1.CreateJoinTokenResponse
	refused := 0
	waitFor(t, 30*time.Second, func() (bool, string) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var err error
		created, err = s.c.Raw().CreateJoinToken(cctx, &gv1.CreateJoinTokenRequest{Name: "after-upgrade"})
		if status.Code(err) == codes.FailedPrecondition {
			refused++
			return false, err.Error()
		}
		if err != nil {
			t.Fatalf("CreateJoinToken after the upgrade: %v", err)
		}
		return true, ""
	})
	t.Logf("CreateJoinToken after the upgrade: join token %s, %s after the last node was ready (%d refusals first)",
		created.GetToken().GetId(), time.Since(lastUp).Round(10*time.Millisecond), refused)
	// Every node runs the new build, and every node's view says so (a
	// view keeps a node's announcement from before its restart for up to
	// 5 s, until the restarted node's own reaches it over NATS).
	waitFor(t, 30*time.Second, func() (bool, string) {
		for _, at := range u.nodes {
			st, err := nodeStatus(ctx, clients[at.id])
			if err != nil {
				return false, fmt.Sprintf("%s: %v", at.id, err)
			}
			if st.GetLeaderId() == "" || len(st.GetNodes()) != 3 {
				return false, fmt.Sprintf("%s sees leader %q, %d nodes", at.id, st.GetLeaderId(), len(st.GetNodes()))
			}
			for _, n := range st.GetNodes() {
				if !n.GetVoter() || n.GetVersion() != newInfo.Version || n.GetMaxCommand() != newInfo.MaxCommand {
					return false, fmt.Sprintf("%s sees %s: voter %v, %s, version %q, max command %d", at.id, n.GetId(), n.GetVoter(), n.GetRaftState(), n.GetVersion(), n.GetMaxCommand())
				}
			}
		}
		return true, ""
	})
	t.Logf("every node's view shows the new build (%s, commands up to %d) on all three %s after the last node was ready",
		newInfo.Version, newInfo.MaxCommand, time.Since(lastUp).Round(10*time.Millisecond))
	r := mustGantry(t, strings.Join(all, ","), "cluster")
	t.Logf("gantry cluster after the upgrade:\n%s", r.stdout)
	s.waitMore(t, 10, "all new")
	stopSubmitter()

	// Every acknowledged job exists and succeeded, on either agent.
	s.mu.Lock()
	acked, order, failed, errs := s.acked, s.order, s.failed, s.errs
	s.mu.Unlock()
	ran := map[string]map[int32]int{} // agent -> phase -> jobs
	pending := slices.Clone(order)
	waitFor(t, 3*time.Minute, func() (bool, string) {
		var left []string
		for _, id := range pending {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			j, err := s.c.Job(cctx, id)
			cancel()
			if status.Code(err) == codes.NotFound {
				t.Fatalf("acknowledged job %s (phase %d) is lost", id, acked[id].phase)
			}
			if err != nil {
				return false, err.Error()
			}
			if !client.Final(j.GetState()) {
				left = append(left, id)
				continue
			}
			if j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job %s (for the %s agent, phase %d) ended %s: %v", id, acked[id].gen, acked[id].phase, j.GetState(), j.GetTasks())
			}
			agent := j.GetTasks()[0].GetAgent()
			if agent != acked[id].gen {
				t.Errorf("job %s ran on %q, want the %s agent", id, agent, acked[id].gen)
			}
			if ran[agent] == nil {
				ran[agent] = map[int32]int{}
			}
			ran[agent][acked[id].phase]++
		}
		pending = left
		if len(left) > 0 {
			return false, fmt.Sprintf("%d of %d acknowledged jobs not final yet, e.g. %s", len(left), len(order), left[0])
		}
		return true, ""
	})
	t.Logf("%d jobs acknowledged, all succeeded (by agent and number of new coordinators at submit: %v); %d submits failed: %q",
		len(order), ran, failed, errs)

	// What became of the task logs, per agent and phase: under TLS, log
	// subjects now carry the agent's name, which the new coordinators'
	// NATS servers check.
	for _, gen := range []string{"old", "new"} {
		var seen []string
		for phase := range int32(4) {
			last := ""
			for _, id := range order {
				if acked[id].gen == gen && acked[id].phase == phase {
					last = id
				}
			}
			if last == "" {
				seen = append(seen, fmt.Sprintf("%d new: no job", phase))
				continue
			}
			var out bytes.Buffer
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := s.c.Logs(cctx, last, "hello", false, func(ch *gv1.LogChunk) error { out.Write(ch.GetData()); return nil })
			cancel()
			got := fmt.Sprintf("%q", strings.TrimSpace(out.String()))
			if err != nil {
				got += fmt.Sprintf(" (%v)", err)
			}
			seen = append(seen, fmt.Sprintf("%d new: %s", phase, got))
		}
		t.Logf("task log of the last job on the %s agent, by coordinators upgraded at submit: %s", gen, strings.Join(seen, "; "))
	}
	data, _ := os.ReadFile(agents["old"].logPath)
	var refusals []string
	for _, l := range lines(string(data)) {
		if strings.Contains(strings.ToLower(l), "permission") {
			refusals = append(refusals, l)
		}
	}
	t.Logf("old agent: %d log lines mention permissions%s", len(refusals), func() string {
		if len(refusals) == 0 {
			return ""
		}
		return "; first: " + refusals[0]
	}())

	// Quiesce: agents drained, every node applied the leader's whole log.
	var cs *gv1.ClusterStatusResponse
	for _, gen := range []string{"old", "new"} {
		if !agents[gen].stop(t, 30*time.Second) {
			t.Errorf("the %s agent did not drain on SIGTERM", gen)
		}
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		st, err := nodeStatus(ctx, s.c)
		if err != nil {
			return false, err.Error()
		}
		ld := statusOf(st, st.GetLeaderId())
		for _, n := range st.GetNodes() {
			if n.GetAppliedIndex() != ld.GetLastLogIndex() || n.GetLastLogIndex() != ld.GetLastLogIndex() {
				return false, fmt.Sprintf("%s: applied %d, last log %d; leader %s last log %d", n.GetId(), n.GetAppliedIndex(), n.GetLastLogIndex(), ld.GetId(), ld.GetLastLogIndex())
			}
		}
		cs = st
		return true, ""
	})
	// Followers first, so that no election appends to some logs only.
	slices.SortFunc(u.nodes, func(a, b *coordNode) int {
		return boolInt(a.id == cs.GetLeaderId()) - boolInt(b.id == cs.GetLeaderId())
	})
	for _, n := range u.nodes {
		if !n.proc.stop(t, 30*time.Second) {
			t.Errorf("%s did not stop on SIGTERM", n.id)
		}
	}
	var first *coordinator.Inspection
	for _, n := range u.nodes {
		cmd := exec.Command(gantryBin, "coordinator", "inspect", "--data-dir", n.dataDir, "-o", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var in coordinator.Inspection
		if err == nil {
			err = json.Unmarshal(out, &in)
		}
		if err != nil {
			t.Fatalf("gantry coordinator inspect --data-dir %s: %v\n%s%s", n.dataDir, err, out, stderr.String())
		}
		t.Logf("%s: applied index %d, state sha256 %s, snapshot %q at %d, log %d..%d, %d jobs",
			n.id, in.AppliedIndex, in.StateSHA256, in.SnapshotID, in.SnapshotIndex, in.FirstLogIndex, in.LastLogIndex, in.Jobs)
		if in.Jobs < len(order) {
			t.Errorf("%s holds %d jobs, fewer than the %d acknowledged", n.id, in.Jobs, len(order))
		}
		if first == nil {
			first = &in
			continue
		}
		if in.AppliedIndex != first.AppliedIndex || in.StateSHA256 != first.StateSHA256 {
			t.Errorf("replicas differ: %s at %d has %s, %s at %d has %s", n.id, in.AppliedIndex, in.StateSHA256,
				u.nodes[0].id, first.AppliedIndex, first.StateSHA256)
		}
	}
	t.Logf("rolling upgrade of 3 coordinators took %s (first SIGTERM to the last node caught up and ready); the test %s",
		upgradeTook.Round(10*time.Millisecond), time.Since(testStart).Round(100*time.Millisecond))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
