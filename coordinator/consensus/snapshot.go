package consensus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Raft's snapshots hold the whole state (sealed secrets, every job's
// outputs), so they are the owner's alone: the Raft directory and the
// snapshot directories are 0700 and their files 0600. raft's
// FileSnapshotStore creates them with the process umask (0755 and 0644
// usually); privateSnapshots narrows the modes as soon as the files
// exist, before any state is written to them.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600

	// snapshotsDir is where raft.FileSnapshotStore keeps its snapshots
	// under its base directory (raft's snapPath).
	snapshotsDir = "snapshots"
	// tmpSuffix marks a snapshot still being written (raft's tmpSuffix).
	tmpSuffix = ".tmp"
)

// privateSnapshots is a raft.FileSnapshotStore whose files only the owner
// can read.
type privateSnapshots struct {
	*raft.FileSnapshotStore
	dir string // the snapshots directory
}

// openSnapshots opens the file snapshot store under base, keeping retain
// snapshots, and narrows the modes of the snapshots already there.
func openSnapshots(base string, retain int, log hclog.Logger) (*privateSnapshots, error) {
	store, err := raft.NewFileSnapshotStoreWithLogger(base, retain, log)
	if err != nil {
		return nil, err
	}
	s := &privateSnapshots{FileSnapshotStore: store, dir: filepath.Join(base, snapshotsDir)}
	if err := restrictTree(s.dir); err != nil {
		return nil, fmt.Errorf("snapshot modes: %w", err)
	}
	return s, nil
}

// Create starts a snapshot whose directory and files only the owner can
// read.
func (s *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.dir, sink.ID()+tmpSuffix)
	if err := restrictTree(dir); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("snapshot %s modes: %w", sink.ID(), err)
	}
	// The state file opened again, for its write-back only.
	f, err := os.Open(filepath.Join(dir, stateFile))
	if err != nil {
		return sink, nil // written as raft writes it, synced at the end
	}
	return &smoothSink{SnapshotSink: sink, f: f}, nil
}

// stateFile is the file of a snapshot that holds the state (raft's
// stateFilePath).
const stateFile = "state.bin"

// writeBehindBytes is how much of a snapshot is written before its
// write-back is started. Measured here while 210 MB were written and
// synced beside a log appending and syncing every 2 ms: the log's sync
// p99 / max were 66-124 / 185-251 ms written at once, 30-35 / 66-137 ms
// with 4 MB ranges, 12.5-12.7 / 123-126 ms with 1 MB.
const writeBehindBytes = 1 << 20

// smoothSink writes a snapshot's state back to disk as it is written, a
// megabyte at a time, instead of all at once when raft syncs it at
// the end. A large snapshot synced at once (210 MB with a million
// retained jobs) held the Raft log's own syncs on the same disk behind it:
// every write paused while a snapshot was saved, longer the larger the
// state.
type smoothSink struct {
	raft.SnapshotSink
	f       *os.File
	written int64 // bytes written
	started int64 // bytes whose write-back has been started
}

func (s *smoothSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	s.written += int64(n)
	// raft buffers what it is given; what reached the file is at
	// least the bytes written less its buffer.
	for s.written-s.started >= 2*writeBehindBytes {
		writeBehind(s.f, s.started, writeBehindBytes)
		s.started += writeBehindBytes
	}
	return n, err
}

func (s *smoothSink) Close() error {
	defer s.f.Close()
	return s.SnapshotSink.Close()
}

func (s *smoothSink) Cancel() error {
	defer s.f.Close()
	return s.SnapshotSink.Cancel()
}

// restrictTree makes dir and every directory below it 0700 and every file
// 0600; a missing dir is no error.
func restrictTree(dir string) error {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fileMode
		if d.IsDir() {
			mode = dirMode
		}
		return os.Chmod(path, mode)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
