package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryci/gantry/internal/pki"
	"github.com/gantryci/gantry/internal/relay"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// coordNode is one `gantry coordinator` process of a test cluster.
type coordNode struct {
	id                           string
	dataDir, addrFile            string
	grpcAddr, httpAddr, raftAddr string
	natsAddr, natsRouteAddr      string
	proc                         *proc
}

// cluster is three coordinator processes and one agent process (a1).
type cluster struct {
	nodes []*coordNode
	byID  map[string]*coordNode
	agent *proc

	// token is the cluster's admin token: every node's bootstrap token,
	// which n2 and n3 also join with.
	token string

	mu          sync.Mutex
	secondRoute string // n2's NATS route address, once it listens
}

// startCluster starts three coordinators on ports of their choosing: n1
// bootstraps the cluster, n2 and n3 join it, each NATS server routed to
// those already running; then an agent connected to all three. It waits
// until every node sees the same leader and is ready.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{byID: map[string]*coordNode{}}
	// n1's NATS server needs a configured route at start (clustered
	// JetStream refuses to start without one), before any other server has
	// chosen its port: a relay that reaches n2's once it listens.
	seed, err := relay.New(func() string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.secondRoute
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(seed.Close)
	c.token = adminToken
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	// TLS as in production: the API, HTTP and Raft of every node.
	material, err := pki.EnsureLocal(filepath.Join(t.TempDir(), "tls"), "n1", "n2", "n3")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		dir := t.TempDir()
		n := &coordNode{id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, "data"), addrFile: filepath.Join(dir, "addrs.json")}
		args := []string{"coordinator",
			"--node-id", n.id,
			"--data-dir", n.dataDir,
			"--addr-file", n.addrFile,
			"--bootstrap-token-file", tokenFile,
			"--tls-cert", filepath.Join(material.Dir, fmt.Sprintf("n%d.pem", i+1)),
			"--tls-key", filepath.Join(material.Dir, fmt.Sprintf("n%d-key.pem", i+1)),
			"--tls-ca", material.CAFile(),
			"--grpc-addr", "127.0.0.1:0",
			"--http-addr", "127.0.0.1:0",
			"--raft-addr", "127.0.0.1:0",
			"--nats-listen", "127.0.0.1:0",
			"--nats-cluster-listen", "127.0.0.1:0",
			"--log-replicas", "3",
		}
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
		n.proc = startProc(t, "coordinator-"+n.id, args...)
		a := readAddrs(t, n.proc.exited, n.addrFile)
		n.grpcAddr, n.httpAddr, n.raftAddr, n.natsAddr, n.natsRouteAddr = a.GRPC, a.HTTP, a.Raft, a.NATS, a.NATSRoute
		tlsCAs.Store(n.grpcAddr, material.CAFile())
		tlsCAs.Store(n.httpAddr, material.CAFile())
		// The ports go back to the system with the test: a later test's
		// plain-text server may get them.
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
	var natsURLs []string
	for _, n := range c.nodes {
		natsURLs = append(natsURLs, "nats://"+n.natsAddr)
	}
	// The cluster's NATS lets in only certificates of its CA: a1 connects
	// with its agent certificate.
	if err := material.EnsureAgent("a1"); err != nil {
		t.Fatal(err)
	}
	agentCert, agentKey := material.AgentCertFiles("a1")
	c.agent = startProc(t, "agent-a1", "agent",
		"--name", "a1",
		"--nats", strings.Join(natsURLs, ","),
		"--work-dir", filepath.Join(t.TempDir(), "agent"),
		"--tls-cert", agentCert, "--tls-key", agentKey, "--tls-ca", material.CAFile(),
	)
	leader := c.waitLeader(t, c.nodes[0], "")
	for _, n := range c.nodes[1:] {
		if got := c.waitLeader(t, n, ""); got != leader {
			t.Logf("%s sees leader %s, %s saw %s: a new election in between", n.id, got, c.nodes[0].id, leader)
		}
	}
	for _, n := range c.nodes {
		waitReady(t, n.proc, n.httpAddr, 60*time.Second)
	}
	return c
}

