package consensus

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A snapshot written back as it is written reads back whole, and the
// write-back ran (the state file was found and ranges were started).
func TestSnapshotWriteBehind(t *testing.T) {
	t.Parallel()
	store, err := openSnapshots(t.TempDir(), 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(raft.SnapshotVersionMax, 10, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	smooth, ok := sink.(*smoothSink)
	if !ok {
		t.Fatalf("sink is %T; want the write-behind sink (state file not found?)", sink)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]byte, 5*writeBehindBytes+12345)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(300_000))
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if smooth.started < 3*writeBehindBytes {
		t.Errorf("write-back started for %d of %d bytes; want at least %d", smooth.started, len(want), 3*writeBehindBytes)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, not the %d written", len(got), len(want))
	}
}
