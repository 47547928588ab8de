package server

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// Garbage collector pacing (issue #17). With Go's default GOGC=100 the
// collector runs whenever the heap has doubled since the last collection.
// The sidecar's live heap is small — the compiled policy, the route table,
// the token cache: a few MiB for a handful of providers — while every
// proxied request allocates about 10 KB, so at a few thousand requests a
// second it collected ten or more times a second, and the requests that
// overlapped a collection's mark phase made the proxy's p99
// (docs/benchmarks.md). Unless the operator sets GOGC, the sidecar lets
// the heap grow by at least gcHeadroom between two collections: GOGC is
// raised to gcHeadroom/live (at most gcMaxPercent) while the live heap is
// smaller than gcHeadroom, and stays 100 beyond. A GOMEMLIMIT still bounds
// the heap as usual (the collector runs more often near the limit).
const (
	gcHeadroom   = 32 << 20
	gcMaxPercent = 1000
	gcPaceEvery  = 2 * time.Second
)

// gcPacing is set while a server's pacer runs: one per process.
var gcPacing atomic.Bool

// gcPercentFor is the GOGC for a live heap of live bytes: the heap may
// grow by gcHeadroom, or by the live heap when that is more.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	pct := int(min(uint64(gcHeadroom)*100/live, gcMaxPercent))
	return max(pct, 100)
}

// paceGC adjusts GOGC to the live heap every gcPaceEvery until ctx ends,
// then restores the value it found. It does nothing when GOGC is set in the
// environment (the operator's choice) or another server's pacer runs.
func paceGC(ctx context.Context, log *slog.Logger) {
	if os.Getenv("GOGC") != "" || !gcPacing.CompareAndSwap(false, true) {
		return
	}
	defer gcPacing.Store(false)
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	cur := 100
	t := time.NewTicker(gcPaceEvery)
	defer t.Stop()
	for {
		rtmetrics.Read(sample)
		if sample[0].Value.Kind() == rtmetrics.KindUint64 {
			live := sample[0].Value.Uint64()
			// Move only on a change of a quarter or more: the live heap
			// wobbles from one collection to the next.
			if pct := gcPercentFor(live); pct*4 < cur*3 || pct*4 > cur*5 || (pct == 100) != (cur == 100) {
				debug.SetGCPercent(pct)
				log.Debug("garbage collector paced", "gogc", pct, "live_heap_bytes", live)
				cur = pct
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
