package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
}

// submit retries through elections; the idempotency key makes it safe.
func submit(ctx context.Context, cl gv1.GantryServiceClient, spec *gv1.JobSpec, key string) (*gv1.Job, error) {
	return submitAny(ctx, []gv1.GantryServiceClient{cl}, spec, key)
}

// submitAny tries the clients in turn, as a user with several coordinator
// addresses would, until one acknowledges the job.
func submitAny(ctx context.Context, clients []gv1.GantryServiceClient, spec *gv1.JobSpec, key string) (*gv1.Job, error) {
	for i := 0; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := clients[i%len(clients)].SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, IdempotencyKey: key})
		cancel()
		if err == nil {
			return resp.Job, nil
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finishedAttempts counts attempts that ended in success.
func succeededAttempts(t *gv1.Task) int {
	n := 0
	for _, a := range t.Attempts {
		if a.Result == gv1.TaskState_TASK_STATE_SUCCEEDED {
			n++
		}
	}
	return n
}

func TestLeaderKilledLosesNoAcknowledgedJob(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.StartAgent("a1", 4, nil)
	c.StartAgent("a2", 4, nil)
	c.WaitAgents(0, "a1", "a2")
	c.WaitAgents(1, "a1", "a2")
	c.WaitAgents(2, "a1", "a2")
	clients := []gv1.GantryServiceClient{c.Client(0), c.Client(1), c.Client(2)}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		acked = map[string]string{} // idempotency key -> job ID
		wg    sync.WaitGroup
	)
	killed := make(chan int, 1)
	submitter := func(w int) {
		defer wg.Done()
		for i := 0; i < 15; i++ {
			key := fmt.Sprintf("w%d-%d", w, i)
			if i == 5 && w == 0 {
				l := c.Leader()
				c.Stop(l) // kill -9 the leader in the middle of the run
				killed <- l
			}
			// Submit through the nodes in turn, starting at a different one
			// each time; some of them are down.
			order := []gv1.GantryServiceClient{clients[(w+i)%3], clients[(w+i+1)%3], clients[(w+i+2)%3]}
			job, err := submitAny(ctx, order, shellSpec("j", shellTask("a", "echo a"), shellTask("b", "sleep 0.05; echo b", "a")), key)
			if err != nil {
				t.Errorf("submit %s: %v", key, err)
				return
			}
			mu.Lock()
			if prev, ok := acked[key]; ok && prev != job.Id {
				t.Errorf("key %s returned jobs %s and %s", key, prev, job.Id)
			}
			acked[key] = job.Id
			mu.Unlock()
		}
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go submitter(w)
	}
	wg.Wait()
	dead := <-killed
	survivor := (dead + 1) % 3
	newLeader := c.Leader()
	if newLeader == dead {
		t.Fatalf("node %d is dead but leads", dead)
	}
	if len(acked) != 60 {
		t.Fatalf("acknowledged %d jobs, want 60", len(acked))
	}
	waitFor(t, 60*time.Second, "every acknowledged job to succeed", func() bool {
		for _, id := range acked {
			j, ok := c.Job(survivor, id)
			if !ok || j.State != gv1.JobState_JOB_STATE_SUCCEEDED {
				return false
			}
		}
		return true
	})
	for key, id := range acked {
		j, _ := c.Job(survivor, id)
		for _, task := range j.Tasks {
			if n := succeededAttempts(task); n != 1 {
				t.Errorf("job %s (%s) task %s: %d successful attempts, want 1", id, key, task.Name, n)
			}
		}
	}
	// The dead node comes back and catches up.
	c.Restart(dead)
	leaderApplied := c.Node(newLeader).FSM().AppliedIndex()
	waitFor(t, 20*time.Second, "restarted node to catch up", func() bool {
		return c.Node(dead).FSM().AppliedIndex() >= leaderApplied
	})
	for _, id := range acked {
		if j, ok := c.Job(dead, id); !ok || j.State != gv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("restarted node: job %s missing or not succeeded", id)
		}
	}
}

