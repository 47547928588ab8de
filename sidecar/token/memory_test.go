package token

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

func TestMemoryJanitor(t *testing.T) {
	clock := testkit.NewClock(clockStart)
	m := NewMemory(clock.Now, WithJanitorInterval(5*time.Millisecond))
	defer m.Close()
	ctx := context.Background()
	_, h := mustNew(t)
	_, keep := mustNew(t)
	if err := m.Save(ctx, h, sampleRecord(clock.Now()), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(ctx, keep, sampleRecord(clock.Now()), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ClaimOnce(ctx, "jti", "owner", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Allow(ctx, Limit{Key: "k", Max: 1, Window: time.Second}); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 4 {
		t.Fatalf("Len = %d, want 4", m.Len())
	}
	clock.Advance(time.Minute)
	// Nobody reads: the janitor alone must drop the three expired entries.
	testkit.Await(t, 5*time.Second, "janitor to remove expired entries", func() bool { return m.Len() == 1 })
	if _, err := m.Get(ctx, keep); err != nil {
		t.Fatalf("janitor removed a live token: %v", err)
	}
}

func TestMemoryMaxEntries(t *testing.T) {
	clock := testkit.NewClock(clockStart)
	m := NewMemory(clock.Now, WithMaxEntries(3))
	defer m.Close()
	ctx := context.Background()
	rec := sampleRecord(clock.Now())
	var hashes []string
	for range 3 {
		_, h := mustNew(t)
		hashes = append(hashes, h)
		if err := m.Save(ctx, h, rec, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	_, extra := mustNew(t)
	err := m.Save(ctx, extra, rec, time.Minute)
	if !errors.Is(err, ErrMemoryFull) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "limit 3") {
		t.Fatalf("Save into a full store = %v, want ErrMemoryFull naming the limit", err)
	}
	if ok, err := m.ClaimOnce(ctx, "jti", "owner", time.Minute); ok || !errors.Is(err, ErrMemoryFull) {
		t.Fatalf("ClaimOnce into a full store = %v, %v", ok, err)
	}
	if _, err := m.Allow(ctx, Limit{Key: "k", Max: 5, Window: time.Minute}); !errors.Is(err, ErrMemoryFull) {
		t.Fatalf("Allow into a full store = %v", err)
	}
	// Overwriting an existing key needs no room.
	if err := m.Save(ctx, hashes[0], rec, time.Minute); err != nil {
		t.Fatalf("overwrite in a full store: %v", err)
	}
	// Freed by revocation...
	if ok, _ := m.Revoke(ctx, hashes[1]); !ok {
		t.Fatal("Revoke")
	}
	if err := m.Save(ctx, extra, rec, time.Minute); err != nil {
		t.Fatalf("Save after Revoke: %v", err)
	}
	// ...or by expiry, even before the janitor runs.
	clock.Advance(2 * time.Minute)
	if ok, err := m.ClaimOnce(ctx, "jti", "owner", time.Minute); !ok || err != nil {
		t.Fatalf("ClaimOnce after expiry = %v, %v", ok, err)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d after sweep, want 1", m.Len())
	}
}

func TestMemoryAllowAllOrNothing(t *testing.T) {
	clock := testkit.NewClock(clockStart)
	m := NewMemory(clock.Now, WithMaxEntries(2))
	defer m.Close()
	ctx := context.Background()
	a := Limit{Key: "a", Max: 5, Window: time.Minute}
	if _, err := m.Allow(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := Limit{Key: "b", Max: 5, Window: time.Minute}
	c := Limit{Key: "c", Max: 5, Window: time.Minute}
	if _, err := m.Allow(ctx, a, b, c); !errors.Is(err, ErrMemoryFull) {
		t.Fatalf("Allow needing 2 new entries with room for 1 = %v", err)
	}
	res, err := m.Allow(ctx, a)
	if err != nil || res[0].Remaining != 3 {
		t.Fatalf("counter a changed by the failed call: %+v, %v", res, err)
	}
}

func TestMemoryClose(t *testing.T) {
	m := NewMemory(nil) // nil clock = time.Now
	ctx := context.Background()
	_, h := mustNew(t)
	rec := sampleRecord(time.Now())
	if err := m.Save(ctx, h, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, h); err != nil {
		t.Fatalf("Get with the real clock: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	errs := allOps(t, m, h)
	for op, err := range errs {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", op, err)
		}
	}
}

func TestMemoryConcurrentMixed(t *testing.T) {
	// Run with -race: every operation from many goroutines at once.
	clock := testkit.NewClock(clockStart)
	m := NewMemory(clock.Now, WithJanitorInterval(time.Millisecond))
	defer m.Close()
	ctx := context.Background()
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				_, h, _ := New()
				_ = m.Save(ctx, h, sampleRecord(clock.Now()), time.Second)
				_, _ = m.Get(ctx, h)
				_, _ = m.ClaimOnce(ctx, h, "owner", time.Second)
				_, _ = m.Allow(ctx, Limit{Key: "k", Max: 1000, Window: time.Second})
				if i%3 == g%3 {
					_, _ = m.Revoke(ctx, h)
					_ = m.Unclaim(ctx, h, "owner")
				}
				clock.Advance(time.Millisecond)
			}
		}()
	}
	for range 8 {
		<-done
	}
}
