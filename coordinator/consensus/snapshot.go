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
	if err := restrictTree(filepath.Join(s.dir, sink.ID()+tmpSuffix)); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("snapshot %s modes: %w", sink.ID(), err)
	}
	return sink, nil
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
