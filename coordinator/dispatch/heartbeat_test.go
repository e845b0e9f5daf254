package dispatch

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func validHeartbeat() *gv1.Heartbeat {
	return &gv1.Heartbeat{
		Agent: &gv1.AgentInfo{Name: "a1", Labels: map[string]string{"os": "linux", "team.io": "ci"}, Slots: 4,
			Capabilities: []string{"exec", "buildkit", "cluster:prod"}, Version: "1.0", Session: "s1",
			WarmCache: []string{"git:https://git.example/app#Dockerfile"}},
		Running: []*gv1.TaskRef{{JobId: "j1", Task: "t", Attempt: 1}},
	}
}

func TestCheckHeartbeatNamesFieldAndBound(t *testing.T) {
	t.Parallel()
	if err := checkHeartbeat(validHeartbeat()); err != nil {
		t.Fatalf("valid heartbeat refused: %v", err)
	}
	many := func(n int, f func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	for _, tt := range []struct {
		mutate func(*gv1.Heartbeat)
		want   string
	}{
		{func(h *gv1.Heartbeat) { h.Agent = nil }, "heartbeat.agent: required"},
		{func(h *gv1.Heartbeat) { h.Agent.Name = "a.b" }, "heartbeat.agent.name: invalid name"},
		{func(h *gv1.Heartbeat) { h.Agent.Name = strings.Repeat("a", 64) }, "heartbeat.agent.name: invalid name"},
		{func(h *gv1.Heartbeat) {
			h.Agent.Labels = map[string]string{}
			for i := range limit.Labels + 1 {
				h.Agent.Labels[fmt.Sprintf("l%d", i)] = "v"
			}
		}, "heartbeat.agent.labels: 65 labels, more than the limit of 64"},
		{func(h *gv1.Heartbeat) { h.Agent.Labels = map[string]string{"bad key": "v"} }, "heartbeat.agent.labels: key: invalid name"},
		{func(h *gv1.Heartbeat) {
			h.Agent.Labels = map[string]string{"k": strings.Repeat("v", limit.LabelValue+1)}
		},
			`heartbeat.agent.labels["k"]: value is 257 bytes, longer than the limit of 256`},
		{func(h *gv1.Heartbeat) { h.Agent.Slots = -1 }, "heartbeat.agent.slots: -1 is negative"},
		{func(h *gv1.Heartbeat) { h.Agent.Session = strings.Repeat("s", limit.LabelValue+1) }, "heartbeat.agent.session: 257 bytes, longer than the limit of 256"},
		{func(h *gv1.Heartbeat) {
			h.Agent.Capabilities = many(limit.Capabilities+1, func(i int) string { return fmt.Sprint("c", i) })
		},
			"heartbeat.agent.capabilities: 65 capabilities, more than the limit of 64"},
		{func(h *gv1.Heartbeat) { h.Agent.Capabilities = []string{"exec", "cluster:"} }, "heartbeat.agent.capabilities[1]: invalid name: empty"},
		{func(h *gv1.Heartbeat) {
			h.Agent.Capabilities = []string{"cluster:" + strings.Repeat("c", limit.Capability)}
		},
			"heartbeat.agent.capabilities[0]: 136 bytes, longer than the limit of 128"},
		{func(h *gv1.Heartbeat) {
			h.Agent.WarmCache = many(limit.WarmCache+1, func(i int) string { return fmt.Sprint("k", i) })
		},
			"heartbeat.agent.warm_cache: 65 keys, more than the limit of 64"},
		{func(h *gv1.Heartbeat) { h.Agent.WarmCache = []string{strings.Repeat("k", limit.WarmCacheKey+1)} },
			"heartbeat.agent.warm_cache[0]: 1025 bytes, longer than the limit of 1024"},
		{func(h *gv1.Heartbeat) {
			h.Running = make([]*gv1.TaskRef, limit.HeartbeatRunning+1)
			for i := range h.Running {
				h.Running[i] = &gv1.TaskRef{JobId: "j", Task: "t", Attempt: int32(i + 1)}
			}
		}, "heartbeat.running: 4097 attempts, more than the limit of 4096"},
		{func(h *gv1.Heartbeat) { h.Running = []*gv1.TaskRef{{JobId: "j", Task: "t"}} }, "heartbeat.running[0]: attempt: 0 is not positive"},
		{func(h *gv1.Heartbeat) { h.Running = []*gv1.TaskRef{{JobId: "j>", Task: "t", Attempt: 1}} }, "heartbeat.running[0]: job_id: invalid name"},
	} {
		hb := validHeartbeat()
		tt.mutate(hb)
		if err := checkHeartbeat(hb); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkHeartbeat = %v; want an error saying %q", err, tt.want)
		}
	}
}

