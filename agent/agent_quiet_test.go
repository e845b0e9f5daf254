package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/internal/capability"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestQuietAssignments: the agent announces the protocol revision of quiet
// assignments; one published without a reply subject runs without an
// answer, one it cannot take is refused by a report naming the attempt and
// why (failure INFRA, for coordinators that do not know refusals), and one
// whose names it refuses is refused without being run.
func TestQuietAssignments(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	beats := make(chan *gv1.Heartbeat, 64)
	sub, err := f.nc.Subscribe(f.ns.Heartbeat("a1"), func(m *nats.Msg) {
		var hb gv1.Heartbeat
		if proto.Unmarshal(m.Data, &hb) == nil {
			select {
			case beats <- &hb:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	a := f.start(func(c *Config) { c.Slots = 1 })
	select {
	case hb := <-beats:
		if hb.GetAgent().GetProtocol() != capability.Protocol {
			t.Fatalf("heartbeat protocol %d, want %d", hb.GetAgent().GetProtocol(), capability.Protocol)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no heartbeat")
	}
	publish := func(as *gv1.Assignment) {
		t.Helper()
		data, err := proto.Marshal(as)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.nc.Publish(f.ns.Assign("a1"), data); err != nil {
			t.Fatal(err)
		}
	}
	publish(execTask("j1", "hold", &gv1.ExecSpec{Command: []string{"sleep", "600"}}))
	f.waitFor("the published assignment to run", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.running) == 1
	})
	publish(execTask("j1", "more", &gv1.ExecSpec{Command: []string{"true"}}))
	r := f.report("more")
	if !r.GetRefused() || r.GetFailure() != gv1.FailureClass_FAILURE_CLASS_INFRA || r.GetAgent() != "a1" ||
		r.GetRef().GetJobId() != "j1" || r.GetRef().GetAttempt() != 1 || !strings.Contains(r.GetError(), "no free slot") {
		t.Errorf("refusal of a published assignment with no free slot = %v", r)
	}
	// A ref that could not name a report subject gets no refusal (its
	// lease runs out); a bad field beside a good ref is refused by name.
	publish(execTask("j2", "t*", &gv1.ExecSpec{Command: []string{"true"}}))
	bad := execTask("j2", "named", &gv1.ExecSpec{Command: []string{"true"}})
	bad.JobName = "a\nb"
	publish(bad)
	r = f.report("named")
	if !r.GetRefused() || !strings.Contains(r.GetError(), "assignment.job_name") {
		t.Errorf("refusal of a published assignment with a bad job name = %v", r)
	}
	a.mu.Lock()
	n := len(a.running)
	a.mu.Unlock()
	if n != 1 {
		t.Errorf("%d tasks running, want the one that holds the slot", n)
	}
	a.Kill() // not the 600 s of the held task
}
