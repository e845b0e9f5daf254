package coordinator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/internal/subject"
	"github.com/gantryci/gantry/internal/version"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func testNodeTable(members ...string) (*nodeTable, map[string]bool) {
	set := map[string]bool{}
	for _, m := range members {
		set[m] = true
	}
	s := &Server{ns: subject.New("t"), log: zap.NewNop()}
	t := &nodeTable{s: s, nodes: map[string]*gv1.NodeStatus{}}
	t.members = func() (map[string]bool, error) { return set, nil }
	return t, set
}

func statusBytes(t *testing.T, st *gv1.NodeStatus) []byte {
	t.Helper()
	data, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestNodeTableKeepsOnlyMembers(t *testing.T) {
	t.Parallel()
	tab, members := testNodeTable("n1", "n2")
	ns := subject.New("t")
	now := time.Now()
	if err := tab.observe(ns.NodeStatus("n1"), statusBytes(t, &gv1.NodeStatus{Id: "n1", RaftAddr: "127.0.0.1:1"}), now); err != nil {
		t.Fatalf("member refused: %v", err)
	}
	for _, tt := range []struct {
		subj string
		st   *gv1.NodeStatus
		want string
	}{
		{ns.NodeStatus("n9"), &gv1.NodeStatus{Id: "n9"}, "not in the raft configuration"},
		{ns.NodeStatus("n1"), &gv1.NodeStatus{Id: "n2"}, "is not the node of subject"},
		{ns.NodeStatus("a.b"), &gv1.NodeStatus{Id: "a.b"}, "node status.id: invalid name"},
		{ns.NodeStatus(""), &gv1.NodeStatus{}, "node status.id: invalid name"},
	} {
		err := tab.observe(tt.subj, statusBytes(t, tt.st), now)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("observe(%s, id %q) = %v; want an error saying %q", tt.subj, tt.st.Id, err, tt.want)
		}
	}
	if err := tab.observe(ns.NodeStatus("n1"), []byte{0xff, 0xff}, now); err == nil {
		t.Error("undecodable status accepted")
	}
	if len(tab.nodes) != 1 || tab.nodes["n1"] == nil {
		t.Fatalf("table holds %v; want only n1", tab.nodes)
	}

	// A node that left the configuration is forgotten.
	delete(members, "n1")
	if err := tab.observe(ns.NodeStatus("n2"), statusBytes(t, &gv1.NodeStatus{Id: "n2"}), now); err != nil {
		t.Fatal(err)
	}
	if len(tab.nodes) != 1 || tab.nodes["n2"] == nil {
		t.Fatalf("table holds %v after n1 left; want only n2", tab.nodes)
	}
}

func TestNodeTableClipsAddresses(t *testing.T) {
	t.Parallel()
	tab, _ := testNodeTable("n1")
	long := strings.Repeat("x", 10000)
	if err := tab.observe(subject.New("t").NodeStatus("n1"), statusBytes(t, &gv1.NodeStatus{Id: "n1", GrpcAddr: long}), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := len(tab.nodes["n1"].GrpcAddr); n > 256 {
		t.Errorf("kept a %d-byte address", n)
	}
}

func FuzzNodeStatus(f *testing.F) {
	f.Add("gantry.t.node.n1", statusBytesF(&gv1.NodeStatus{Id: "n1", RaftAddr: "127.0.0.1:1"}))
	f.Add("gantry.t.node.n9", statusBytesF(&gv1.NodeStatus{Id: "n9"}))
	f.Add("gantry.t.node.*", []byte{0x0a, 0x01, '*'})
	f.Fuzz(func(t *testing.T, subj string, data []byte) {
		tab, _ := testNodeTable("n1", "n2")
		if err := tab.observe(subj, data, time.Now()); err != nil && len(tab.nodes) != 0 {
			t.Fatalf("refused status changed the table: %v", tab.nodes)
		}
		if len(tab.nodes) > 2 {
			t.Fatalf("table holds %d nodes of a 2-node configuration", len(tab.nodes))
		}
	})
}

func statusBytesF(st *gv1.NodeStatus) []byte {
	data, _ := proto.Marshal(st)
	return data
}

func TestCommandTypesWaitForEveryVoter(t *testing.T) {
	voters := []string{"n1", "n2", "n3"}
	// Before every voter announced: types of the builds before
	// announcements pass, newer ones wait.
	if err := checkCommandType(knownBefore, voters, map[string]int32{"n1": 38}); err != nil {
		t.Errorf("a type every build knows: %v", err)
	}
	err := checkCommandType(knownBefore+1, voters, map[string]int32{"n1": 38, "n2": 38})
	if !errors.Is(err, consensus.ErrUpgrading) || !strings.Contains(err.Error(), "coordinator n3 knows Raft command types up to 25") {
		t.Errorf("a newer type while n3 has not announced: %v", err)
	}
	// An older build announcing less.
	if err := checkCommandType(36, voters, map[string]int32{"n1": 38, "n2": 35, "n3": 38}); !errors.Is(err, consensus.ErrUpgrading) {
		t.Errorf("type 36 while n2 knows up to 35: %v", err)
	}
	if err := checkCommandType(38, voters, map[string]int32{"n1": 38, "n2": 38, "n3": 40}); err != nil {
		t.Errorf("every voter knows 38: %v", err)
	}
	if n := version.CommandType(&gv1.Command{Cmd: &gv1.Command_DecideTask{DecideTask: &gv1.DecideTaskCommand{}}}); n != 34 {
		t.Errorf("DecideTask is type %d, want 34", n)
	}
}
