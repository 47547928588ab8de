package server

import (
	"context"
	"log/slog"
	"os"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// TestGCPercentFor: the heap may grow by gcHeadroom between collections
// while the live heap is smaller, by the live heap (Go's default, 100)
// beyond, and never by more than gcMaxPercent of it.
func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcMaxPercent},
		{1 << 20, gcMaxPercent},       // 32 MiB / 1 MiB = 3200 %, capped
		{4 << 20, 800},                // 32 MiB of growth on 4 MiB
		{16 << 20, 200},               //
		{32 << 20, 100},               // as Go's default from here on
		{300 << 20, 100},              // never below the default
		{gcHeadroom * 100 / 999, 999}, // just under the cap
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestPaceGC: without GOGC in the environment the pacer raises GOGC for
// this test binary's small heap, and restores Go's value when its context
// ends.
func TestPaceGC(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the pacer leaves the collector alone")
	}
	if gcPacing.Load() {
		t.Skip("another server's pacer runs in this process")
	}
	gogc := func() uint64 {
		s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
		rtmetrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := gogc()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); paceGC(ctx, slog.New(slog.DiscardHandler)) }()
	testkit.Await(t, 10*time.Second, "GOGC raised", func() bool { return gogc() > 100 })
	cancel()
	<-done
	if got := gogc(); got != before {
		t.Errorf("GOGC %d after the pacer stopped, want %d as before", got, before)
	}
}
