package consensus_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/poll"
)

// checkPrivate fails unless every directory under dir is 0700 and every
// file 0600.
func checkPrivate(t *testing.T, dir string) (files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSnapshotFilesAreOwnerOnly(t *testing.T) {
	t.Parallel()
	leader, f := cluster(t, 1, consensus.StoreBolt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := consensus.NewProposer(leader.Raft)
	go p.Run(ctx)
	if _, err := p.ProposeOne(ctx, submitCmd("j1")); err != nil {
		t.Fatal(err)
	}
	if err := leader.Raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if info, err := os.Stat(leader.Dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("raft dir: %v, %v; want mode 700", info.Mode(), err)
	}
	snaps := filepath.Join(leader.Dir, "snapshots")
	if n := checkPrivate(t, snaps); n < 2 {
		t.Fatalf("%d files under %s; want a snapshot's state.bin and meta.json", n, snaps)
	}

	// A restored state is written through the same store.
	data, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfg := leader.Raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		t.Fatal(err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: f.AppliedIndex(), Term: 1,
		Configuration: cfg.Configuration(), Size: int64(len(data))}
	if err := leader.Raft.Restore(meta, bytes.NewReader(data), 10*time.Second); err != nil {
		t.Fatalf("restore: %v", err)
	}
	checkPrivate(t, snaps)
}

func TestOpenNarrowsExistingSnapshotModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := consensus.DefaultConfig()
	c.ID, c.Dir, c.BindAddr, c.Bootstrap = "n1", dir, freeAddr(t), true
	open := func() *consensus.Node {
		node, err := consensus.Open(c, fsm.New(), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return node
	}
	// A snapshot written by an older version, with the umask's modes.
	node := open()
	if !poll.Until(10*time.Second, func() bool { return node.Raft.State() == raft.Leader }) {
		t.Fatal("no leader")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := consensus.NewProposer(node.Raft)
	go p.Run(ctx)
	_, err := p.ProposeOne(ctx, submitCmd("j1"))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	node.Close()
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}

	node = open()
	t.Cleanup(func() { node.Close() })
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("raft dir: %v, %v; want mode 700", info.Mode(), err)
	}
	if n := checkPrivate(t, filepath.Join(dir, "snapshots")); n < 2 {
		t.Fatalf("%d snapshot files; want the old snapshot's", n)
	}
}