// waitLeader waits until the node at reports a leader other than not, and
// the three nodes as voters at their Raft addresses; it returns the leader.
func (c *cluster) waitLeader(t *testing.T, at *coordNode, not string) string {
	t.Helper()
	var leader string
	waitFor(t, 60*time.Second, func() (bool, string) {
		if at.proc.exited() {
			t.Fatalf("%s exited: %v", at.id, at.proc.err)
		}
		st, err := clusterStatus(t, at.grpcAddr)
		if err != nil {
			return false, err.Error()
		}
		if st.GetLeaderId() == "" || st.GetLeaderId() == not || len(st.GetNodes()) != 3 {
			return false, fmt.Sprintf("%s sees leader %q and %d nodes", at.id, st.GetLeaderId(), len(st.GetNodes()))
		}
		for _, n := range st.GetNodes() {
			if c.byID[n.GetId()] == nil || !n.GetVoter() || n.GetRaftAddr() != c.byID[n.GetId()].raftAddr {
				return false, fmt.Sprintf("%s reports an unexpected node %v", at.id, n)
			}
		}
		if c.byID[st.GetLeaderId()] == nil {
			return false, fmt.Sprintf("%s reports an unknown leader %q", at.id, st.GetLeaderId())
		}
		leader = st.GetLeaderId()
		return true, ""
	})
	return leader
}

// leader asks a live node who leads.
func (c *cluster) leader(t *testing.T) *coordNode {
	t.Helper()
	for _, n := range c.nodes {
		if !n.proc.exited() {
			return c.byID[c.waitLeader(t, n, "")]
		}
	}
	t.Fatal("no coordinator left")
	return nil
}

// crashLeader kills the leader with SIGKILL, waits until every survivor
// sees a new leader and returns the survivors and the new leader.
func (c *cluster) crashLeader(t *testing.T) (old *coordNode, survivors []*coordNode, leader *coordNode) {
	t.Helper()
	old = c.leader(t)
	old.proc.kill(t)
	for _, n := range c.nodes {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	id := c.waitLeader(t, survivors[0], old.id)
	for _, n := range survivors[1:] {
		if got := c.waitLeader(t, n, old.id); got != id {
			t.Logf("%s sees leader %s, %s saw %s: a new election in between", n.id, got, survivors[0].id, id)
		}
	}
	t.Logf("%s killed; new leader %s", old.id, id)
	return old, survivors, c.byID[id]
}

// follower is a live node other than the leader.
func (c *cluster) follower(t *testing.T, leader *coordNode) *coordNode {
	t.Helper()
	for _, n := range c.nodes {
		if n != leader && !n.proc.exited() {
			return n
		}
	}
	t.Fatal("no live follower")
	return nil
}

const clusterPipeline = `name: e2e-cluster
tasks:
  - name: one
    exec: {command: ["sh", "-c", "echo one-on-$GANTRY_AGENT"]}
  - name: two
    needs: [one]
    exec: {shell: "echo two-done"}
`

var clusterOutput = []string{"[one] one-on-a1", "[two] two-done"}

func TestThreeCoordinatorProcesses(t *testing.T) {
	skipShort(t)
	c := startCluster(t)
	file := writePipeline(t, clusterPipeline)

	leader := c.leader(t)
	follower := c.follower(t, leader)
	t.Logf("leader %s; submitting through follower %s", leader.id, follower.id)
	sub := gantry(t, follower.grpcAddr, "submit", "-f", file, "--wait")
	if sub.code != 0 {
		t.Fatalf("submit --wait through follower %s: want exit 0, got %s", follower.id, sub)
	}
	jobs := listJobs(t, follower.grpcAddr)
	if len(jobs) != 1 || jobs[0].GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("gantry jobs on %s: want one succeeded job, got %v", follower.id, jobs)
	}
	firstID := jobs[0].GetId()

	_, survivors, _ := c.crashLeader(t)
	via := survivors[0]
	sub2 := gantry(t, via.grpcAddr, "submit", "-f", file, "--wait")
	if sub2.code != 0 {
		t.Fatalf("submit --wait through %s after the leader died: want exit 0, got %s", via.id, sub2)
	}

	// Reads are served by each node's replica, which may lag a little.
	for _, n := range survivors {
		waitFor(t, 30*time.Second, func() (bool, string) {
			jobs, err := tryListJobs(t, n.grpcAddr)
			if err != nil {
				return false, err.Error()
			}
			if len(jobs) != 2 {
				return false, fmt.Sprintf("gantry jobs on %s: want 2 jobs, got %d: %v", n.id, len(jobs), jobs)
			}
			for _, j := range jobs {
				if j.GetState() != gv1.JobState_JOB_STATE_SUCCEEDED {
					return false, fmt.Sprintf("gantry jobs on %s: job %s is %s, want JOB_STATE_SUCCEEDED", n.id, j.GetId(), j.GetState())
				}
				for _, tk := range j.GetTasks() {
					if tk.GetState() != gv1.TaskState_TASK_STATE_SUCCEEDED || tk.GetAgent() != "a1" {
						return false, fmt.Sprintf("job %s task %s: want succeeded on a1, got %s on %q", j.GetId(), tk.GetName(), tk.GetState(), tk.GetAgent())
					}
				}
			}
			return true, ""
		})
		tbl := mustGantry(t, n.grpcAddr, "jobs")
		if strings.Count(tbl.stdout, "succeeded") != 2 || !strings.Contains(tbl.stdout, firstID) {
			t.Errorf("gantry jobs (table) on %s: want both jobs succeeded:\n%s", n.id, tbl.stdout)
		}
	}
}

