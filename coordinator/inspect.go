package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/gantryci/gantry/coordinator/consensus"
	"github.com/gantryci/gantry/coordinator/consensus/seglog"
	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Inspection is the replicated state a stopped coordinator's data
// directory holds: its newest Raft snapshot with the log entries after it
// applied, as the node would apply them at its next start. Replicas that
// stopped at the same AppliedIndex must have the same StateSHA256.
type Inspection struct {
	DataDir string          `json:"data_dir"`
	Store   consensus.Store `json:"raft_store"`
	// The snapshot restored (empty ID: none, the log from its start).
	SnapshotID    string `json:"snapshot_id,omitempty"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	SnapshotTerm  uint64 `json:"snapshot_term"`
	// The log store's entries (zero when empty) and the term of its last.
	FirstLogIndex uint64 `json:"first_log_index"`
	LastLogIndex  uint64 `json:"last_log_index"`
	LastLogTerm   uint64 `json:"last_log_term"`
	// Command entries applied after the snapshot.
	CommandsApplied uint64 `json:"commands_applied"`
	// AppliedIndex is the index of the last command entry in the state
	// (no-op and configuration entries never reach it): compare replicas
	// at equal AppliedIndex.
	AppliedIndex uint64 `json:"applied_index"`
	// StateSHA256 is the SHA-256 of the state's encoding (fsm.Encode, as
	// in Raft snapshots; deterministic), hex.
	StateSHA256 string `json:"state_sha256"`
	Jobs        int    `json:"jobs"`
}

// Inspect reads the Raft state of the coordinator whose --data-dir is
// dataDir (or of its Raft directory, DATA/raft) without changing it: the
// log store and snapshots are copied to a temporary directory, under a
// shared lock that a running coordinator's lock excludes, and read there.
// Every log entry after the snapshot is applied, including a tail a
// stopped node may hold uncommitted: AppliedIndex says how far it went.
func Inspect(dataDir string) (*Inspection, error) {
	raftDir := filepath.Join(dataDir, "raft")
	if !exists(raftDir) && (exists(filepath.Join(dataDir, "raft.db")) || exists(filepath.Join(dataDir, "wal"))) {
		raftDir = dataDir
	}
	in := &Inspection{DataDir: dataDir}
	bolt, walDir, segDir := filepath.Join(raftDir, "raft.db"), filepath.Join(raftDir, "wal"), filepath.Join(raftDir, consensus.SegmentsDir)
	switch {
	case exists(segDir):
		// raft.db holds the term and vote, and a log not moved yet.
		in.Store = consensus.StoreSegments
	case exists(bolt) && exists(walDir):
		return nil, fmt.Errorf("%s holds both a bolt log store (raft.db) and a wal one (wal/): which one the coordinator uses is its --raft-store", raftDir)
	case exists(bolt):
		in.Store = consensus.StoreBolt
	case exists(walDir):
		in.Store = consensus.StoreWAL
	default:
		return nil, fmt.Errorf("%s: no Raft log store (raft.db or wal/): not a coordinator's data directory", raftDir)
	}

	tmp, err := os.MkdirTemp("", "gantry-inspect-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := copyRaftDir(raftDir, tmp, in.Store); err != nil {
		return nil, err
	}

	var logs raft.LogStore
	switch in.Store {
	case consensus.StoreSegments:
		b, err := raftboltdb.NewBoltStore(filepath.Join(tmp, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("open bolt store: %w", err)
		}
		defer b.Close()
		if last, _ := b.LastIndex(); last > 0 {
			return nil, fmt.Errorf("%s: the log is being moved from raft.db to %s: start the coordinator once first", raftDir, consensus.SegmentsDir)
		}
		s, err := seglog.Open(filepath.Join(tmp, consensus.SegmentsDir))
		if err != nil {
			return nil, fmt.Errorf("open log segments: %w", err)
		}
		defer s.Close()
		logs = s
	case consensus.StoreBolt:
		b, err := raftboltdb.NewBoltStore(filepath.Join(tmp, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("open bolt store: %w", err)
		}
		defer b.Close()
		logs = b
	default:
		// raft-wal's Close leaves the meta database open: close it too.
		meta := &metadb.BoltMetaDB{}
		defer meta.Close()
		w, err := wal.Open(filepath.Join(tmp, "wal"), wal.WithLogger(hclog.NewNullLogger()), wal.WithMetaStore(meta))
		if err != nil {
			return nil, fmt.Errorf("open wal: %w", err)
		}
		defer w.Close()
		logs = w
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(tmp, 1, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("open snapshots: %w", err)
	}
	f := fsm.New()
	if err := in.restore(f, snaps); err != nil {
		return nil, err
	}
	if err := in.replay(f, logs); err != nil {
		return nil, err
	}
	data, err := f.Encode()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	in.StateSHA256 = hex.EncodeToString(sum[:])
	in.AppliedIndex = f.AppliedIndex()
	// The count, without decoding every retained job.
	_, in.Jobs, _ = f.JobsPage(nil, 1, 0, gv1.JobView_JOB_VIEW_FULL)
	return in, nil
}

// restore restores the newest snapshot that opens into f, as Raft does at
// start (falling back to older ones).
func (in *Inspection) restore(f *fsm.FSM, snaps *raft.FileSnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	var errs []error
	for _, m := range list {
		meta, rc, err := snaps.Open(m.ID)
		if err == nil {
			err = f.Restore(rc) // closes rc
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", m.ID, err))
			continue
		}
		in.SnapshotID, in.SnapshotIndex, in.SnapshotTerm = meta.ID, meta.Index, meta.Term
		return nil
	}
	if len(errs) > 0 {
		return fmt.Errorf("no snapshot could be restored: %w", errors.Join(errs...))
	}
	return nil
}

// replay applies the log entries after the snapshot through the FSM's own
// Apply, which takes command entries and leaves the others.
func (in *Inspection) replay(f *fsm.FSM, logs raft.LogStore) (err error) {
	if in.FirstLogIndex, err = logs.FirstIndex(); err != nil {
		return fmt.Errorf("raft log: %w", err)
	}
	if in.LastLogIndex, err = logs.LastIndex(); err != nil {
		return fmt.Errorf("raft log: %w", err)
	}
	if in.LastLogIndex > 0 {
		var last raft.Log
		if err := logs.GetLog(in.LastLogIndex, &last); err != nil {
			return fmt.Errorf("raft log entry %d: %w", in.LastLogIndex, err)
		}
		in.LastLogTerm = last.Term
	}
	from := in.SnapshotIndex + 1
	if in.LastLogIndex < from {
		return nil // everything is in the snapshot
	}
	if in.FirstLogIndex > from {
		return fmt.Errorf("raft log starts at %d, but the state needs entries from %d (snapshot %d): entries are missing", in.FirstLogIndex, from, in.SnapshotIndex)
	}
	var l raft.Log
	defer func() {
		// Apply panics on an entry it cannot decode or a command type this
		// build does not know: report it as this entry's error.
		if p := recover(); p != nil {
			err = fmt.Errorf("apply log entry %d: %v", l.Index, p)
		}
	}()
	for i := from; i <= in.LastLogIndex; i++ {
		l = raft.Log{}
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("raft log entry %d: %w", i, err)
		}
		f.Apply(&l)
		if l.Type == raft.LogCommand {
			in.CommandsApplied++
		}
	}
	return nil
}

// copyRaftDir copies the log store and the snapshots of the Raft directory
// src into dst while holding a shared lock on the store's bolt file (the
// log itself, the term and vote beside the segments, or raft-wal's meta
// database): a coordinator using it holds
// an exclusive one, so the copy is never taken from a running node, and
// a coordinator starting meanwhile waits for the copy.
func copyRaftDir(src, dst string, store consensus.Store) error {
	lockPath := filepath.Join(src, "raft.db")
	if store == consensus.StoreWAL {
		lockPath = filepath.Join(src, "wal", metadb.FileName)
	}
	lock, err := os.Open(lockPath)
	if err != nil {
		return err
	}
	defer lock.Close() // releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s is locked: a coordinator is running on this data directory; stop it first", lockPath)
		}
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	switch store {
	case consensus.StoreBolt:
		if err := copyFile(lockPath, filepath.Join(dst, "raft.db")); err != nil {
			return err
		}
	case consensus.StoreSegments:
		if err := copyFile(lockPath, filepath.Join(dst, "raft.db")); err != nil {
			return err
		}
		if err := copyTree(filepath.Join(src, consensus.SegmentsDir), filepath.Join(dst, consensus.SegmentsDir)); err != nil {
			return err
		}
	default:
		if err := copyTree(filepath.Join(src, "wal"), filepath.Join(dst, "wal")); err != nil {
			return err
		}
	}
	snaps := filepath.Join(src, "snapshots")
	if !exists(snaps) {
		return nil
	}
	return copyTree(snaps, filepath.Join(dst, "snapshots"))
}

// copyTree copies the directories and regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o700)
		case d.Type().IsRegular():
			return copyFile(path, to)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
