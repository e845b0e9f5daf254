// Package gctune keeps a floor of heap headroom in a coordinator (and in
// the benchmark's load generator, which shares the machine with one).
//
// With the runtime's default (GOGC=100) the heap may grow to twice the live
// heap before the next collection. A coordinator under load keeps a small
// live heap (tens of megabytes) and allocates fast, so it collected many
// times a second and the collector took about a tenth of its CPU. Giving the heap
// at least Headroom of room before collecting (GOGC above 100 while the live
// heap is small, up to MaxPercent) collects less often; once the live heap
// is larger than Headroom, GOGC is the default 100 again, so a large state
// costs no more memory than before. The extra memory is at most Headroom.
//
// An operator's GOGC in the environment is left alone.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Headroom is the room the heap is given before a collection; MaxPercent
// bounds GOGC when the live heap is tiny.
const (
	Headroom   = 256 << 20
	MaxPercent = 400
)

// Percent is the GOGC that gives a live heap of live bytes headroom bytes
// of room: never below the default 100, never above MaxPercent.
func Percent(live, headroom uint64) int {
	if live == 0 {
		return MaxPercent
	}
	p := headroom * 100 / live
	return int(min(max(p, 100), MaxPercent))
}

// Run adjusts GOGC to the live heap every interval until ctx ends, unless
// GOGC is set in the environment. It returns at once in that case.
func Run(ctx context.Context, interval time.Duration) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := 100
	adjust := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		p := Percent(sample[0].Value.Uint64(), Headroom)
		// Small moves are not worth recomputing the heap goal.
		if p != current && (p*10 > current*11 || p*11 < current*10 || p == 100) {
			debug.SetGCPercent(p)
			current = p
		}
	}
	adjust()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			adjust()
		}
	}
}
