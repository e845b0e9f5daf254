package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// snapshotChunk is the size of the pieces SaveSnapshot sends, well under
// limit.Message.
const snapshotChunk = 1 << 20

// SaveSnapshot streams the whole replicated state of this replica.
func (s *Server) SaveSnapshot(req *gv1.SaveSnapshotRequest, stream gv1.GantryService_SaveSnapshotServer) error {
	data, err := s.d.FSM.Encode()
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	for len(data) > 0 {
		n := min(snapshotChunk, len(data))
		if err := stream.Send(&gv1.SaveSnapshotResponse{Data: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// RestoreSnapshot replaces the cluster's state with a saved one. Only the
// leader restores; it is meant for a new cluster after a disaster. The
// pieces are spooled to a file in the Raft directory (at most
// limit.Snapshot bytes), checked one element at a time, and handed to Raft
// from the file: the upload is never held whole in memory.
func (s *Server) RestoreSnapshot(stream gv1.GantryService_RestoreSnapshotServer) error {
	if !s.restoring.TryLock() {
		return status.Error(codes.FailedPrecondition, "another snapshot restore is under way on this coordinator")
	}
	defer s.restoring.Unlock()
	f, size, err := spoolSnapshot(stream, s.d.Raft.Dir, limit.Snapshot)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sum, err := verifySnapshot(io.NewSectionReader(f, 0, size), size)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "snapshot: %v", err)
	}
	cfg := s.d.Raft.Raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	meta := &raft.SnapshotMeta{
		Version:       raft.SnapshotVersionMax,
		Index:         sum.applied,
		Term:          1,
		Configuration: cfg.Configuration(),
		Size:          size,
	}
	if err := s.d.Raft.Raft.Restore(meta, io.NewSectionReader(f, 0, size), time.Minute); err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	s.log.Info("state restored from a snapshot", zap.Int("jobs", sum.jobs), zap.Int("apps", sum.apps), zap.Int64("bytes", size))
	return stream.SendAndClose(&gv1.RestoreSnapshotResponse{Jobs: int32(sum.jobs), Apps: int32(sum.apps)})
}

// snapshotSource is what spoolSnapshot reads the pieces from.
type snapshotSource interface {
	Recv() (*gv1.RestoreSnapshotRequest, error)
}

// spoolSnapshot writes the pieces of an uploaded snapshot to a new file in
// dir (mode 0600) and returns it with its size; more than max bytes is an
// error and leaves no file. Errors are gRPC statuses.
func spoolSnapshot(src snapshotSource, dir string, max int64) (*os.File, int64, error) {
	f, err := os.CreateTemp(dir, "restore-*.tmp")
	if err != nil {
		return nil, 0, status.Errorf(codes.Internal, "snapshot spool: %v", err)
	}
	fail := func(err error) (*os.File, int64, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	for {
		c, err := src.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		if size+int64(len(c.GetData())) > max {
			return fail(status.Errorf(codes.InvalidArgument, "snapshot: larger than the limit of %d bytes", max))
		}
		n, err := w.Write(c.GetData())
		size += int64(n)
		if err != nil {
			return fail(status.Errorf(codes.Internal, "snapshot spool: %v", err))
		}
	}
	if err := w.Flush(); err != nil {
		return fail(status.Errorf(codes.Internal, "snapshot spool: %v", err))
	}
	return f, size, nil
}

// snapshotSummary is what verifySnapshot found.
type snapshotSummary struct {
	jobs, apps int
	applied    uint64
}

// verifySnapshot checks an encoded gv1.Snapshot of size bytes one
// top-level field at a time: each field alone is a valid snapshot, so
// fsm.Decode checks it, and only one job or application is in memory at
// once.
func verifySnapshot(r io.Reader, size int64) (snapshotSummary, error) {
	var sum snapshotSummary
	appliedField := (&gv1.Snapshot{}).ProtoReflect().Descriptor().Fields().ByName("applied_index").Number()
	br := bufio.NewReader(r)
	for i := 0; ; i++ {
		tag, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return sum, nil
		}
		if err != nil {
			return sum, fmt.Errorf("element %d: tag: %w", i, err)
		}
		num, typ := protowire.DecodeTag(tag)
		if !num.IsValid() {
			return sum, fmt.Errorf("element %d: invalid field number %d", i, tag>>3)
		}
		elem := protowire.AppendTag(nil, num, typ)
		switch typ {
		case protowire.VarintType:
			v, err := binary.ReadUvarint(br)
			if err != nil {
				return sum, fmt.Errorf("element %d: %w", i, unexpected(err))
			}
			elem = protowire.AppendVarint(elem, v)
		case protowire.Fixed32Type, protowire.Fixed64Type:
			n := 4
			if typ == protowire.Fixed64Type {
				n = 8
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				return sum, fmt.Errorf("element %d: %w", i, unexpected(err))
			}
			elem = append(elem, b...)
		case protowire.BytesType:
			n, err := binary.ReadUvarint(br)
			if err != nil {
				return sum, fmt.Errorf("element %d: length: %w", i, unexpected(err))
			}
			if n > uint64(size) {
				return sum, fmt.Errorf("element %d: length %d is past the end of the snapshot", i, n)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(br, b); err != nil {
				return sum, fmt.Errorf("element %d: %w", i, unexpected(err))
			}
			elem = protowire.AppendBytes(elem, b)
		default:
			return sum, fmt.Errorf("element %d: unsupported wire type %d", i, typ)
		}
		snap, err := fsm.Decode(elem)
		if err != nil {
			return sum, fmt.Errorf("element %d: %w", i, err)
		}
		sum.jobs += len(snap.GetJobs())
		sum.apps += len(snap.GetApps())
		if num == appliedField {
			sum.applied = snap.GetAppliedIndex()
		}
	}
}

// unexpected turns the end of the input inside an element into an error
// that says so.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
