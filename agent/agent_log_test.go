package agent

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gantryci/gantry/agent/mask"
	"github.com/gantryci/gantry/internal/limit"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

func TestBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	b := newBucket(100, 250, t0)
	if got := b.take(t0, 200); got != 200 {
		t.Fatalf("take 200 of a full bucket = %d", got)
	}
	if got := b.take(t0, 100); got != 50 {
		t.Fatalf("take 100 of 50 left = %d", got)
	}
	if got := b.take(t0.Add(500*time.Millisecond), 100); got != 50 {
		t.Fatalf("after 0.5s = %d, want 50", got)
	}
	if got := b.take(t0.Add(time.Hour), 1000); got != 250 {
		t.Fatalf("after an hour = %d, want the burst 250", got)
	}
}

var droppedLine = regexp.MustCompile(`\[gantry\] (\d+) bytes of output dropped`)

// dropped sums the bytes the notices of chunks say were dropped.
func dropped(chunks []*gv1.LogChunk) (int, int) {
	total, notices := 0, 0
	for _, c := range chunks {
		if c.Stream != gv1.LogStream_LOG_STREAM_SYSTEM {
			continue
		}
		for _, m := range droppedLine.FindAllStringSubmatch(string(c.Data), -1) {
			n, _ := strconv.Atoi(m[1])
			total += n
			notices++
		}
	}
	return total, notices
}

// TestLogSinkBounds writes through a sink with a fake clock: the burst
// passes, the rest is dropped and said, output resumes at the rate, and no
// chunk exceeds limit.LogChunk.
func TestLogSinkBounds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a := &Agent{cfg: Config{Name: "a1"}, ns: f.ns, js: f.js, log: zaptest.NewLogger(t), logCtx: ctx, logStop: cancel}
	now := time.Unix(1000, 0)
	ref := &gv1.TaskRef{JobId: "j", Task: "flood", Attempt: 1}
	s := newLogSinkClock(a, ref, mask.New([]byte("hidden-value")), func() time.Time { return now })
	write := bytes.Repeat([]byte("x"), limit.LogChunk+1) // a write larger than a chunk
	written := 0
	for range 200 {
		s.Write(gv1.LogStream_LOG_STREAM_STDOUT, write)
		written += len(write)
	}
	now = now.Add(time.Second)
	for range 50 {
		s.Write(gv1.LogStream_LOG_STREAM_STDOUT, write)
		written += len(write)
	}
	s.close()

	chunks := f.logChunks("j", "flood")
	out := 0
	for _, c := range chunks {
		if len(c.Data) > limit.LogChunk {
			t.Errorf("chunk %d: %d bytes, more than %d", c.Seq, len(c.Data), limit.LogChunk)
		}
		if c.Stream == gv1.LogStream_LOG_STREAM_STDOUT {
			out += len(c.Data)
		}
	}
	if want := limit.LogBurst + limit.LogRate; out != want {
		t.Errorf("published %d bytes, want the burst and a second's rate: %d", out, want)
	}
	drop, notices := dropped(chunks)
	if drop != written-out || notices < 2 || notices > 3 { // at most one a second, and at the end
		t.Errorf("notices say %d bytes dropped in %d notices; %d were", drop, notices, written-out)
	}
}

// TestOutputForeverIsBounded runs `yes` until its timeout: what is
// published stays within the rate limit.
func TestOutputForeverIsBounded(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("floods for a second")
	}
	f := newFixture(t)
	f.start(nil)
	as := execTask("j3", "yes", &gv1.ExecSpec{Command: []string{"yes", "gantry"}})
	as.Spec.Timeout = durationpb.New(time.Second)
	if r := f.assign(as); !r.Accepted {
		t.Fatalf("refused: %s", r.Reason)
	}
	rep := f.report("yes")
	if rep.Success || !strings.Contains(rep.Error, "timed out") {
		t.Fatalf("report: %v %q", rep.Success, rep.Error)
	}
	out := published(t, f.logChunks("j3", "yes"))
	elapsed := rep.FinishedAt.AsTime().Sub(rep.StartedAt.AsTime())
	if max := limit.LogBurst + int(elapsed.Seconds()*limit.LogRate) + limit.LogChunk; out > max {
		t.Errorf("published %d bytes in %s, more than the limit allows (%d)", out, elapsed, max)
	}
}

// TestFloodIsDroppedAndCounted prints more than the limit allows, as fast
// as it can: what is published stays within the limit, and the notices
// account for every byte that was not.
func TestFloodIsDroppedAndCounted(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("floods")
	}
	const total = 40 << 20
	f := newFixture(t)
	f.start(nil)
	as := execTask("j4", "flood", &gv1.ExecSpec{Shell: fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x`, total)})
	if r := f.assign(as); !r.Accepted {
		t.Fatalf("refused: %s", r.Reason)
	}
	rep := f.report("flood")
	if !rep.Success {
		t.Fatalf("report: %q", rep.Error)
	}
	chunks := f.logChunks("j4", "flood")
	out := published(t, chunks)
	elapsed := rep.FinishedAt.AsTime().Sub(rep.StartedAt.AsTime())
	if max := limit.LogBurst + int(elapsed.Seconds()*limit.LogRate) + limit.LogChunk; out > max {
		t.Errorf("published %d bytes in %s, more than the limit allows (%d)", out, elapsed, max)
	}
	if drop, _ := dropped(chunks); out+drop != total {
		t.Errorf("published %d and dropped %d bytes, want %d in all", out, drop, total)
	}
}

// published sums a task's stdout and checks every chunk's size.
func published(t *testing.T, chunks []*gv1.LogChunk) int {
	t.Helper()
	out := 0
	for _, c := range chunks {
		if len(c.Data) > limit.LogChunk {
			t.Errorf("chunk %d: %d bytes, more than %d", c.Seq, len(c.Data), limit.LogChunk)
		}
		if c.Stream == gv1.LogStream_LOG_STREAM_STDOUT {
			out += len(c.Data)
		}
	}
	return out
}
