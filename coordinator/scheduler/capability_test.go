package scheduler_test

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/scheduler"
	"github.com/gantryci/gantry/internal/buildkey"
	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func buildTask(job, name, url string, selector ...string) fsm.PendingTask {
	t := task(job, name, selector...)
	t.Spec = proto.Clone(t.Spec).(*gv1.TaskSpec)
	t.Spec.Executor = &gv1.TaskSpec_Build{Build: &gv1.BuildSpec{Context: &gv1.BuildContext{Git: &gv1.GitSource{Url: url}}}}
	return t
}

func runTask(job, name string) fsm.PendingTask {
	t := task(job, name)
	t.Spec = proto.Clone(t.Spec).(*gv1.TaskSpec)
	t.Spec.Executor = &gv1.TaskSpec_Run{Run: &gv1.RunSpec{Image: "x", Command: []string{"x"}}}
	return t
}

func builder(name string, free int, warm ...string) scheduler.Candidate {
	a := agent(name, free)
	a.Capabilities = []string{capability.Exec, capability.BuildKit}
	a.Warm = warm
	return a
}

func TestScheduleCapabilities(t *testing.T) {
	t.Parallel()
	tasks := []fsm.PendingTask{buildTask("j", "build", "file:///r.git"), runTask("j", "test"), task("j", "exec")}
	// The plain agent has more free slots, so it comes first; only the
	// builder can take build and run tasks.
	plan := scheduler.Schedule(tasks, []scheduler.Candidate{agent("plain", 8), builder("bk", 2)}, nil, now)
	want := map[string]string{"j/build": "bk", "j/test": "bk", "j/exec": "plain"}
	if got := placed(t, plan); !reflect.DeepEqual(got, want) {
		t.Errorf("placed %v, want %v", got, want)
	}

	plan = scheduler.Schedule(tasks[:2], []scheduler.Candidate{agent("plain", 8)}, nil, now)
	if want := map[string]string{"j/build": "no agent with capability buildkit", "j/test": "no agent with capability buildkit"}; !reflect.DeepEqual(plan.Waiting, want) {
		t.Errorf("Waiting = %v, want %v", plan.Waiting, want)
	}
	plan = scheduler.Schedule([]fsm.PendingTask{buildTask("j", "b", "u", "os=linux")}, []scheduler.Candidate{agent("plain", 8, "os=linux")}, nil, now)
	if want := "no agent with capability buildkit and labels os=linux"; plan.Waiting["j/b"] != want {
		t.Errorf("Waiting = %v, want %q", plan.Waiting, want)
	}
	plan = scheduler.Schedule([]fsm.PendingTask{buildTask("j", "b", "u")}, []scheduler.Candidate{builder("bk", 0)}, nil, now)
	if want := "all matching agents busy"; plan.Waiting["j/b"] != want {
		t.Errorf("Waiting = %v, want %q", plan.Waiting, want)
	}
}

func TestScheduleWarmCache(t *testing.T) {
	t.Parallel()
	b := buildTask("j", "build", "file:///r.git")
	key := buildkey.For(b.Spec.GetBuild())
	// The warm agent wins over agents with more free slots.
	agents := []scheduler.Candidate{builder("cold1", 4), builder("warm", 1, "git:other#Dockerfile", key), builder("cold2", 3)}
	plan := scheduler.Schedule([]fsm.PendingTask{b}, agents, nil, now)
	if got := placed(t, plan); got["j/build"] != "warm" {
		t.Errorf("placed %v, want the warm agent", got)
	}
	// A warm agent that is full does not hold the build back.
	agents[1].Free = 0
	plan = scheduler.Schedule([]fsm.PendingTask{b}, agents, nil, now)
	if got := placed(t, plan); got["j/build"] != "cold1" {
		t.Errorf("placed %v, want the freest cold agent", got)
	}
	// Two builds of the same key and one warm slot: one goes warm, the
	// other to the freest cold agent.
	agents[1].Free = 1
	b2 := buildTask("j", "build2", "file:///r.git")
	plan = scheduler.Schedule([]fsm.PendingTask{b, b2}, agents, nil, now)
	if got, want := placed(t, plan), map[string]string{"j/build": "warm", "j/build2": "cold1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("placed %v, want %v", got, want)
	}
	// An agent that failed the task with an infrastructure error is
	// avoided even when warm.
	avoid := b
	avoid.AvoidAgents = []string{"warm"}
	plan = scheduler.Schedule([]fsm.PendingTask{avoid}, agents, nil, now)
	if got := placed(t, plan); got["j/build"] != "cold1" {
		t.Errorf("placed %v, want cold1", got)
	}
}
