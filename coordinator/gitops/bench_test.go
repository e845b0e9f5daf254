package gitops

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/follow"
	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// loadApps fills an FSM with apps applications, each with a history of
// deploys deploys, all of the newest commit, as a cluster in steady state.
func loadApps(tb testing.TB, apps, deploys int) *fsm.FSM {
	tb.Helper()
	f := fsm.New()
	index := uint64(0)
	at := timestamppb.New(time.Unix(1_800_000_000, 0))
	apply := func(cmds ...*gv1.Command) {
		index++
		data, err := proto.Marshal(&gv1.Batch{Commands: cmds})
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).([]fsm.Result) {
			if r.Err != nil {
				tb.Fatal(r.Err)
			}
		}
	}
	for i := range apps {
		name := fmt.Sprintf("app-%05d", i)
		apply(&gv1.Command{At: at, Cmd: &gv1.Command_CreateApp{CreateApp: &gv1.CreateAppCommand{Spec: &gv1.AppSpec{
			Name: name, Repo: "https://git.example/" + name, Path: "k8s", Cluster: "prod", Namespace: "ns", AutoSync: true, SelfHeal: true,
		}}}})
		rev := ""
		for d := range deploys {
			rev = fmt.Sprintf("%040d", d)
			id := fmt.Sprintf("%s-%d", name, d)
			task := &gv1.TaskSpec{Name: "deploy", Executor: &gv1.TaskSpec_Deploy{Deploy: &gv1.DeploySpec{
				App: name, Cluster: "prod", Namespace: "ns", Trigger: "commit",
				Source: &gv1.ManifestSource{Git: &gv1.GitSource{Url: "https://git.example/" + name, Revision: rev}},
			}}}
			ref := &gv1.TaskRef{JobId: id, Task: "deploy", Attempt: 1}
			apply(
				&gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
					Id: id, Spec: &gv1.JobSpec{Name: "deploy-" + name, Tasks: []*gv1.TaskSpec{task}}, CreatedAt: at,
					Tasks: []*gv1.Task{{Name: "deploy", Spec: task}},
				}}}},
				&gv1.Command{At: at, Cmd: &gv1.Command_AssignTask{AssignTask: &gv1.AssignTaskCommand{Ref: ref, Agent: "a1"}}},
				&gv1.Command{At: at, Cmd: &gv1.Command_FinishTask{FinishTask: &gv1.FinishTaskCommand{Report: &gv1.Report{Ref: ref, Success: true, Agent: "a1"}}}},
			)
		}
		apply(&gv1.Command{At: at, Cmd: &gv1.Command_ObserveRevision{ObserveRevision: &gv1.ObserveRevisionCommand{Name: name, Revision: rev}}})
	}
	return f
}

// BenchmarkReconcilePass measures one pass of the leader's controller over
// 5,000 applications with 20 deploys each, all in sync: the work it does
// every tick (200 ms) when nothing changes.
func BenchmarkReconcilePass(b *testing.B) {
	const apps = 5000
	f := loadApps(b, apps, 20)
	c := New(Deps{Log: zap.NewNop(), FSM: f, Fleet: fleet.New(time.Second), NewJobID: func() string { return "x" }})
	// The first pass subscribes every application to its branch; the
	// follower does not run, so nothing is polled.
	c.reconcile(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.reconcile(context.Background())
	}
	b.StopTimer()
	perPass := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perPass.Microseconds())/1000, "ms/pass")
	b.ReportMetric(float64(perPass.Nanoseconds())/apps, "ns/app")
}

func TestReconcileInSteadyStateSubmitsNothing(t *testing.T) {
	f := loadApps(t, 50, 3)
	c := New(Deps{Log: zap.NewNop(), FSM: f, Fleet: fleet.New(time.Second), NewJobID: func() string { return "x" }})
	for _, a := range f.AppViews() {
		if Target(a) != a.Last.GetRevision() || a.DeployedRevision != a.Last.GetRevision() {
			t.Fatalf("app %s not in steady state: %+v", a.Spec.GetName(), a)
		}
	}
	// A nil proposer would panic if the pass tried to submit or cancel;
	// the follower does not run, so nothing is polled.
	c.reconcile(context.Background())
	if got := len(f.ActiveDeploys()); got != 0 {
		t.Errorf("%d deploys active after a steady-state pass", got)
	}
}

func TestApplicationsOnOneBranchShareAPoll(t *testing.T) {
	f := loadApps(t, 3, 1) // app-00000 .. app-00002, each its own repository
	// Two more applications following app-00000's repository: one on the
	// same branch (spelled differently), one on another branch.
	index := uint64(1_000)
	at := timestamppb.Now()
	for _, spec := range []*gv1.AppSpec{
		{Name: "same", Repo: "https://git.example/app-00000.git/", Cluster: "prod", Namespace: "ns"},
		{Name: "other", Repo: "https://git.example/app-00000", Revision: "release", Cluster: "prod", Namespace: "ns"},
	} {
		index++
		data, _ := proto.Marshal(&gv1.Batch{Commands: []*gv1.Command{{At: at, Cmd: &gv1.Command_CreateApp{CreateApp: &gv1.CreateAppCommand{Spec: spec}}}}})
		f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	}
	calls := make(chan string, 16)
	c := New(Deps{Log: zap.NewNop(), FSM: f, Fleet: fleet.New(time.Second), NewJobID: func() string { return "x" }, Tick: 5 * time.Millisecond,
		Resolve: func(_ context.Context, url, rev string, _ []byte) (string, error) {
			calls <- follow.NormalizeURL(url) + "@" + rev
			return fmt.Sprintf("%040d", 0), nil
		}})
	c.reconcile(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.follower.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	polled := map[string]int{}
	for range 4 { // app-00000 (+ same), other, app-00001, app-00002
		select {
		case call := <-calls:
			polled[call]++
		case <-time.After(10 * time.Second):
			t.Fatalf("polled %v; want 4 branches", polled)
		}
	}
	want := map[string]int{
		"https://git.example/app-00000@": 1, "https://git.example/app-00000@release": 1,
		"https://git.example/app-00001@": 1, "https://git.example/app-00002@": 1,
	}
	if !reflect.DeepEqual(polled, want) {
		t.Errorf("polls %v; want one per branch: %v", polled, want)
	}
	// The one poll of branch main of app-00000 answered app-00000 and same.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.seenMu.Lock()
		n, shared := len(c.seen), c.seen["app-00000"].Commit != "" && c.seen["same"].Commit != ""
		c.seenMu.Unlock()
		if n == 5 && shared {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("answers for %d applications (app-00000 and same: %v); want 5", n, shared)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Nothing is due again until the interval passed.
	select {
	case call := <-calls:
		t.Errorf("polled again at once: %s", call)
	case <-time.After(50 * time.Millisecond):
	}
}