func TestLostAgentTaskRedispatchedAndStaleResultRefused(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.StartAgent("doomed", 1, map[string]string{"pool": "x"})
	l := c.Leader()
	c.WaitAgents(l, "doomed")
	cl := c.Client(l)
	ctx := context.Background()
	marker := filepath.Join(t.TempDir(), "ran")
	spec := shellSpec("lost", &gv1.TaskSpec{
		Name:   "work",
		Labels: map[string]string{"pool": "x"},
		Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{
			Shell: fmt.Sprintf(`if [ "$GANTRY_AGENT" = doomed ]; then sleep 60; fi; echo "$GANTRY_AGENT $GANTRY_ATTEMPT" > %s`, marker),
		}},
	})
	job, err := submit(ctx, cl, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "task running on doomed", func() bool {
		j, _ := c.Job(l, job.Id)
		return j.Tasks[0].State == gv1.TaskState_TASK_STATE_RUNNING && j.Tasks[0].Agent == "doomed"
	})
	c.KillAgent("doomed")
	killedAt := time.Now()
	c.StartAgent("rescuer", 1, map[string]string{"pool": "x"})

	var final *gv1.Job
	waitFor(t, 20*time.Second, "job to succeed on the rescuer", func() bool {
		final, _ = c.Job(l, job.Id)
		return final.State == gv1.JobState_JOB_STATE_SUCCEEDED
	})
	t.Logf("re-dispatched and finished %s after the agent was killed", time.Since(killedAt).Round(time.Millisecond))
	task := final.Tasks[0]
	if task.Attempt != 2 || task.Agent != "rescuer" {
		t.Fatalf("task ended on attempt %d by %q, want attempt 2 by rescuer", task.Attempt, task.Agent)
	}
	if a := task.Attempts[0]; a.Agent != "doomed" || a.Failure != gv1.FailureClass_FAILURE_CLASS_INFRA {
		t.Fatalf("first attempt: agent %q failure %s, want doomed with an infrastructure failure", a.Agent, a.Failure)
	}
	data, err := os.ReadFile(marker)
	if err != nil || string(data) != "rescuer 2\n" {
		t.Fatalf("marker %q (%v), want the rescuer's attempt 2", data, err)
	}

	// The dead agent's late result for attempt 1 arrives: it is refused and
	// changes nothing.
	nc, err := nats.Connect(c.NATSURL(l))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ns := subject.New("test")
	before, _ := c.Job(l, job.Id)
	for _, rep := range []*gv1.Report{
		{Ref: &gv1.TaskRef{JobId: job.Id, Task: "work", Attempt: 1}, Success: false, ExitCode: 9, Failure: gv1.FailureClass_FAILURE_CLASS_JOB},
		// Even with the current attempt number, a report from an agent
		// that does not hold the lease is refused.
		{Ref: &gv1.TaskRef{JobId: job.Id, Task: "work", Attempt: 2}, Success: false, ExitCode: 9},
	} {
		data, _ := proto.Marshal(rep)
		msg, err := nc.Request(ns.Report("doomed"), data, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var reply gv1.ReportReply
		if err := proto.Unmarshal(msg.Data, &reply); err != nil {
			t.Fatal(err)
		}
		if reply.Accepted {
			t.Fatalf("stale report for attempt %d accepted", rep.Ref.Attempt)
		}
	}
	// A malformed report gets an answer naming the problem, not a crash.
	msg, err := nc.Request(ns.Report("doomed"), []byte("\xff\xffnot protobuf"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply gv1.ReportReply
	if err := proto.Unmarshal(msg.Data, &reply); err != nil || reply.Accepted || reply.Reason == "" {
		t.Fatalf("malformed report: reply %v, %v", &reply, err)
	}
	after, _ := c.Job(l, job.Id)
	if !proto.Equal(before, after) {
		t.Fatalf("stale reports changed the job:\nbefore %v\nafter  %v", before, after)
	}
}

func TestFollowerCatchesUpFromSnapshot(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := newCluster(t, 3, func(cfg *coordinator.Config) {
		// The default store (segments) no longer serves compacted
		// entries, as raft-boltdb; raft-wal does until their segment is
		// dropped (64 MiB), so it would rarely need a snapshot here.
		cfg.Raft.Store = consensus.StoreSegments
		cfg.Raft.TrailingLogs = 16
		cfg.Raft.SnapshotThreshold = 32
	})
	l := c.Leader()
	follower := (l + 1) % 3
	c.Stop(follower)
	cl := c.Client(l)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 80; i++ {
		job, err := submit(ctx, cl, shellSpec("snap", shellTask("t", "true")), fmt.Sprintf("snap-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, job.Id)
	}
	if err := c.Node(l).Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// The entries the follower missed are gone from the leader's log.
	first, err := logFirstIndex(c.Node(l))
	if err != nil {
		t.Fatal(err)
	}
	if first <= 2 {
		t.Fatalf("leader log still starts at %d after the snapshot", first)
	}
	c.Restart(follower)
	want := c.Node(l).FSM().AppliedIndex()
	waitFor(t, 20*time.Second, "follower to catch up", func() bool {
		// Raft's own index moves after the restore has finished.
		n := c.Node(follower)
		return n.Raft().AppliedIndex() >= want && n.FSM().AppliedIndex() >= want
	})
	stats := c.Node(follower).Raft().Stats()
	if stats["last_snapshot_index"] == "0" {
		t.Fatalf("follower caught up without installing a snapshot: %v", stats)
	}
	for _, id := range ids {
		if _, ok := c.Job(follower, id); !ok {
			t.Fatalf("follower is missing job %s", id)
		}
	}
	// And it serves them: jobs from the snapshot are readable on the follower.
	resp, err := c.Client(follower).ListJobs(ctx, &gv1.ListJobsRequest{Limit: 1000})
	if err != nil || len(resp.Jobs) != len(ids) {
		t.Fatalf("follower lists %d jobs (%v), want %d", len(resp.GetJobs()), err, len(ids))
	}
	_ = fsm.JobFinal
}

func TestPartitionedLeaderIsReplacedAndRejoins(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := newClusterWith(t, 3, true, nil)
	c.StartAgent("a1", 4, nil)
	old := c.Leader()
	c.WaitAgents(old, "a1")
	ctx := context.Background()
	if _, err := submit(ctx, c.Client(old), shellSpec("before", shellTask("t", "true")), "before"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	c.Isolate(old, true)
	others := []gv1.GantryServiceClient{c.Client((old + 1) % 3), c.Client((old + 2) % 3)}
	job, err := submitAny(ctx, others, shellSpec("during", shellTask("t", "true")), "during")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first write through the majority %s after the leader was cut off", time.Since(cut).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "the isolated node to step down", func() bool { return !c.Node(old).IsLeader() })
	newLeader := c.Leader()
	t.Logf("new leader n%d %s after the cut", newLeader+1, time.Since(cut).Round(time.Millisecond))
	if newLeader == old {
		t.Fatalf("isolated node %d still leads", old)
	}
	waitFor(t, 20*time.Second, "the job to succeed on the majority", func() bool {
		j, ok := c.Job(newLeader, job.Id)
		return ok && j.State == gv1.JobState_JOB_STATE_SUCCEEDED
	})
	t.Logf("job succeeded on the majority %s after the cut", time.Since(cut).Round(time.Millisecond))
	c.Isolate(old, false)
	waitFor(t, 20*time.Second, "the old leader to catch up", func() bool {
		j, ok := c.Job(old, job.Id)
		return ok && j.State == gv1.JobState_JOB_STATE_SUCCEEDED
	})
}