func TestMalformedHeartbeatIsDroppedAndLoggedRarely(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.WarnLevel)
	x := newFixture(t, zap.New(core))
	good := marshal(t, validHeartbeat())
	x.d.HandleHeartbeat(&nats.Msg{Subject: x.ns.Heartbeat("a1"), Data: good})
	if _, ok := x.d.fleet.LastSeen("a1"); !ok {
		t.Fatal("valid heartbeat not recorded")
	}
	bad := validHeartbeat()
	bad.Agent.Name = "a2"
	bad.Agent.Labels = map[string]string{"k": strings.Repeat("v", limit.LabelValue+1)}
	for range 100 {
		x.d.HandleHeartbeat(&nats.Msg{Subject: x.ns.Heartbeat("a2"), Data: marshal(t, bad)})
		// Another agent's name on a1's subject.
		x.d.HandleHeartbeat(&nats.Msg{Subject: x.ns.Heartbeat("a1"), Data: marshal(t, &gv1.Heartbeat{Agent: &gv1.AgentInfo{Name: "a3"}})})
		x.d.HandleHeartbeat(&nats.Msg{Subject: x.ns.Heartbeat("a1"), Data: []byte{0xff}})
	}
	for _, a := range []string{"a2", "a3"} {
		if _, ok := x.d.fleet.LastSeen(a); ok {
			t.Errorf("dropped heartbeat of %s recorded", a)
		}
	}
	if n := x.d.droppedHeartbeats.Load(); n != 300 {
		t.Errorf("counted %d dropped heartbeats, want 300", n)
	}
	if n := logs.FilterMessage("heartbeat dropped").Len(); n != 1 {
		t.Errorf("logged %d warnings for 300 dropped heartbeats; want 1 per %s", n, dropLogEvery)
	}
}

func TestHeartbeatOnAnotherAgentsSubjectIsDropped(t *testing.T) {
	t.Parallel()
	x := newFixture(t, zap.NewNop())
	_, err := x.d.heartbeat(x.ns.Heartbeat("a2"), marshal(t, validHeartbeat()), time.Now())
	if err == nil || !strings.Contains(err.Error(), `heartbeat.agent.name: "a1" is not the agent of subject`) {
		t.Fatalf("heartbeat of a1 on a2's subject: %v", err)
	}
	if len(x.d.fleet.Agents(time.Now(), 0)) != 0 {
		t.Fatal("fleet changed")
	}
}

func TestEnrollmentBounds(t *testing.T) {
	e := &gv1.Enrollment{Agent: "a1", TokenId: "tok", Labels: map[string]string{"pool": "ci", "cluster.prod": "true"}}
	for _, c := range []struct {
		info *gv1.AgentInfo
		want string // part of the error; "" for none
	}{
		{&gv1.AgentInfo{Labels: map[string]string{"pool": "ci"}}, ""},
		{&gv1.AgentInfo{Labels: map[string]string{"pool": "ci", "cluster.prod": "true"}, Capabilities: []string{"exec", "cluster:prod"}}, ""},
		{&gv1.AgentInfo{Labels: map[string]string{"pool": "gpu"}}, `labels["pool"]: pool=gpu is not allowed`},
		{&gv1.AgentInfo{Labels: map[string]string{"os": "linux"}}, `labels["os"]`},
		{&gv1.AgentInfo{Capabilities: []string{"cluster:staging"}}, "cluster:staging needs cluster.staging=true"},
	} {
		err := EnrollmentBounds(e, c.info)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: %v, want %q", c.info, err, c.want)
		}
	}
	if err := EnrollmentBounds(&gv1.Enrollment{Agent: "a1"}, &gv1.AgentInfo{Labels: map[string]string{"any": "thing"}, Capabilities: []string{"cluster:x"}}); err != nil {
		t.Errorf("a token without labels bounds nothing: %v", err)
	}
	if err := EnrollmentBounds(&gv1.Enrollment{Agent: "a1", Revoked: true}, &gv1.AgentInfo{}); err == nil {
		t.Error("a revoked agent's heartbeat accepted")
	}
}
