package scheduler_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/scheduler"
	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

const now = int64(1_700_000_000_000_000_000)

// labels parses "k=v" pairs; nil when there are none.
func labels(kvs ...string) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// task returns a pending task of job/name selecting labels ("k=v" pairs).
func task(job, name string, selector ...string) fsm.PendingTask {
	return fsm.PendingTask{
		Key:        fsm.TaskKey{JobID: job, Task: name},
		JobName:    job,
		Spec:       &gv1.TaskSpec{Name: name, Labels: labels(selector...)},
		QueuedAt:   now - int64(time.Minute),
		RunnableAt: now - int64(time.Minute),
	}
}

func withKey(t fsm.PendingTask, key string) fsm.PendingTask {
	t.Spec = proto.Clone(t.Spec).(*gv1.TaskSpec)
	t.Spec.Concurrency = key
	return t
}

func agent(name string, free int, kvs ...string) scheduler.Candidate {
	return scheduler.Candidate{Name: name, Free: free, Labels: labels(kvs...), Capabilities: []string{capability.Exec}}
}

// placed maps "job/task" to the agent it went to.
func placed(t *testing.T, p scheduler.Plan) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pl := range p.Placements {
		k := pl.Task.Key.JobID + "/" + pl.Task.Key.Task
		if _, dup := out[k]; dup {
			t.Errorf("task %s placed twice", k)
		}
		if _, w := p.Waiting[k]; w {
			t.Errorf("task %s both placed and waiting", k)
		}
		if pl.Attempt != pl.Task.Attempt+1 {
			t.Errorf("task %s placed as attempt %d, current is %d", k, pl.Attempt, pl.Task.Attempt)
		}
		out[k] = pl.Agent
	}
	return out
}

func TestMatches(t *testing.T) {
	t.Parallel()
	linux := map[string]string{"os": "linux", "arch": "amd64"}
	tests := []struct {
		name     string
		selector map[string]string
		labels   map[string]string
		want     bool
	}{
		{"empty selector, no labels", nil, nil, true},
		{"empty selector", nil, linux, true},
		{"subset", map[string]string{"os": "linux"}, linux, true},
		{"equal", map[string]string{"os": "linux", "arch": "amd64"}, linux, true},
		{"other value", map[string]string{"os": "darwin"}, linux, false},
		{"missing key", map[string]string{"gpu": "a100"}, linux, false},
		{"one of two wrong", map[string]string{"os": "linux", "arch": "arm64"}, linux, false},
		{"no labels", map[string]string{"os": "linux"}, nil, false},
	}
	for _, tt := range tests {
		if got := scheduler.Matches(tt.selector, tt.labels); got != tt.want {
			t.Errorf("%s: Matches(%v, %v) = %v, want %v", tt.name, tt.selector, tt.labels, got, tt.want)
		}
	}
}

