package client

import (
	"context"
	"errors"
	"io"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// restoreChunk is the size of the pieces a snapshot is sent in.
const restoreChunk = 1 << 20

// SaveSnapshot writes the whole replicated state (jobs, applications,
// deploy history, sealed secrets) to w and returns the bytes written. The
// snapshot holds secrets, sealed, and every job's outputs: keep it private.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.SaveSnapshot(ctx, &gv1.SaveSnapshotRequest{})
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		m, err := w.Write(resp.GetData())
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
}

// RestoreSnapshot replaces the state of a new cluster with a snapshot read
// from r to its end, and says how many jobs and applications it held. Run
// it against the leader of the new cluster.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader) (*gv1.RestoreSnapshotResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.RestoreSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	for {
		// A fresh buffer each time: a message sent may still be read.
		buf := make([]byte, restoreChunk)
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&gv1.RestoreSnapshotRequest{Data: buf[:n]}); err != nil {
				break // the answer says why
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	return stream.CloseAndRecv()
}
