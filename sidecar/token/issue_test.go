package token

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

// issuance is a valid Issuance with one limit and a claim.
func issuance(t *testing.T, e *storeRig, max int, claimKey, owner string) (Issuance, string) {
	t.Helper()
	_, h := mustNew(t)
	iss := Issuance{
		Limits: []Limit{{Key: "exchange:provider:p1", Max: max, Window: time.Minute}},
		Hash:   h, Record: sampleRecord(e.clock.Now()), TTL: time.Minute,
	}
	if claimKey != "" {
		iss.ClaimKey, iss.ClaimOwner, iss.ClaimTTL = claimKey, owner, time.Minute
	}
	return iss, h
}

// runIssueConformance is Issue's behaviour on every store: the same
// outcomes as Allow, then ClaimOnce, then Save, applied together.
func runIssueConformance(t *testing.T, newEnv func(t *testing.T) *storeRig) {
	t.Run("Issue saves, claims and counts", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		iss, h := issuance(t, e, 5, "jti:a", NewClaimOwner())
		res, err := Issue(ctx, e.Store, iss)
		if err != nil || !res.Saved() || len(res.Limits) != 1 || res.Limits[0] != (LimitResult{Allowed: true, Remaining: 4}) {
			t.Fatalf("Issue = %+v, %v", res, err)
		}
		got, err := e.Get(ctx, h)
		if err != nil || !reflectEqual(got, iss.Record) {
			t.Fatalf("Get after Issue = %+v, %v; want %+v", got, err, iss.Record)
		}
		// The claim is held: another owner loses, as with ClaimOnce.
		if ok, err := e.ClaimOnce(ctx, "jti:a", NewClaimOwner(), time.Minute); ok || err != nil {
			t.Fatalf("ClaimOnce after Issue = %v, %v; want held", ok, err)
		}
		// The counter is the one Allow counts.
		lr, err := e.Allow(ctx, iss.Limits...)
		if err != nil || lr[0].Remaining != 3 {
			t.Fatalf("Allow after Issue = %+v, %v; want 3 remaining", lr, err)
		}
		if e.raw != nil {
			pttl, err := e.raw.PTTL(ctx, e.prefix+"tok:"+h).Result()
			if err != nil || pttl <= 0 || pttl > time.Minute {
				t.Fatalf("record PTTL = %s, %v", pttl, err)
			}
			pttl, err = e.raw.PTTL(ctx, e.prefix+"once:jti:a").Result()
			if err != nil || pttl <= 0 || pttl > time.Minute {
				t.Fatalf("claim PTTL = %s, %v", pttl, err)
			}
		}
	})

	t.Run("Issue replayed saves nothing", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		first, _ := issuance(t, e, 100, "jti:r", NewClaimOwner())
		if res, err := Issue(ctx, e.Store, first); err != nil || !res.Saved() {
			t.Fatalf("first Issue = %+v, %v", res, err)
		}
		second, h := issuance(t, e, 100, "jti:r", NewClaimOwner())
		res, err := Issue(ctx, e.Store, second)
		if err != nil || !res.Replayed || res.Limited || res.Saved() {
			t.Fatalf("second Issue = %+v, %v; want Replayed", res, err)
		}
		if _, err := e.Get(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the replay's record: %v, want ErrNotFound", err)
		}
		// The same owner again (a retry after a lost reply) is not a replay.
		retry := first
		_, retry.Hash = mustNew(t)
		if res, err := Issue(ctx, e.Store, retry); err != nil || !res.Saved() {
			t.Fatalf("retry by the claim's owner = %+v, %v; want saved", res, err)
		}
	})

	t.Run("Issue limited claims and saves nothing", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		a, _ := issuance(t, e, 1, "jti:l1", NewClaimOwner())
		if res, err := Issue(ctx, e.Store, a); err != nil || !res.Saved() {
			t.Fatalf("first Issue = %+v, %v", res, err)
		}
		b, h := issuance(t, e, 1, "jti:l2", NewClaimOwner())
		res, err := Issue(ctx, e.Store, b)
		if err != nil || !res.Limited || res.Replayed || res.Saved() {
			t.Fatalf("over the limit: %+v, %v; want Limited", res, err)
		}
		if res.Limits[0].Allowed || res.Limits[0].RetryAfter != 29500*time.Millisecond {
			t.Fatalf("limit result %+v, want refused with RetryAfter 29.5s", res.Limits[0])
		}
		if _, err := e.Get(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the limited record: %v, want ErrNotFound", err)
		}
		// The limited exchange did not burn its OIDC token.
		if ok, err := e.ClaimOnce(ctx, "jti:l2", NewClaimOwner(), time.Minute); !ok || err != nil {
			t.Fatalf("claim of the limited exchange's key = %v, %v; want free", ok, err)
		}
	})

	t.Run("Issue without limits or claim", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		rec := sampleRecord(e.clock.Now())
		rec.Workspaces = nil
		res, err := Issue(ctx, e.Store, Issuance{Hash: h, Record: rec, TTL: time.Minute})
		if err != nil || !res.Saved() || res.Limits != nil {
			t.Fatalf("Issue = %+v, %v", res, err)
		}
		got, err := e.Get(ctx, h)
		if err != nil || got.Workspaces != nil {
			t.Fatalf("Get = %+v, %v; want nil workspaces kept", got, err)
		}
	})

	t.Run("Issue concurrent with one claim key", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		const n = 30
		var saved, replayed, fails atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			iss, _ := issuance(t, e, 1000, "jti:race", NewClaimOwner())
			wg.Go(func() {
				<-start
				res, err := Issue(ctx, e.Store, iss)
				switch {
				case err != nil:
					fails.Add(1)
					t.Errorf("Issue: %v", err)
				case res.Saved():
					saved.Add(1)
				case res.Replayed:
					replayed.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if saved.Load() != 1 || replayed.Load() != n-1 || fails.Load() != 0 {
			t.Fatalf("%d saved, %d replayed, %d errors of %d; want 1 saved", saved.Load(), replayed.Load(), fails.Load(), n)
		}
	})

	t.Run("Issue rejects bad input", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		good, _ := issuance(t, e, 1, "jti:v", NewClaimOwner())
		bad := map[string]func(*Issuance){
			"hash":        func(i *Issuance) { i.Hash = "nothex" },
			"record":      func(i *Issuance) { i.Record = nil },
			"ttl":         func(i *Issuance) { i.TTL = 0 },
			"owner":       func(i *Issuance) { i.ClaimOwner = "" },
			"claim ttl":   func(i *Issuance) { i.ClaimTTL = 0 },
			"limit":       func(i *Issuance) { i.Limits = []Limit{{Key: "k", Max: 0, Window: time.Second}} },
			"epoch twice": func(i *Issuance) { i.EpochKey = "epochs"; r := *i.Record; r.Epoch = 3; i.Record = &r },
		}
		for name, mutate := range bad {
			iss := good
			mutate(&iss)
			if _, err := Issue(ctx, e.Store, iss); err == nil || errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: Issue = %v, want a validation error", name, err)
			}
		}
	})

	t.Run("Issue stamps the epoch", func(t *testing.T) {
		e := newEnv(t)
		if e.raw == nil {
			t.Skip("EpochKey names a Redis hash; the memory store takes Record.Epoch as set")
		}
		ctx := testCtx(t)
		epochs := e.prefix + "epochs"
		iss, h := issuance(t, e, 10, "jti:e1", NewClaimOwner())
		iss.EpochKey = epochs
		// No epoch yet: 0, and no field in the record.
		if res, err := Issue(ctx, e.Store, iss); err != nil || !res.Saved() || iss.Record.Epoch != 0 {
			t.Fatalf("Issue without an epoch = %+v, %v, epoch %d", res, err, iss.Record.Epoch)
		}
		if raw, _ := e.raw.Get(ctx, e.prefix+"tok:"+h).Result(); strings.Contains(raw, "epoch") {
			t.Fatalf("record without an epoch holds one: %s", raw)
		}
		if err := e.raw.HSet(ctx, epochs, iss.Record.ProviderID, "1765000000123").Err(); err != nil {
			t.Fatal(err)
		}
		iss2, h2 := issuance(t, e, 10, "jti:e2", NewClaimOwner())
		iss2.EpochKey = epochs
		if res, err := Issue(ctx, e.Store, iss2); err != nil || !res.Saved() || iss2.Record.Epoch != 1765000000123 {
			t.Fatalf("Issue with an epoch = %+v, %v, epoch %d", res, err, iss2.Record.Epoch)
		}
		got, err := e.Get(ctx, h2)
		if err != nil || got.Epoch != 1765000000123 || !reflectEqual(got, iss2.Record) {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		// A corrupt epoch fails the call (closed), and nothing is saved.
		for _, bad := range []string{"abc", "-1", "007", "1e9", "12345678901234567890"} {
			if err := e.raw.HSet(ctx, epochs, iss.Record.ProviderID, bad).Err(); err != nil {
				t.Fatal(err)
			}
			iss3, h3 := issuance(t, e, 10, "", "")
			iss3.EpochKey = epochs
			if res, err := Issue(ctx, e.Store, iss3); err == nil {
				t.Errorf("epoch %q: Issue = %+v, nil; want an error", bad, res)
			}
			if _, err := e.Get(ctx, h3); !errors.Is(err, ErrNotFound) {
				t.Errorf("epoch %q: the record was saved: %v", bad, err)
			}
		}
	})
}