func TestFormatLabels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{"os": "linux"}, "os=linux"},
		{map[string]string{"os": "linux", "arch": "arm64", "gpu": ""}, "arch=arm64,gpu=,os=linux"},
	}
	for _, tt := range tests {
		if got := scheduler.FormatLabels(tt.in); got != tt.want {
			t.Errorf("FormatLabels(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScheduleLabelMatching(t *testing.T) {
	t.Parallel()
	tasks := []fsm.PendingTask{
		task("j", "mac", "os=darwin"),
		task("j", "linux-arm", "os=linux", "arch=arm64"),
		task("j", "linux", "os=linux"),
		task("j", "any"),
	}
	tasks[1].Attempt = 2
	agents := []scheduler.Candidate{
		agent("l1", 1, "os=linux", "arch=amd64"),
		agent("m1", 1, "os=darwin", "arch=arm64"),
		agent("l2", 1, "os=linux", "arch=arm64"),
		agent("x1", 1),
	}
	plan := scheduler.Schedule(tasks, agents, nil, now)
	want := map[string]string{"j/mac": "m1", "j/linux-arm": "l2", "j/linux": "l1", "j/any": "x1"}
	if got := placed(t, plan); !reflect.DeepEqual(got, want) {
		t.Errorf("placements = %v, want %v", got, want)
	}
	if len(plan.Waiting) != 0 {
		t.Errorf("Waiting = %v, want none", plan.Waiting)
	}
	// Placements keep the input order and carry the task.
	for i, p := range plan.Placements {
		if p.Task.Key != tasks[i].Key || p.Task.Spec != tasks[i].Spec {
			t.Errorf("placement %d is %v, want %v", i, p.Task.Key, tasks[i].Key)
		}
	}
	if plan.Placements[1].Attempt != 3 {
		t.Errorf("attempt = %d, want 3", plan.Placements[1].Attempt)
	}
}

func TestScheduleWaitingReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		task   fsm.PendingTask
		agents []scheduler.Candidate
		busy   map[string]bool
		want   string
	}{
		{"no agents", task("j", "t"), nil, nil, "no agent connected"},
		{"no agents, labels", task("j", "t", "os=linux"), nil, nil, "no agent with labels os=linux"},
		{"no matching agent", task("j", "t", "os=linux"), []scheduler.Candidate{agent("m", 4, "os=darwin")}, nil, "no agent with labels os=linux"},
		{"two labels", task("j", "t", "os=linux", "arch=arm64"), []scheduler.Candidate{agent("l", 4, "os=linux", "arch=amd64")}, nil, "no agent with labels arch=arm64,os=linux"},
		{"matching agents full", task("j", "t", "os=linux"), []scheduler.Candidate{agent("l1", 0, "os=linux"), agent("l2", -1, "os=linux"), agent("m", 3, "os=darwin")}, nil, "all matching agents busy"},
		{"any agent full", task("j", "t"), []scheduler.Candidate{agent("a", 0)}, nil, "all matching agents busy"},
		{"concurrency busy", withKey(task("j", "t"), "deploy"), []scheduler.Candidate{agent("a", 4)}, map[string]bool{"deploy": true}, `concurrency group "deploy" busy`},
		{"backoff first", withNotBefore(withKey(task("j", "t"), "deploy"), now+1), nil, map[string]bool{"deploy": true}, "retry backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := scheduler.Schedule([]fsm.PendingTask{tt.task}, tt.agents, tt.busy, now)
			if len(plan.Placements) != 0 {
				t.Fatalf("placed %v", plan.Placements)
			}
			if want := map[string]string{"j/t": tt.want}; !reflect.DeepEqual(plan.Waiting, want) {
				t.Errorf("Waiting = %q, want %q", plan.Waiting, want)
			}
		})
	}
}

func withNotBefore(t fsm.PendingTask, nb int64) fsm.PendingTask {
	t.NotBefore, t.RunnableAt = nb, nb
	return t
}

func TestScheduleBackoff(t *testing.T) {
	t.Parallel()
	tasks := []fsm.PendingTask{
		withNotBefore(task("j", "future"), now+int64(time.Second)),
		withNotBefore(task("j", "due"), now),
		withNotBefore(task("j", "past"), now-1),
		task("j", "none"),
	}
	plan := scheduler.Schedule(tasks, []scheduler.Candidate{agent("a", 10)}, nil, now)
	if want := map[string]string{"j/future": "retry backoff"}; !reflect.DeepEqual(plan.Waiting, want) {
		t.Errorf("Waiting = %v, want %v", plan.Waiting, want)
	}
	if want := map[string]string{"j/due": "a", "j/past": "a", "j/none": "a"}; !reflect.DeepEqual(placed(t, plan), want) {
		t.Errorf("placements = %v, want %v", placed(t, plan), want)
	}
}

func TestScheduleFreeSlotAccounting(t *testing.T) {
	t.Parallel()
	var tasks []fsm.PendingTask
	for i := range 7 {
		tasks = append(tasks, task("j", fmt.Sprint("t", i)))
	}
	agents := []scheduler.Candidate{agent("full", 0), agent("b", 1), agent("a", 3), agent("c", 2)}
	orig := append([]scheduler.Candidate(nil), agents...)
	plan := scheduler.Schedule(tasks, agents, nil, now)
	count := map[string]int{}
	for _, a := range placed(t, plan) {
		count[a]++
	}
	if want := map[string]int{"a": 3, "b": 1, "c": 2}; !reflect.DeepEqual(count, want) {
		t.Errorf("placements per agent = %v, want %v", count, want)
	}
	if want := map[string]string{"j/t6": "all matching agents busy"}; !reflect.DeepEqual(plan.Waiting, want) {
		t.Errorf("Waiting = %v, want %v", plan.Waiting, want)
	}
	if !reflect.DeepEqual(agents, orig) {
		t.Errorf("Schedule changed its input agents: %v", agents)
	}
}

