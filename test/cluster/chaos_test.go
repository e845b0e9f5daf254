package cluster

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/testcluster"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

var (
	chaosSeeds  = flag.Int("chaos.seeds", 1, "number of random fault schedules to run (make chaos SEEDS=100)")
	chaosSeed   = flag.Int64("chaos.seed", 0, "replay one schedule by its seed")
	chaosFaults = flag.Int("chaos.faults", 6, "faults injected per schedule")
)

// TestChaos runs seed-reproducible random fault schedules (leader and
// follower kill -9 and restart, each taking its embedded NATS server down
// with it; an embedded NATS server restarted alone; a coordinator cut off
// from the others' Raft traffic; agent kill -9) against a 3-node cluster while
// clients submit jobs with idempotency keys, then checks that
//   - every acknowledged job reached a final state, and succeeded;
//   - no task finished successfully under two attempts;
//   - the history of submits is linearizable (Porcupine): a key always
//     names the one job it first created;
//   - all replicas hold the same jobs in the same states.
func TestChaos(t *testing.T) {
	skipShort(t)
	seeds := []int64{}
	if *chaosSeed != 0 {
		seeds = append(seeds, *chaosSeed)
	} else {
		base := time.Now().UnixNano()
		for i := 0; i < *chaosSeeds; i++ {
			seeds = append(seeds, base+int64(i))
		}
	}
	var faults, jobs, violations int
	for _, seed := range seeds {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			f, j := runChaos(t, seed, *chaosFaults)
			faults += f
			jobs += j
		})
		if !ok {
			violations++
			t.Logf("replay: go test ./test/cluster -run 'TestChaos' -count=1 -chaos.seed=%d -chaos.faults=%d", seed, *chaosFaults)
		}
	}
	t.Logf("chaos summary: %d runs, %d faults injected, %d jobs, %d runs with violations", len(seeds), faults, jobs, violations)
}

type submitInput struct{ key string }

type submitOutput struct{ id string }

// submitModel: per idempotency key, the first successful submit creates a
// job; every later one returns that same job.
var submitModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(submitInput).key
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(by))
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		id := output.(submitOutput).id
		if s := state.(string); s != "" {
			return s == id, s
		}
		return true, id
	},
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("submit(%s) -> %s", input.(submitInput).key, output.(submitOutput).id)
	},
}

