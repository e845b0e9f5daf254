package dispatch

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The fuzz tests feed random bytes and mutated valid messages into the
// handlers of what an agent sends, over the real FSM and Raft. None may
// panic, and a message they refuse changes no state. `go test` runs the
// seeds; `go test -fuzz FuzzReport` explores.

func FuzzReport(f *testing.F) {
	x := newFixture(f, zap.NewNop())
	ref := x.submit(f, "j1", "a1")
	valid := &gv1.Report{Ref: ref, Success: true, Outputs: map[string]string{"digest": "sha256:1", "image": "r/app:1"}}
	f.Add("a1", marshal(f, valid))
	f.Add("a2", marshal(f, valid))
	f.Add("a1", marshal(f, &gv1.Report{Ref: ref, Error: strings.Repeat("e", 2*limit.ReportError), Failure: gv1.FailureClass_FAILURE_CLASS_INFRA}))
	f.Add("a1", marshal(f, &gv1.Report{Ref: ref, Agent: "a2", Success: true}))
	f.Add("a1", marshal(f, &gv1.Report{Ref: ref, Outputs: outputs(limit.ReportOutputs+1, 1)}))
	f.Add("a1", marshal(f, &gv1.Report{Ref: ref, Outputs: map[string]string{"a.b": "c"}}))
	f.Add("a1", marshal(f, &gv1.Report{Ref: &gv1.TaskRef{JobId: "j1", Task: "t", Attempt: -1}}))
	f.Add("a*", []byte{})
	f.Add("a1", []byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, agent string, data []byte) {
		before, applied := x.state(t), x.fsm.AppliedIndex()
		reply, outcome := x.d.report(x.ctx, x.ns.Report(agent), data)
		if reply == nil {
			t.Skip("commit outcome unknown")
		}
		if len(reply.Reason) > limit.ReportError {
			t.Fatalf("a %d-byte reason", len(reply.Reason))
		}
		switch outcome {
		case "malformed":
			if x.fsm.AppliedIndex() != applied {
				t.Fatal("a malformed report reached the log")
			}
			fallthrough
		case "refused", "duplicate":
			if x.state(t) != before {
				t.Fatalf("a %s report (%s) changed the state", outcome, reply.Reason)
			}
		case "accepted":
			for _, j := range x.fsm.Jobs(nil, 0) {
				for _, task := range j.Tasks {
					if len(task.Error) > limit.ReportError || len(task.Outputs) > limit.ReportOutputs {
						t.Fatalf("recorded an unbounded report: %d-byte error, %d outputs", len(task.Error), len(task.Outputs))
					}
				}
			}
		default:
			t.Fatalf("outcome %q", outcome)
		}
	})
}

func FuzzHeartbeat(f *testing.F) {
	x := newFixture(f, zap.NewNop())
	const maxAgents = 8
	x.d.fleet = fleet.NewBounded(time.Second, maxAgents, limit.AgentForget)
	f.Add("a1", marshal(f, validHeartbeat()))
	f.Add("a2", marshal(f, validHeartbeat()))
	hb := validHeartbeat()
	hb.Agent.Labels["bad key"] = "v"
	f.Add("a1", marshal(f, hb))
	hb = validHeartbeat()
	hb.Running = append(hb.Running, &gv1.TaskRef{JobId: "j>", Task: "*", Attempt: 1})
	f.Add("a1", marshal(f, hb))
	f.Add("a.b", []byte{0x0a, 0x03, 0x0a, 0x01, 'a'})
	var clock atomic.Int64
	start := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, agent string, data []byte) {
		now := start.Add(time.Duration(clock.Add(1)) * 100 * time.Millisecond)
		before := fleetState(x.d.fleet, now)
		if _, err := x.d.heartbeat(x.ns.Heartbeat(agent), data, now); err != nil {
			if after := fleetState(x.d.fleet, now); after != before {
				t.Fatalf("a dropped heartbeat (%v) changed the fleet", err)
			}
		}
		if n := len(x.d.fleet.Agents(now, 0)); n > maxAgents {
			t.Fatalf("fleet of %d agents, bound %d", n, maxAgents)
		}
	})
}

// fleetState describes the fleet for comparing before and after.
func fleetState(f *fleet.View, now time.Time) string {
	var b strings.Builder
	for _, a := range f.Agents(now, 0) {
		data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a.Info)
		fmt.Fprintf(&b, "%s %d %x %d\n", a.Info.Name, a.LastSeen.UnixNano(), data, len(a.Running))
	}
	return b.String()
}

// FuzzAssignmentReply feeds an agent's answer to an assignment through
// what the dispatcher does with a refusal: its reason goes into a
// RequeueTask command, bounded.
func FuzzAssignmentReply(f *testing.F) {
	x := newFixture(f, zap.NewNop())
	f.Add(marshal(f, &gv1.AssignmentReply{Accepted: false, Reason: "busy"}))
	f.Add(marshal(f, &gv1.AssignmentReply{Reason: strings.Repeat("r", 3*limit.ReportError)}))
	f.Add(marshal(f, &gv1.AssignmentReply{Accepted: true}))
	f.Add([]byte{0x12, 0xff})
	var jobs atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		var reply gv1.AssignmentReply
		err := proto.Unmarshal(data, &reply)
		if err == nil && reply.Accepted {
			return // taken: nothing the agent said is recorded
		}
		reason := reply.Reason
		if err != nil {
			reason = err.Error()
		}
		ref := x.submit(t, fmt.Sprintf("r%d", jobs.Add(1)), "a1")
		x.d.requeue(x.ctx, ref, fmt.Sprintf("agent %s did not take the task: %s", "a1", reason), "not_accepted")
		if got := x.attempt(t, ref).Error; len(got) > limit.ReportError {
			t.Fatalf("requeue recorded a %d-byte reason", len(got))
		}
		// A requeue of an attempt that ended changes nothing.
		before := x.state(t)
		x.d.requeue(x.ctx, ref, reason, "not_accepted")
		if x.state(t) != before {
			t.Fatal("requeue of an ended attempt changed the state")
		}
	})
}