// TestSchedulePriority feeds Schedule from a real FSM's Pending(): when
// slots are scarce the higher priority job wins, then the older task.
func TestSchedulePriority(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	at := func(sec int) *timestamppb.Timestamp { return timestamppb.New(time.Unix(1_700_000_000+int64(sec), 0)) }
	submit := func(sec int, id string, prio int32, names ...string) *gv1.Command {
		j := &gv1.Job{Id: id, Spec: &gv1.JobSpec{Name: id, Priority: prio}}
		for _, n := range names {
			s := &gv1.TaskSpec{Name: n, Labels: map[string]string{"os": "linux"}}
			j.Spec.Tasks = append(j.Spec.Tasks, s)
			j.Tasks = append(j.Tasks, &gv1.Task{Name: n, Spec: s})
		}
		return &gv1.Command{At: at(sec), Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: j}}}
	}
	data, err := proto.Marshal(&gv1.Batch{Commands: []*gv1.Command{
		submit(1, "low", 0, "a", "b"),
		submit(2, "high", 10, "a"),
		submit(3, "mid", 5, "a"),
		submit(4, "high2", 10, "a"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).([]fsm.Result) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	agents := []scheduler.Candidate{agent("l1", 1, "os=linux"), agent("l2", 2, "os=linux"), agent("m", 5, "os=darwin")}
	plan := scheduler.Schedule(f.Pending(), agents, f.BusyConcurrency(), time.Unix(1_700_000_100, 0).UnixNano())
	var got []string
	for _, p := range plan.Placements {
		got = append(got, p.Task.Key.JobID+"/"+p.Task.Key.Task)
	}
	if want := []string{"high/a", "high2/a", "mid/a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("placed %v, want %v", got, want)
	}
	want := map[string]string{"low/a": "all matching agents busy", "low/b": "all matching agents busy"}
	if !reflect.DeepEqual(plan.Waiting, want) {
		t.Errorf("Waiting = %v, want %v", plan.Waiting, want)
	}
}

func TestScheduleConcurrency(t *testing.T) {
	t.Parallel()
	tasks := []fsm.PendingTask{
		withKey(task("j1", "deploy"), "prod"),
		withKey(task("j2", "deploy"), "prod"),
		withKey(task("j3", "deploy"), "staging"),
		task("j4", "build"),
		withKey(task("j5", "deploy"), "prod"),
	}
	agents := []scheduler.Candidate{agent("a", 10), agent("b", 10)}
	busyProd := `concurrency group "prod" busy`

	t.Run("one per pass", func(t *testing.T) {
		t.Parallel()
		plan := scheduler.Schedule(tasks, agents, map[string]bool{}, now)
		got := placed(t, plan)
		if len(got) != 3 || got["j1/deploy"] == "" || got["j3/deploy"] == "" || got["j4/build"] == "" {
			t.Errorf("placements = %v, want j1, j3, j4", got)
		}
		want := map[string]string{"j2/deploy": busyProd, "j5/deploy": busyProd}
		if !reflect.DeepEqual(plan.Waiting, want) {
			t.Errorf("Waiting = %v, want %v", plan.Waiting, want)
		}
	})
	t.Run("none when held", func(t *testing.T) {
		t.Parallel()
		busy := map[string]bool{"prod": true}
		plan := scheduler.Schedule(tasks, agents, busy, now)
		got := placed(t, plan)
		if len(got) != 2 || got["j3/deploy"] == "" || got["j4/build"] == "" {
			t.Errorf("placements = %v, want j3, j4", got)
		}
		want := map[string]string{"j1/deploy": busyProd, "j2/deploy": busyProd, "j5/deploy": busyProd}
		if !reflect.DeepEqual(plan.Waiting, want) {
			t.Errorf("Waiting = %v, want %v", plan.Waiting, want)
		}
		if !reflect.DeepEqual(busy, map[string]bool{"prod": true}) {
			t.Errorf("Schedule changed its busy map: %v", busy)
		}
	})
	t.Run("unplaceable holder does not take the key", func(t *testing.T) {
		t.Parallel()
		first := withKey(task("j1", "deploy", "os=plan9"), "prod")
		plan := scheduler.Schedule([]fsm.PendingTask{first, tasks[1]}, agents, nil, now)
		if got := placed(t, plan); !reflect.DeepEqual(got, map[string]string{"j2/deploy": "a"}) {
			t.Errorf("placements = %v, want j2/deploy on a", got)
		}
	})
}

func TestScheduleAvoidAgents(t *testing.T) {
	t.Parallel()
	avoid := func(t fsm.PendingTask, names ...string) fsm.PendingTask { t.AvoidAgents = names; return t }
	tests := []struct {
		name   string
		task   fsm.PendingTask
		agents []scheduler.Candidate
		want   string // agent, or "" for waiting
	}{
		{"other agent preferred", avoid(task("j", "t"), "a"), []scheduler.Candidate{agent("a", 5), agent("b", 1)}, "b"},
		{"several avoided", avoid(task("j", "t"), "a", "b"), []scheduler.Candidate{agent("a", 5), agent("b", 5), agent("c", 1)}, "c"},
		{"fallback when alone", avoid(task("j", "t"), "a"), []scheduler.Candidate{agent("a", 5)}, "a"},
		{"fallback when others full", avoid(task("j", "t"), "a"), []scheduler.Candidate{agent("b", 0), agent("a", 1)}, "a"},
		{"fallback when others do not match", avoid(task("j", "t", "os=linux"), "a"), []scheduler.Candidate{agent("b", 9, "os=darwin"), agent("a", 1, "os=linux")}, "a"},
		{"first fallback by order", avoid(task("j", "t"), "a", "b"), []scheduler.Candidate{agent("b", 1), agent("a", 2)}, "a"},
		{"avoided and full", avoid(task("j", "t"), "a"), []scheduler.Candidate{agent("a", 0)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := scheduler.Schedule([]fsm.PendingTask{tt.task}, tt.agents, nil, now)
			got := placed(t, plan)["j/t"]
			if got != tt.want {
				t.Errorf("placed on %q, want %q (waiting %v)", got, tt.want, plan.Waiting)
			}
			if tt.want == "" && plan.Waiting["j/t"] != "all matching agents busy" {
				t.Errorf("Waiting = %v", plan.Waiting)
			}
		})
	}
}

func TestScheduleLoadSpreading(t *testing.T) {
	t.Parallel()
	two := []fsm.PendingTask{task("j", "t1"), task("j", "t2")}
	four := []fsm.PendingTask{task("j", "t1"), task("j", "t2"), task("j", "t3"), task("j", "t4")}
	tests := []struct {
		name   string
		tasks  []fsm.PendingTask
		agents []scheduler.Candidate
		want   map[string]int
	}{
		{"more free slots first", two[:1], []scheduler.Candidate{agent("a", 1), agent("b", 3)}, map[string]int{"b": 1}},
		{"ties by name", two[:1], []scheduler.Candidate{agent("b", 2), agent("a", 2)}, map[string]int{"a": 1}},
		{"one slot each", two, []scheduler.Candidate{agent("b", 1), agent("a", 1)}, map[string]int{"a": 1, "b": 1}},
		{"equal free slots", two, []scheduler.Candidate{agent("a", 2), agent("b", 2)}, map[string]int{"a": 1, "b": 1}},
		{"four on 4+4", four, []scheduler.Candidate{agent("a", 4), agent("b", 4)}, map[string]int{"a": 2, "b": 2}},
		{"evens out 3+1", four[:2], []scheduler.Candidate{agent("a", 3), agent("b", 1)}, map[string]int{"a": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := scheduler.Schedule(tt.tasks, tt.agents, nil, now)
			count := map[string]int{}
			for _, a := range placed(t, plan) {
				count[a]++
			}
			if !reflect.DeepEqual(count, tt.want) {
				t.Errorf("placements per agent = %v, want %v", count, tt.want)
			}
		})
	}
}
