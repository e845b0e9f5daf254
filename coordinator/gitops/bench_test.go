package gitops

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/dispatch"
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
	c := New(Deps{Log: zap.NewNop(), FSM: f, Fleet: dispatch.NewFleet(time.Second), NewJobID: func() string { return "x" }})
	now := time.Now()
	for _, a := range f.AppViews() {
		c.polls[pollKey(a.Spec)] = now.Add(time.Hour) // no poll due
	}
	results := make(chan resolved, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.reconcile(context.Background(), results)
	}
	b.StopTimer()
	perPass := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perPass.Microseconds())/1000, "ms/pass")
	b.ReportMetric(float64(perPass.Nanoseconds())/apps, "ns/app")
}

func TestReconcileInSteadyStateSubmitsNothing(t *testing.T) {
	f := loadApps(t, 50, 3)
	c := New(Deps{Log: zap.NewNop(), FSM: f, Fleet: dispatch.NewFleet(time.Second), NewJobID: func() string { return "x" }})
	now := time.Now()
	for _, a := range f.AppViews() {
		c.polls[pollKey(a.Spec)] = now
		if Target(a) != a.Last.GetRevision() || a.DeployedRevision != a.Last.GetRevision() {
			t.Fatalf("app %s not in steady state: %+v", a.Spec.GetName(), a)
		}
	}
	// A nil proposer would panic if the pass tried to submit or cancel.
	c.reconcile(context.Background(), make(chan resolved, 1))
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
	c := New(Deps{Log: zap.NewNop(), FSM: f, Fleet: dispatch.NewFleet(time.Second), NewJobID: func() string { return "x" },
		Resolve: func(_ context.Context, url, rev string) (string, error) {
			calls <- url + "@" + rev
			return fmt.Sprintf("%040d", 0), nil
		}})
	results := make(chan resolved, 16)
	c.reconcile(context.Background(), results)
	byKey := map[string][]string{}
	for range 4 { // app-00000 (+ same), other, app-00001, app-00002
		r := <-results
		byKey[r.key] = r.apps
	}
	if len(calls) != 4 {
		t.Errorf("%d polls for 4 branches", len(calls))
	}
	shared := byKey[pollKey(&gv1.AppSpec{Repo: "https://git.example/app-00000"})]
	if len(shared) != 2 {
		t.Errorf("branch main of app-00000 polled for %v, want app-00000 and same", shared)
	}
	// Nothing is due again until the interval passed.
	c.mu.Lock()
	for k := range c.polling {
		delete(c.polling, k)
	}
	c.mu.Unlock()
	c.reconcile(context.Background(), results)
	select {
	case r := <-results:
		t.Errorf("polled again at once: %v", r)
	case <-time.After(50 * time.Millisecond):
	}
}
