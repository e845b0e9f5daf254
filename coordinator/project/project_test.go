package project

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/forge"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestKeyIsOneBuildPerEventRefAndCommit(t *testing.T) {
	push := &gv1.Trigger{Event: "push", Ref: "refs/heads/main", Sha: "aaa", Source: "webhook"}
	polled := &gv1.Trigger{Event: "push", Ref: "refs/heads/main", Sha: "aaa", Source: "poll", Author: "x"}
	if Key(push) != Key(polled) {
		t.Errorf("a webhook and a poll of one commit have keys %q and %q", Key(push), Key(polled))
	}
	for _, other := range []*gv1.Trigger{
		{Event: "push", Ref: "refs/heads/main", Sha: "bbb"},
		{Event: "push", Ref: "refs/heads/dev", Sha: "aaa"},
		{Event: "tag", Ref: "refs/tags/v1", Sha: "aaa"},
		{Event: "pull_request", Ref: "refs/pull/1/head", Sha: "aaa"},
	} {
		if Key(other) == Key(push) {
			t.Errorf("%v shares key %q with the push", other, Key(push))
		}
	}
	slot := timestamppb.New(time.Date(2026, 12, 1, 3, 17, 0, 0, time.UTC))
	a := &gv1.Trigger{Event: "cron", Sha: "aaa", Slot: slot}
	b := &gv1.Trigger{Event: "cron", Sha: "bbb", Slot: slot}
	if Key(a) != Key(b) {
		t.Errorf("one cron slot has keys %q and %q: a new leader would fire it again", Key(a), Key(b))
	}
}

func TestPathsMatch(t *testing.T) {
	for _, c := range []struct {
		paths, ignore, changed []string
		want                   bool
	}{
		{nil, nil, nil, true},
		{nil, nil, []string{"a.go"}, true},
		{[]string{"src/**"}, nil, []string{"docs/x.md"}, false},
		{[]string{"src/**"}, nil, []string{"docs/x.md", "src/a/b.go"}, true},
		{[]string{"src/"}, nil, []string{"src/a.go"}, true},
		{nil, []string{"*.md"}, []string{"README.md", "docs/guide.md"}, false},
		{nil, []string{"*.md"}, []string{"README.md", "main.go"}, true},
		{[]string{"src/**"}, []string{"src/gen/**"}, []string{"src/gen/x.go"}, false},
		{[]string{"Dockerfile"}, nil, []string{"Dockerfile"}, true},
		{[]string{"cmd/*/main.go"}, nil, []string{"cmd/gantry/main.go"}, true},
	} {
		if got := PathsMatch(c.paths, c.ignore, c.changed); got != c.want {
			t.Errorf("PathsMatch(%q, %q, %q) = %v, want %v", c.paths, c.ignore, c.changed, got, c.want)
		}
	}
}

func TestDueSlotFiresNewestMissedSlotOnce(t *testing.T) {
	sched, err := ParseCron("17 3 * * *")
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := dueSlot(sched, created, created.Add(3*time.Hour)); ok {
		t.Error("a slot fired before 03:17")
	}
	slot, ok := dueSlot(sched, created, created.Add(3*time.Hour+17*time.Minute))
	if want := created.Add(3*time.Hour + 17*time.Minute); !ok || !slot.Equal(want) {
		t.Errorf("at 03:17: slot %v %v, want %v", slot, ok, want)
	}
	// Fired (last_cron = slot): not again until the next day.
	if _, ok := dueSlot(sched, slot, slot.Add(time.Hour)); ok {
		t.Error("the fired slot is due again")
	}
	// Three days without a leader: one build, for the newest slot.
	slot, ok = dueSlot(sched, created, created.Add(72*time.Hour+4*time.Hour))
	if want := created.Add(72*time.Hour + 3*time.Hour + 17*time.Minute); !ok || !slot.Equal(want) {
		t.Errorf("after three days: slot %v %v, want %v", slot, ok, want)
	}
	if _, err := ParseCron("61 * * * *"); err == nil {
		t.Error("minute 61 accepted")
	}
}

func TestBuildStatus(t *testing.T) {
	p := &gv1.ProjectSpec{Name: "web"}
	for _, c := range []struct {
		name  string
		v     fsm.BuildView
		state forge.State
		desc  string
		ok    bool
	}{
		{"held", fsm.BuildView{Project: p, Build: &gv1.Build{Number: 4, AwaitingApproval: true}}, forge.Pending, "awaiting approval: gantry build approve web 4", true},
		{"reading", fsm.BuildView{Project: p, Build: &gv1.Build{Number: 1}}, forge.Pending, "reading the pipeline", true},
		{"no pipeline", fsm.BuildView{Project: p, Build: &gv1.Build{Number: 1, Error: "no .gantry/pipeline.yaml at aaa"}}, forge.Error, "no .gantry/pipeline.yaml at aaa", true},
		{"running", fsm.BuildView{Project: p, Build: &gv1.Build{JobId: "j"}, JobState: gv1.JobState_JOB_STATE_RUNNING}, forge.Running, "running", true},
		{"succeeded", fsm.BuildView{Project: p, Build: &gv1.Build{JobId: "j"}, JobState: gv1.JobState_JOB_STATE_SUCCEEDED}, forge.Success, "succeeded", true},
		{"failed", fsm.BuildView{Project: p, Build: &gv1.Build{JobId: "j"}, JobState: gv1.JobState_JOB_STATE_FAILED}, forge.Failure, "failed", true},
		{"superseded", fsm.BuildView{Project: p, Build: &gv1.Build{JobId: "j", SupersededBy: 7}, JobState: gv1.JobState_JOB_STATE_CANCELED}, forge.Error, "superseded by build 7", true},
		{"job gone", fsm.BuildView{Project: p, Build: &gv1.Build{JobId: "j"}}, "", "", false},
	} {
		st, ok := buildStatus(c.v)
		if ok != c.ok || (ok && (st.State != c.state || st.Description != c.desc || st.Context != "gantry/web")) {
			t.Errorf("%s: %+v %v, want %s %q", c.name, st, ok, c.state, c.desc)
		}
	}
}
