package consensus_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cluster starts n Raft nodes on loopback with the given store and returns
// the leader's node and FSM.
func cluster(t testing.TB, n int, store consensus.Store) (*consensus.Node, *fsm.FSM) {
	t.Helper()
	var peers []consensus.Peer
	cfgs := make([]consensus.Config, n)
	for i := range cfgs {
		c := consensus.DefaultConfig()
		c.ID = fmt.Sprintf("n%d", i+1)
		c.Dir = t.TempDir()
		c.BindAddr = freeAddr(t)
		c.Store = store
		c.Bootstrap = true
		// Generous timeouts: with -race on two busy cores, tighter ones
		// cause elections that have nothing to do with what is tested.
		c.HeartbeatTimeout = time.Second
		c.ElectionTimeout = time.Second
		c.LeaderLeaseTimeout = 500 * time.Millisecond
		cfgs[i] = c
		peers = append(peers, consensus.Peer{ID: c.ID, Addr: c.BindAddr})
	}
	nodes := make([]*consensus.Node, n)
	fsms := make([]*fsm.FSM, n)
	for i := range cfgs {
		cfgs[i].Peers = peers
		fsms[i] = fsm.New()
		node, err := consensus.Open(cfgs[i], fsms[i], zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = node
		t.Cleanup(func() { node.Close() })
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, node := range nodes {
			if node.Raft.State() == raft.Leader {
				return node, fsms[i]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil, nil
}

func submitCmd(id string) *gv1.Command {
	return &gv1.Command{At: timestamppb.Now(), Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
		Id: id, Spec: &gv1.JobSpec{Name: "b"},
		Tasks: []*gv1.Task{{Name: "t", Spec: &gv1.TaskSpec{Name: "t", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}}},
	}}}}
}

func TestProposerBatchesConcurrentCommands(t *testing.T) {
	t.Parallel()
	leader, f := cluster(t, 3, consensus.StoreSegments)
	p := consensus.NewProposer(leader.Raft)
	var entries, commands atomic.Int64
	p.Observe = func(n int, _ time.Duration) {
		entries.Add(1)
		commands.Add(int64(n))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	const total = 2000
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for i := 0; i < total; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.ProposeOne(ctx, submitCmd(fmt.Sprintf("job-%d", i)))
			if err == nil && res.JobID != fmt.Sprintf("job-%d", i) {
				err = fmt.Errorf("result for job-%d names %q", i, res.JobID)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := len(f.Jobs(nil, 0)); got != total {
		t.Fatalf("leader has %d jobs, want %d", got, total)
	}
	if commands.Load() != total {
		t.Fatalf("observed %d commands, want %d", commands.Load(), total)
	}
	t.Logf("%d commands in %d Raft entries", total, entries.Load())
	if entries.Load() >= total/4 {
		t.Fatalf("%d commands took %d entries: concurrent proposals are not batched", total, entries.Load())
	}
	// A rule violation comes back as the command's own result.
	if _, err := p.ProposeOne(ctx, submitCmd("job-1")); err == nil {
		t.Fatal("duplicate job ID accepted")
	}
}

// What is proposed once ProposeQueued said its commands are queued is
// applied after them: here a second submit of the same job, refused.
func TestProposeQueuedOrdersWhatFollows(t *testing.T) {
	t.Parallel()
	leader, _ := cluster(t, 1, consensus.StoreBolt)
	p := consensus.NewProposer(leader.Raft)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, second := make(chan error, 1), make(chan error, 1)
	queued := make(chan struct{})
	go func() {
		_, err := p.ProposeQueued(ctx, func() { close(queued) }, submitCmd("a"))
		first <- err
	}()
	<-queued
	go func() {
		_, err := p.ProposeOne(ctx, submitCmd("a"))
		second <- err
	}()
	go p.Run(ctx) // nothing was sent before: the queue alone orders them
	if err := <-first; err != nil {
		t.Fatalf("the first proposal: %v", err)
	}
	if err := <-second; err == nil {
		t.Fatal("the proposal made after the first was queued was applied before it")
	}
}

// A command given to Later rides with the next proposal, ahead of it, or
// leaves alone after LaterDelay.
func TestProposerLaterRidesWithTheNextEntry(t *testing.T) {
	t.Parallel()
	leader, f := cluster(t, 1, consensus.StoreBolt)
	p := consensus.NewProposer(leader.Raft)
	p.LaterDelay = time.Hour
	var entries atomic.Int64
	p.Observe = func(int, time.Duration) { entries.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	// The later command submits job a; the next proposal, job a again:
	// applied first, the later one wins and the proposal is refused.
	got := make(chan error, 1)
	p.Later(submitCmd("a"), func(_ fsm.Result, err error) { got <- err })
	if _, err := p.ProposeOne(ctx, submitCmd("a")); err == nil {
		t.Fatal("the proposal was applied before the command given to Later")
	}
	if err := <-got; err != nil {
		t.Fatalf("later command: %v", err)
	}
	if n := entries.Load(); n != 1 {
		t.Fatalf("%d entries, want one for both", n)
	}

	// Alone, it leaves after the delay.
	p.LaterDelay = 10 * time.Millisecond
	p.Later(submitCmd("b"), func(_ fsm.Result, err error) { got <- err })
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("later command alone: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a command given to Later alone was never committed")
	}
	if _, ok := f.Job("b"); !ok {
		t.Fatal("job b not applied")
	}
}

// A node that ran with the bolt store opens with segments: its log moves
// into them and its state comes back; it can then not be opened with bolt
// again (an empty log there would forget what it acknowledged).
func TestBoltLogMovesIntoSegments(t *testing.T) {
	t.Parallel()
	c := consensus.DefaultConfig()
	c.ID, c.Dir, c.BindAddr, c.Bootstrap, c.Store = "n1", t.TempDir(), freeAddr(t), true, consensus.StoreBolt
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	open := func(f *fsm.FSM) *consensus.Node {
		t.Helper()
		node, err := consensus.Open(c, f, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if !poll.Until(10*time.Second, func() bool { return node.Raft.State() == raft.Leader }) {
			t.Fatal("no leader")
		}
		return node
	}
	node := open(fsm.New())
	ctx, cancel := context.WithCancel(context.Background())
	p := consensus.NewProposer(node.Raft)
	go p.Run(ctx)
	for i := range 20 {
		if _, err := p.ProposeOne(ctx, submitCmd(fmt.Sprintf("job-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	node.Close()

	c.Store = consensus.StoreSegments
	f := fsm.New()
	node = open(f)
	if !poll.Until(10*time.Second, func() bool { _, ok := f.Job("job-19"); return ok }) {
		t.Fatal("the state did not come back from the moved log")
	}
	if n := len(f.Jobs(nil, 0)); n != 20 {
		t.Fatalf("%d jobs after the move, want 20", n)
	}
	node.Close()
	if m, _ := filepath.Glob(filepath.Join(c.Dir, consensus.SegmentsDir, "*.seg")); len(m) == 0 {
		t.Fatal("no segment written")
	}
	c.Store = consensus.StoreBolt
	if node, err := consensus.Open(c, fsm.New(), zap.NewNop()); err == nil {
		node.Close()
		t.Fatal("a node whose log is in segments opened with the bolt store")
	}
}

func TestProposerOnFollowerSaysNotLeader(t *testing.T) {
	t.Parallel()
	leader, _ := cluster(t, 1, consensus.StoreBolt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := consensus.NewProposer(leader.Raft)
	p.Timeout = time.Second
	go p.Run(ctx)
	if _, err := p.ProposeOne(ctx, submitCmd("x")); err != nil {
		t.Fatalf("single node: %v", err)
	}
	if err := leader.Raft.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	_, err := p.ProposeOne(ctx, submitCmd("y"))
	if err == nil {
		t.Fatal("commit on a shut-down node succeeded")
	}
}

func TestParsePeers(t *testing.T) {
	t.Parallel()
	got, err := consensus.ParsePeers("n1=127.0.0.1:1, n2=127.0.0.1:2")
	if err != nil || len(got) != 2 || got[1] != (consensus.Peer{ID: "n2", Addr: "127.0.0.1:2"}) {
		t.Fatalf("ParsePeers = %v, %v", got, err)
	}
	for _, bad := range []string{"n1", "=127.0.0.1:1", "n1=nohostport"} {
		if _, err := consensus.ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) accepted", bad)
		}
	}
}

// BenchmarkCommit compares the durable log stores on a 3-node cluster over
// loopback TCP with fsync: one proposer at a time (latency-bound) and 256 in
// flight (batching). Run: make bench.
func BenchmarkCommit(b *testing.B) {
	for _, store := range []consensus.Store{consensus.StoreSegments, consensus.StoreWAL, consensus.StoreBolt} {
		for _, inflight := range []int{1, 256} {
			b.Run(fmt.Sprintf("store=%s/inflight=%d", store, inflight), func(b *testing.B) {
				leader, _ := cluster(b, 3, store)
				p := consensus.NewProposer(leader.Raft)
				var entries atomic.Int64
				p.Observe = func(int, time.Duration) { entries.Add(1) }
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go p.Run(ctx)
				var next atomic.Int64
				lat := make([]time.Duration, b.N)
				b.ResetTimer()
				var wg sync.WaitGroup
				for w := 0; w < inflight; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							start := time.Now()
							if _, err := p.ProposeOne(ctx, submitCmd(fmt.Sprintf("b-%d", i))); err != nil {
								b.Error(err)
								return
							}
							lat[i] = time.Since(start)
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
				b.ReportMetric(float64(b.N)/float64(max(entries.Load(), 1)), "cmds/entry")
				b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			})
		}
	}
}

func percentile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[int(q*float64(len(s)-1))]
}
