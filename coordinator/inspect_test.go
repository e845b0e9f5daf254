package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func inspectSubmit(id string, sec int64) *gv1.Command {
	return &gv1.Command{At: timestamppb.New(time.Unix(1_700_000_000+sec, 0)), Cmd: &gv1.Command_SubmitJob{SubmitJob: &gv1.SubmitJobCommand{Job: &gv1.Job{
		Id: id, Spec: &gv1.JobSpec{Name: "p"},
		Tasks: []*gv1.Task{{Name: "t", Spec: &gv1.TaskSpec{Name: "t", Executor: &gv1.TaskSpec_Exec{Exec: &gv1.ExecSpec{Shell: "true"}}}}},
	}}}}
}

func batchBytes(t *testing.T, cmds ...*gv1.Command) []byte {
	t.Helper()
	data, err := proto.Marshal(&gv1.Batch{Commands: cmds})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func stateSum(t *testing.T, f *fsm.FSM) string {
	t.Helper()
	data, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// treeSums maps every file under dir to its mode and SHA-256.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[path] = fmt.Sprintf("%v %x", info.Mode(), sha256.Sum256(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInspectMatchesTheStoppedNode runs a one-node Raft cluster over the
// coordinator's FSM, with a snapshot that compacted the log, stops it and
// requires Inspect to find the state the node held, without changing the
// data directory; while the node runs, Inspect refuses.
func TestInspectMatchesTheStoppedNode(t *testing.T) {
	t.Parallel()
	for _, store := range []consensus.Store{consensus.StoreSegments, consensus.StoreBolt, consensus.StoreWAL} {
		t.Run(string(store), func(t *testing.T) {
			t.Parallel()
			dataDir := t.TempDir()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			cfg := consensus.DefaultConfig()
			cfg.ID, cfg.Dir, cfg.BindAddr, cfg.Store, cfg.Bootstrap = "n1", filepath.Join(dataDir, "raft"), addr, store, true
			cfg.TrailingLogs = 2 // the snapshot compacts the log: the state needs it
			f := fsm.New()
			node, err := consensus.Open(cfg, f, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			deadline := time.Now().Add(10 * time.Second)
			for node.Raft.State() != raft.Leader {
				if time.Now().After(deadline) {
					t.Fatal("no leader")
				}
				time.Sleep(10 * time.Millisecond)
			}
			apply := func(cmds ...*gv1.Command) {
				t.Helper()
				if err := node.Raft.Apply(batchBytes(t, cmds...), 5*time.Second).Error(); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 10 {
				apply(inspectSubmit(fmt.Sprintf("before-%d", i), int64(i)))
			}
			if err := node.Raft.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
			apply(inspectSubmit("after-0", 20), inspectSubmit("after-1", 21))
			apply(inspectSubmit("after-2", 22))
			if err := node.Raft.Barrier(5 * time.Second).Error(); err != nil {
				t.Fatal(err)
			}

			if _, err := Inspect(dataDir); err == nil || !strings.Contains(err.Error(), "a coordinator is running") {
				t.Fatalf("Inspect of a running node's data dir: want it refused as running, got %v", err)
			}

			wantSum, wantIndex := stateSum(t, f), f.AppliedIndex()
			if err := node.Close(); err != nil {
				t.Fatal(err)
			}
			before := treeSums(t, dataDir)
			in, err := Inspect(dataDir)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", *in)
			if in.Store != store {
				t.Errorf("store %q, want %q", in.Store, store)
			}
			if in.StateSHA256 != wantSum || in.AppliedIndex != wantIndex {
				t.Errorf("Inspect: state %s at %d, want %s at %d", in.StateSHA256, in.AppliedIndex, wantSum, wantIndex)
			}
			if in.SnapshotID == "" || in.SnapshotIndex == 0 || in.FirstLogIndex <= 1 || in.FirstLogIndex > in.SnapshotIndex+1 {
				t.Errorf("want a snapshot that compacted the log: %+v", in)
			}
			if in.CommandsApplied != 2 || in.Jobs != 13 || in.LastLogIndex < in.AppliedIndex || in.LastLogTerm == 0 {
				t.Errorf("want 2 command entries after the snapshot and 13 jobs: %+v", in)
			}
			if after := treeSums(t, dataDir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("Inspect changed the data directory:\nbefore %v\nafter  %v", before, after)
			}
			// The Raft directory itself is accepted too.
			if in2, err := Inspect(cfg.Dir); err != nil || in2.StateSHA256 != wantSum {
				t.Errorf("Inspect of the raft dir: %+v, %v", in2, err)
			}
		})
	}
}

// TestInspectAppliesOnlyCommands writes a log by hand: configuration and
// no-op entries do not move the state's index, and a command type this
// build does not know is an error naming the entry, not a crash.
func TestInspectAppliesOnlyCommands(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dataDir, "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(dataDir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	want := fsm.New()
	entries := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte{}},
		{Index: 2, Term: 2, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: batchBytes(t, inspectSubmit("a", 1), inspectSubmit("b", 2))},
		{Index: 4, Term: 2, Type: raft.LogCommand, Data: batchBytes(t, inspectSubmit("c", 3))},
		{Index: 5, Term: 3, Type: raft.LogNoop},
	}
	for _, l := range entries {
		want.Apply(l)
	}
	if err := store.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	store.Close()

	in, err := Inspect(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if in.AppliedIndex != 4 || in.LastLogIndex != 5 || in.LastLogTerm != 3 || in.CommandsApplied != 2 || in.Jobs != 3 || in.SnapshotID != "" {
		t.Errorf("Inspect: %+v", in)
	}
	if in.StateSHA256 != stateSum(t, want) {
		t.Errorf("state %s, want %s", in.StateSHA256, stateSum(t, want))
	}

	// A newer build's command: field 999 of Command's oneof range.
	c := inspectSubmit("d", 4)
	c.Cmd = nil
	c.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 999, protowire.BytesType), []byte{}))
	store, err = raftboltdb.NewBoltStore(filepath.Join(dataDir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.StoreLog(&raft.Log{Index: 6, Term: 3, Type: raft.LogCommand, Data: batchBytes(t, c)}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if _, err := Inspect(dataDir); err == nil || !strings.Contains(err.Error(), "apply log entry 6") || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("Inspect of a log with an unknown command type: want an error naming entry 6, got %v", err)
	}
	if _, err := Inspect(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no Raft log store") {
		t.Fatalf("Inspect of an empty dir: %v", err)
	}
}
