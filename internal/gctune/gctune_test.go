package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, MaxPercent},
		{1 << 20, MaxPercent}, // tiny heap: capped
		{128 << 20, 200},      // 128 MiB live: 256 MiB of room
		{200 << 20, 128},      // 256 MiB of room is 128 %
		{Headroom, 100},       // as large as the headroom: the default
		{4 << 30, 100},        // never below the default
	} {
		if got := Percent(c.live, Headroom); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// Run raises GOGC for a small heap, and leaves an operator's GOGC alone.
// (Not parallel: GOGC is the process's.)
func TestRunRespectsTheEnvironment(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // one adjustment, then Run returns

	t.Setenv("GOGC", "100")
	Run(ctx, time.Hour)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 in the environment, GOGC became %d", got)
	}

	os.Unsetenv("GOGC") // t.Setenv restores it
	Run(ctx, time.Hour)
	if got := debug.SetGCPercent(100); got != MaxPercent {
		t.Errorf("a test's small heap: GOGC %d, want %d", got, MaxPercent)
	}
}