func reflectEqual(a, b *Record) bool { return fmt.Sprintf("%+v", *a) == fmt.Sprintf("%+v", *b) }

// TestRedisIssueOneRoundTrip: on a single server (and a Sentinel-managed
// primary, the same client) an issuance is one command: the script.
func TestRedisIssueOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	s, clock := newTestRedis(t, srv, RedisOptions{})
	ctx := testCtx(t)
	e := &storeRig{Store: s, clock: clock}
	warm, _ := issuance(t, e, 100, "jti:warm", NewClaimOwner())
	warm.EpochKey = "oidc-sidecar:epochs"
	if _, err := s.Issue(ctx, warm); err != nil { // loads the script (NOSCRIPT → EVAL)
		t.Fatal(err)
	}
	hook := &redistest.Counter{}
	s.Client().AddHook(hook)
	iss, h := issuance(t, e, 100, "jti:one", NewClaimOwner())
	iss.EpochKey = "oidc-sidecar:epochs"
	if res, err := s.Issue(ctx, iss); err != nil || !res.Saved() {
		t.Fatalf("Issue = %+v, %v", res, err)
	}
	if hook.Cmds.Load() != 1 || hook.Pipelines.Load() != 0 {
		t.Fatalf("Issue used %d commands and %d pipelines, want one command", hook.Cmds.Load(), hook.Pipelines.Load())
	}
	if _, err := s.Get(ctx, h); err != nil {
		t.Fatal(err)
	}
	// After SCRIPT FLUSH (a failover to a fresh replica) Issue recovers
	// without counting twice.
	if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	iss, _ = issuance(t, e, 100, "jti:flushed", NewClaimOwner())
	res, err := s.Issue(ctx, iss)
	if err != nil || !res.Saved() || res.Limits[0].Remaining != 97 {
		t.Fatalf("Issue after SCRIPT FLUSH = %+v, %v; want saved with 97 remaining", res, err)
	}
}