// TestClusterTaskLogs checks that task output reaches the user in a cluster:
// printed by submit --wait and kept in the replicated log stream, through a
// follower and across a leader crash.
func TestClusterTaskLogs(t *testing.T) {
	skipShort(t)
	c := startCluster(t)
	file := writePipeline(t, clusterPipeline)

	// A job run as soon as the cluster reports ready.
	leader := c.leader(t)
	early := gantry(t, leader.grpcAddr, "submit", "-f", file, "--wait")
	if early.code != 0 {
		t.Fatalf("submit --wait right after /readyz: want exit 0, got %s", early)
	}
	earlyID := onlyNewJob(t, leader.grpcAddr, nil)

	// Wait for the log stream before the next checks, which are about
	// forwarding and failover.
	for _, n := range c.nodes {
		waitOutput(t, n.proc, "log stream ready", 60*time.Second)
	}
	leader = c.leader(t)
	follower := c.follower(t, leader)
	viaFollower := gantry(t, follower.grpcAddr, "submit", "-f", file, "--wait")
	if viaFollower.code != 0 {
		t.Fatalf("submit --wait through follower %s: want exit 0, got %s", follower.id, viaFollower)
	}
	followerID := onlyNewJob(t, leader.grpcAddr, []string{earlyID})

	_, survivors, newLeader := c.crashLeader(t)
	afterCrash := gantry(t, newLeader.grpcAddr, "submit", "-f", file, "--wait")
	if afterCrash.code != 0 {
		t.Fatalf("submit --wait through %s after the leader died: want exit 0, got %s", newLeader.id, afterCrash)
	}
	crashID := onlyNewJob(t, newLeader.grpcAddr, []string{earlyID, followerID})

	checks := []struct {
		what, id string
		sub      result
	}{
		// Runs before the replicated log stream exists (seconds after
		// /readyz says ready); the agent's log publishes fail unnoticed.
		{"a job run as soon as /readyz answered 200", earlyID, early},
		// The follower answers the forwarded submit before applying the
		// job; --wait's log call then gets NotFound and drops the error.
		{"a job submitted through follower " + follower.id, followerID, viaFollower},
		// Runs while the log stream elects new leaders: log reads fail
		// (dropped by --wait) and agent log publishes may fail unnoticed.
		{"a job run right after the leader crashed", crashID, afterCrash},
	}
	for _, ch := range checks {
		for _, want := range clusterOutput {
			if !hasLine(ch.sub.stdout, want) {
				t.Errorf("%s (job %s): submit --wait stdout lacks %q:\n%s", ch.what, ch.id, want, ch.sub.stdout)
			}
		}
		// Reading the log stream fails for a few seconds while it elects
		// new leaders after the crash, so retry.
		for _, n := range survivors {
			var logs result
			waitFor(t, 30*time.Second, func() (bool, string) {
				logs = gantry(t, n.grpcAddr, "logs", ch.id)
				return logs.code == 0, logs.String()
			})
			for _, want := range clusterOutput {
				if !hasLine(logs.stdout, want) {
					t.Errorf("%s (job %s): gantry logs on %s lacks %q; the output was not stored:\n%s", ch.what, ch.id, n.id, want, logs.stdout)
				}
			}
		}
	}
}

// onlyNewJob returns the id of the one job listed at addr that is not in
// old.
func onlyNewJob(t *testing.T, addr string, old []string) string {
	t.Helper()
	var ids []string
	for _, j := range listJobs(t, addr) {
		known := false
		for _, o := range old {
			known = known || o == j.GetId()
		}
		if !known {
			ids = append(ids, j.GetId())
		}
	}
	if len(ids) != 1 {
		t.Fatalf("want one new job at %s, got %v", addr, ids)
	}
	return ids[0]
}