func runChaos(t *testing.T, seed int64, nFaults int) (faults, jobs int) {
	rng := rand.New(rand.NewSource(seed))
	c := newClusterWith(t, 3, true, nil)
	agentSeq := 0
	var agents []string
	newAgent := func() {
		agentSeq++
		name := fmt.Sprintf("ag%d", agentSeq)
		c.StartAgent(name, 4, nil)
		agents = append(agents, name)
	}
	newAgent()
	newAgent()
	newAgent()
	// One client per node, and one of every node that sends writes to the
	// leader it hears of (as the CLI with GANTRY_ADDR does).
	clients := []gv1.GantryServiceClient{c.Client(0), c.Client(1), c.Client(2), c.APIOf([]int{0, 1, 2}).Raw()}

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		acked   = map[string]string{} // key -> job
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		crng := rand.New(rand.NewSource(seed + int64(w) + 1))
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				if i > 0 && crng.Intn(5) == 0 {
					key = fmt.Sprintf("w%d-%d", w, crng.Intn(i)) // a deliberate resubmit
				}
				spec := shellSpec("chaos", shellTask("a", "true"), shellTask("b", "true", "a"))
				cl := clients[crng.Intn(len(clients))]
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				call := time.Now().UnixNano()
				resp, err := cl.SubmitJob(cctx, &gv1.SubmitJobRequest{Spec: spec, IdempotencyKey: key})
				ret := time.Now().UnixNano()
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: w, Input: submitInput{key}, Call: call, Output: submitOutput{resp.Job.Id}, Return: ret})
				acked[key] = resp.Job.Id
				mu.Unlock()
				time.Sleep(time.Duration(40+crng.Intn(60)) * time.Millisecond) // about 15 submits/s per client
			}
		}()
	}

	down := -1
	var injected []string
	for f := 0; f < nFaults; f++ {
		time.Sleep(time.Duration(300+rng.Intn(1200)) * time.Millisecond)
		switch op := rng.Intn(6); {
		case op == 5:
			k := rng.Intn(3)
			if n := c.Node(k); n != nil {
				if err := n.RestartNATS(); err != nil {
					t.Fatalf("restart nats of n%d: %v (goroutines in %s)", k+1, err, dumpGoroutines(seed))
				}
				injected = append(injected, fmt.Sprintf("restart nats of n%d", k+1))
			}
			continue
		case op == 4 && down < 0:
			k := rng.Intn(3)
			hold := time.Duration(300+rng.Intn(1500)) * time.Millisecond
			c.Isolate(k, true)
			time.Sleep(hold)
			c.Isolate(k, false)
			injected = append(injected, fmt.Sprintf("partition n%d for %s", k+1, hold))
			continue
		case down >= 0 && (op == 0 || op == 1):
			c.Restart(down)
			injected = append(injected, fmt.Sprintf("restart n%d", down+1))
			down = -1
		case op == 0:
			down = c.Leader()
			c.Stop(down)
			injected = append(injected, fmt.Sprintf("kill leader n%d", down+1))
		case op == 1:
			down = (c.Leader() + 1 + rng.Intn(2)) % 3
			c.Stop(down)
			injected = append(injected, fmt.Sprintf("kill follower n%d", down+1))
		case op == 4:
			continue // no partition while a node is down: keep a quorum
		default:
			victim := rng.Intn(len(agents))
			c.KillAgent(agents[victim])
			injected = append(injected, "kill agent "+agents[victim])
			agents = append(agents[:victim], agents[victim+1:]...)
			newAgent()
		}
	}
	stop()
	wg.Wait()
	if down >= 0 {
		c.Restart(down)
		injected = append(injected, fmt.Sprintf("restart n%d", down+1))
	}
	t.Logf("seed %d faults: %v", seed, injected)

	l := c.Leader()
	waitFor(t, 90*time.Second, "every acknowledged job to succeed", func() bool {
		for _, id := range acked {
			j, ok := c.Job(l, id)
			if !ok || j.State != gv1.JobState_JOB_STATE_SUCCEEDED {
				return false
			}
		}
		return true
	})
	for key, id := range acked {
		j, _ := c.Job(l, id)
		for _, task := range j.Tasks {
			if n := succeededAttempts(task); n != 1 {
				t.Errorf("job %s (key %s) task %s: %d successful attempts", id, key, task.Name, n)
			}
		}
	}
	if !porcupine.CheckOperations(submitModel, history) {
		t.Errorf("submit history of %d operations is not linearizable", len(history))
	}
	// Jobs whose submit was not acknowledged may still have committed; let
	// them finish too, so the state is quiet before replicas are compared.
	waitFor(t, 90*time.Second, "every job to end", func() bool {
		for _, j := range c.Node(l).FSM().Jobs(nil, 0) {
			if !fsm.JobFinal(j.State) {
				return false
			}
		}
		return true
	})
	want := c.Node(l).FSM().AppliedIndex()
	waitFor(t, 30*time.Second, "replicas to apply everything", func() bool {
		for i := 0; i < 3; i++ {
			if c.Node(i).FSM().AppliedIndex() < want {
				return false
			}
		}
		return true
	})
	// Replicas are compared at one applied index: an entry committed late
	// (a submit a client gave up on, still in flight) changes the state
	// between two reads, which is not a divergence.
	var states [3][]string
	var at [3]uint64
	same := func() bool {
		for i := 0; i < 3; i++ {
			before := c.Node(i).FSM().AppliedIndex()
			states[i] = jobStates(c, i)
			if at[i] = c.Node(i).FSM().AppliedIndex(); at[i] != before || at[i] != at[0] {
				return false
			}
		}
		return true
	}
	waitFor(t, 30*time.Second, "the replicas at one applied index", same)
	for i := 1; i < 3; i++ {
		if fmt.Sprint(states[i]) != fmt.Sprint(states[0]) {
			t.Errorf("at applied index %d, replica n%d differs from n1 (%s)", at[0], i+1, firstDifference(states[0], states[i]))
		}
	}
	return len(injected), len(acked)
}

// firstDifference names a job whose state differs between two sorted
// lists of "id=STATE".
func firstDifference(a, b []string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("%s against %s", a[i], b[i])
		}
	}
	return fmt.Sprintf("%d jobs against %d", len(a), len(b))
}

// dumpGoroutines writes every goroutine's stack to a file for diagnosis.
func dumpGoroutines(seed int64) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gantry-chaos-%d-goroutines.txt", seed))
	if f, err := os.Create(path); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(f, 1)
		f.Close()
	}
	return path
}

// jobStates lists every job with its state, sorted, as one replica sees it.
func jobStates(c *testcluster.Cluster, i int) []string {
	var out []string
	for _, j := range c.Node(i).FSM().Jobs(nil, 0) {
		out = append(out, j.Id+"="+j.State.String())
	}
	sort.Strings(out)
	return out
}
