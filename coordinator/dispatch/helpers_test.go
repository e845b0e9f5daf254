package dispatch

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/metrics"
	"github.com/gantryci/gantry/internal/poll"
	"github.com/gantryci/gantry/internal/subject"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// fixture is a dispatcher over a real FSM behind a one-node Raft cluster,
// without NATS: tests call the handlers' checked cores directly.
type fixture struct {
	d    *Dispatcher
	fsm  *fsm.FSM
	prop *consensus.Proposer
	ns   subject.Namespace
	ctx  context.Context
}

func newFixture(tb testing.TB, log *zap.Logger) *fixture {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := consensus.DefaultConfig()
	c.ID, c.Dir, c.BindAddr, c.Bootstrap = "n1", tb.TempDir(), addr, true
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	f := fsm.New()
	node, err := consensus.Open(c, f, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { node.Close() })
	if !poll.Until(10*time.Second, func() bool { return node.Raft.State() == raft.Leader }) {
		tb.Fatal("no leader")
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	prop := consensus.NewProposer(node.Raft)
	go prop.Run(ctx)
	ns := subject.New("t")
	d := New(DefaultConfig(), log, nil, ns, f, prop, fleet.New(time.Second), metrics.New())
	return &fixture{d: d, fsm: f, prop: prop, ns: ns, ctx: ctx}
}

// submit commits a one-task job and assigns attempt 1 of its task "t" to
// agent; it returns the attempt.
func (x *fixture) submit(tb testing.TB, job, agent string) *gv1.TaskRef {
	tb.Helper()
	at := timestamppb.Now()
	spec := &gv1.TaskSpec{Name: "t", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
	ref := &gv1.TaskRef{JobId: job, Task: "t", Attempt: 1}
	results, err := x.prop.Propose(x.ctx,
		&gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
			Id: job, Spec: &gv1.JobSpec{Name: "p", Tasks: []*gv1.TaskSpec{spec}}, CreatedAt: at,
			Tasks: []*gv1.Task{{Name: "t", Spec: spec}},
		}}}},
		&gv1.Command{At: at, Cmd: &gv1.Command_AssignTask{AssignTask: &gv1.AssignTaskCommand{Ref: ref, Agent: agent}}},
	)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range results {
		if r.Err != nil {
			tb.Fatal(r.Err)
		}
	}
	return ref
}

// state is the replicated state without the applied index, which every
// entry advances, refused or not.
func (x *fixture) state(tb testing.TB) string {
	tb.Helper()
	data, err := x.fsm.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	var snap gv1.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		tb.Fatal(err)
	}
	snap.AppliedIndex = 0
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(&snap)
	if err != nil {
		tb.Fatal(err)
	}
	return string(out)
}

// attempt returns the recorded attempt of ref.
func (x *fixture) attempt(tb testing.TB, ref *gv1.TaskRef) *gv1.Attempt {
	tb.Helper()
	j, ok := x.fsm.Job(ref.JobId)
	if !ok {
		tb.Fatalf("job %s not found", ref.JobId)
	}
	for _, t := range j.Tasks {
		if t.Name != ref.Task {
			continue
		}
		for _, a := range t.Attempts {
			if a.Number == ref.Attempt {
				return a
			}
		}
	}
	tb.Fatalf("attempt %v not found", ref)
	return nil
}

func marshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func outputs(n, size int) map[string]string {
	out := map[string]string{}
	for i := range n {
		out[fmt.Sprintf("k%d", i)] = string(make([]byte, size))
	}
	return out
}