// TestRedisClusterIssueTwoRoundTrips: in a Cluster the keys live in
// different slots, so an issuance is one pipeline and one SET.
func TestRedisClusterIssueTwoRoundTrips(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t, 3)
	s, clock := newTestRedis(t, nil, RedisOptions{Addrs: redistest.ClusterAddrs(nodes), KeyPrefix: "c2:"})
	ctx := testCtx(t)
	e := &storeRig{Store: s, clock: clock}
	warm, _ := issuance(t, e, 100, "jti:warm", NewClaimOwner())
	warm.EpochKey = "c2:epochs"
	if _, err := s.Issue(ctx, warm); err != nil {
		t.Fatal(err)
	}
	hook := &redistest.Counter{}
	s.Client().AddHook(hook)
	iss, _ := issuance(t, e, 100, "jti:two", NewClaimOwner())
	iss.EpochKey = "c2:epochs"
	if res, err := s.Issue(ctx, iss); err != nil || !res.Saved() {
		t.Fatalf("Issue = %+v, %v", res, err)
	}
	if hook.Cmds.Load() != 1 || hook.Pipelines.Load() != 1 {
		t.Fatalf("Issue used %d commands and %d pipelines, want 1 and 1", hook.Cmds.Load(), hook.Pipelines.Load())
	}
	var _ = redis.Nil
}
