package api

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/poll"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// restoreStream is the client side of a RestoreSnapshot call, in memory.
type restoreStream struct {
	grpc.ServerStream
	chunks [][]byte
	resp   *gv1.RestoreSnapshotResponse
}

func (s *restoreStream) Recv() (*gv1.RestoreSnapshotRequest, error) {
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return &gv1.RestoreSnapshotRequest{Data: c}, nil
}

func (s *restoreStream) SendAndClose(r *gv1.RestoreSnapshotResponse) error { s.resp = r; return nil }

func (s *restoreStream) Context() context.Context { return context.Background() }

func chunked(data []byte, n int) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		k := min(n, len(data))
		out = append(out, data[:k])
		data = data[k:]
	}
	return out
}

// leaderAPI is the API of a one-node cluster.
func leaderAPI(t *testing.T) (*Server, *fsm.FSM, *consensus.Node) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := consensus.DefaultConfig()
	c.ID, c.Dir, c.BindAddr, c.Bootstrap = "n1", t.TempDir(), addr, true
	f := fsm.New()
	node, err := consensus.Open(c, f, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	// Leading, with its configuration entry applied (a restore refuses
	// to run before).
	if !poll.Until(10*time.Second, func() bool {
		return node.Raft.State() == raft.Leader && node.Raft.AppliedIndex() >= node.Raft.LastIndex()
	}) {
		t.Fatal("no leader")
	}
	return New(Deps{Log: zap.NewNop(), FSM: f, Raft: node}), f, node
}

// savedState is an encoded state with three jobs and an application.
func savedState(t *testing.T) []byte {
	t.Helper()
	f := fsm.New()
	at := timestamppb.Now()
	var cmds []*gv1.Command
	for _, id := range []string{"j1", "j2", "j3"} {
		spec := &gv1.TaskSpec{Name: "t", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}
		cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
			Id: id, Spec: &gv1.JobSpec{Name: "p", Tasks: []*gv1.TaskSpec{spec}}, CreatedAt: at, Tasks: []*gv1.Task{{Name: "t", Spec: spec}},
		}}}})
	}
	cmds = append(cmds, &gv1.Command{At: at, Cmd: &gv1.Command_CreateApp{CreateApp: &gv1.CreateAppCommand{Spec: &gv1.AppSpec{Name: "web", Repo: "https://git.example/web"}}}})
	data, err := proto.Marshal(&gv1.Batch{Commands: cmds})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data})
	out, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// spooled lists the restore spool files left in dir.
func spooled(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "restore-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRestoreSnapshotFromSpool(t *testing.T) {
	t.Parallel()
	s, f, node := leaderAPI(t)
	stream := &restoreStream{chunks: chunked(savedState(t), 100)}
	if err := s.RestoreSnapshot(stream); err != nil {
		t.Fatalf("RestoreSnapshot: %v", err)
	}
	if stream.resp.GetJobs() != 3 || stream.resp.GetApps() != 1 {
		t.Errorf("response %v; want 3 jobs and 1 application", stream.resp)
	}
	if _, ok := f.Job("j2"); !ok {
		t.Error("restored state lacks job j2")
	}
	if _, ok := f.App("web"); !ok {
		t.Error("restored state lacks application web")
	}
	if left := spooled(t, node.Dir); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
}

func TestRestoreSnapshotRefusesBadInput(t *testing.T) {
	t.Parallel()
	s, f, node := leaderAPI(t)
	valid := savedState(t)
	noID, _ := proto.Marshal(&gv1.Snapshot{Jobs: []*gv1.Job{{Id: "ok"}, {}}})
	for name, data := range map[string][]byte{
		"garbage":        []byte("this is not a snapshot"),
		"truncated":      valid[:len(valid)-3],
		"job without id": noID,
	} {
		stream := &restoreStream{chunks: chunked(data, 7)}
		err := s.RestoreSnapshot(stream)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "snapshot: element") {
			t.Errorf("%s: %v; want InvalidArgument naming the element", name, err)
		}
		if len(f.Jobs(nil, 0)) != 0 {
			t.Fatalf("%s: a refused snapshot changed the state", name)
		}
		if left := spooled(t, node.Dir); len(left) != 0 {
			t.Errorf("%s: spool files left: %v", name, left)
		}
	}
}

func TestSpoolSnapshotIsBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stream := &restoreStream{chunks: chunked(bytes.Repeat([]byte{1}, 5000), 1000)}
	_, _, err := spoolSnapshot(stream, dir, 4096)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "larger than the limit of 4096 bytes") {
		t.Fatalf("spool past the bound: %v", err)
	}
	if left := spooled(t, dir); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
	stream = &restoreStream{chunks: chunked(bytes.Repeat([]byte{1}, 4096), 1000)}
	file, size, err := spoolSnapshot(stream, dir, 4096)
	if err != nil || size != 4096 {
		t.Fatalf("spool at the bound: %d bytes, %v", size, err)
	}
	defer os.Remove(file.Name())
	defer file.Close()
	if info, err := file.Stat(); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("spool file mode %v, %v; want 600", info.Mode(), err)
	}
}

// FuzzVerifySnapshot checks that verifying a snapshot one element at a
// time is at least as strict as decoding it whole (it refuses groups, which
// no Gantry snapshot has) and counts the same.
func FuzzVerifySnapshot(f *testing.F) {
	snap := &gv1.Snapshot{AppliedIndex: 9, Fence: 2, Jobs: []*gv1.Job{{Id: "j1"}}, Apps: []*gv1.App{{Spec: &gv1.AppSpec{Name: "web"}}}}
	data, _ := proto.Marshal(snap)
	f.Add(data)
	f.Add([]byte("not a snapshot"))
	f.Add([]byte{})
	noID, _ := proto.Marshal(&gv1.Snapshot{Jobs: []*gv1.Job{{}}})
	f.Add(noID)
	f.Add([]byte("\x85\x85\x85\x85\x8500000")) // a tag past 32 bits
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := verifySnapshot(bytes.NewReader(data), int64(len(data)))
		whole, werr := fsm.Decode(data)
		if err == nil && werr != nil {
			t.Fatalf("element by element: accepted; whole: %v", werr)
		}
		if werr != nil || err != nil {
			return
		}
		if sum.jobs != len(whole.GetJobs()) || sum.apps != len(whole.GetApps()) || sum.applied != whole.GetAppliedIndex() {
			t.Fatalf("summary %+v; whole snapshot has %d jobs, %d apps, applied %d", sum, len(whole.GetJobs()), len(whole.GetApps()), whole.GetAppliedIndex())
		}
	})
}
