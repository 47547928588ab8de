package token

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// clockStart is where the tests' clocks start: mid-window for any window
// that divides a minute, so tests never start on a boundary.
var clockStart = time.Date(2030, 1, 2, 3, 4, 30, 500_000_000, time.UTC)

// storeRig is one Store under test plus what the conformance suite needs to
// observe it.
type storeRig struct {
	Store
	// clock drives the store's notion of "now" (rate-limit windows, ExpiresAt
	// checks; for memory also native expiry).
	clock *testkit.Clock
	// raw is a direct client to the Redis behind the store (a cluster
	// client for a cluster); nil for memory.
	raw    redis.UniversalClient
	prefix string
	// elapse lets d pass for the store's native expiry and then waits, with a
	// bounded poll, until cond holds. Memory advances the fake clock; Redis
	// waits in real time (the server owns the TTL).
	elapse func(t *testing.T, d time.Duration, cond func() bool)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sampleRecord(now time.Time) *Record {
	return &Record{
		ProviderID:   "550e8400-e29b-41d4-a716-446655440000",
		ProviderName: "GHA - octo-repo:deploy",
		Subject:      "repo:octo-org/octo-repo:ref:refs/heads/main",
		Issuer:       "https://token.actions.githubusercontent.com",
		Claims: map[string]string{
			"repository": "octo-org/octo-repo",
			"ref":        "refs/heads/main",
			"workflow":   "deploy",
			"actor":      "octocat",
		},
		Scopes:         []string{"WORKSPACE", "EXECUTION_RUN"},
		Workspaces:     []string{"my-company"},
		IPRestrictions: []string{"203.0.113.0/24"},
		IssuedAt:       now.Unix(),
		ExpiresAt:      now.Add(10 * time.Minute).Unix(),
		DecisionID:     "4ca636c1-55e4-417a-b1d8-4aceb67960d1",
	}
}

func mustNew(t testing.TB) (string, string) {
	t.Helper()
	tok, h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return tok, h
}

// runStoreConformance is the behaviour every Store must have. newEnv returns a
// fresh, empty store for each subtest.
func runStoreConformance(t *testing.T, newEnv func(t *testing.T) *storeRig) {
	t.Run("Kind and Ping", func(t *testing.T) {
		e := newEnv(t)
		if k := e.Kind(); k != "redis" && k != "memory" {
			t.Errorf("Kind = %q", k)
		}
		if err := e.Ping(testCtx(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("Save and Get", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		rec := sampleRecord(e.clock.Now())
		const ttl = 10 * time.Minute
		if err := e.Save(ctx, h, rec, ttl); err != nil {
			t.Fatalf("Save: %v", err)
		}
		got, err := e.Get(ctx, h)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("Get = %+v\nwant  %+v", got, rec)
		}
		// Callers own the returned record.
		got.Scopes[0] = "CHANGED"
		got.Claims["ref"] = "CHANGED"
		again, _ := e.Get(ctx, h)
		if again.Scopes[0] != "WORKSPACE" || again.Claims["ref"] != "refs/heads/main" {
			t.Fatal("mutating a returned record changed the stored one")
		}
		if e.raw != nil {
			key := e.prefix + "tok:" + h
			pttl, err := e.raw.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if pttl <= 0 || pttl > ttl {
				t.Fatalf("PTTL %s = %s, want native expiry in (0, %s]", key, pttl, ttl)
			}
			val, err := e.raw.Get(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"provider_id":"550e8400-e29b-41d4-a716-446655440000",`; val[:len(want)] != want {
				t.Fatalf("stored value is not compact JSON: %s", val)
			}
		}
	})

	t.Run("Save overwrites", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		rec := sampleRecord(e.clock.Now())
		if err := e.Save(ctx, h, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		rec2 := sampleRecord(e.clock.Now())
		rec2.Subject = "other"
		if err := e.Save(ctx, h, rec2, time.Hour); err != nil {
			t.Fatal(err)
		}
		if got, err := e.Get(ctx, h); err != nil || got.Subject != "other" {
			t.Fatalf("Get after overwrite = %v, %v", got, err)
		}
	})

	t.Run("native expiry", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		rec := sampleRecord(e.clock.Now())
		rec.ExpiresAt = e.clock.Now().Add(24 * time.Hour).Unix() // only the store TTL applies
		const ttl = 300 * time.Millisecond
		if err := e.Save(ctx, h, rec, ttl); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Get(ctx, h); err != nil {
			t.Fatalf("Get before expiry: %v", err)
		}
		e.elapse(t, ttl, func() bool {
			_, err := e.Get(ctx, h)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get while expiring: %v", err)
			}
			return errors.Is(err, ErrNotFound)
		})
		if e.raw != nil {
			if n, err := e.raw.Exists(ctx, e.prefix+"tok:"+h).Result(); err != nil || n != 0 {
				t.Fatalf("key still exists after expiry: n=%d err=%v", n, err)
			}
		}
		if ok, err := e.Revoke(ctx, h); err != nil || ok {
			t.Fatalf("Revoke of an expired token = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("ExpiresAt is checked on read", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		now := e.clock.Now()

		_, past := mustNew(t)
		rec := sampleRecord(now)
		rec.ExpiresAt = now.Unix() - 1
		if err := e.Save(ctx, past, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Get(ctx, past); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of record past exp = %v, want ErrNotFound", err)
		}

		_, future := mustNew(t)
		rec = sampleRecord(now)
		rec.ExpiresAt = now.Unix() + 60
		if err := e.Save(ctx, future, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Get(ctx, future); err != nil {
			t.Fatalf("Get before exp: %v", err)
		}
		e.clock.Advance(60 * time.Second) // now == exp: no longer valid (JWT semantics)
		if _, err := e.Get(ctx, future); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get at exp = %v, want ErrNotFound", err)
		}
	})

	t.Run("unknown and malformed hashes", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		for _, hash := range []string{h, "", "not-a-hash", "*", h[:63]} {
			_, err := e.Get(ctx, hash)
			if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
				t.Errorf("Get(%q) = %v, want ErrNotFound", hash, err)
			}
			if ok, err := e.Revoke(ctx, hash); ok || err != nil {
				t.Errorf("Revoke(%q) = %v, %v", hash, ok, err)
			}
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		_, other := mustNew(t)
		for _, x := range []string{h, other} {
			if err := e.Save(ctx, x, sampleRecord(e.clock.Now()), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		ok, err := e.Revoke(ctx, h)
		if err != nil || !ok {
			t.Fatalf("Revoke = %v, %v; want true", ok, err)
		}
		if _, err := e.Get(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Revoke = %v", err)
		}
		if ok, err := e.Revoke(ctx, h); err != nil || ok {
			t.Fatalf("second Revoke = %v, %v; want false", ok, err)
		}
		if _, err := e.Get(ctx, other); err != nil {
			t.Fatalf("Revoke removed another token: %v", err)
		}
	})

	t.Run("ClaimOnce and Unclaim", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		const key = "jti:https://issuer.example:abc-123"
		owner := NewClaimOwner()
		for i, want := range []bool{true, false, false} {
			o := owner
			if i > 0 {
				o = NewClaimOwner() // replays come with other owners
			}
			got, err := e.ClaimOnce(ctx, key, o, time.Hour)
			if err != nil || got != want {
				t.Fatalf("ClaimOnce #%d = %v, %v; want %v", i+1, got, err, want)
			}
		}
		if got, _ := e.ClaimOnce(ctx, key+"-other", NewClaimOwner(), time.Hour); !got {
			t.Fatal("ClaimOnce of a different key = false")
		}
		if err := e.Unclaim(ctx, key, owner); err != nil {
			t.Fatalf("Unclaim: %v", err)
		}
		if err := e.Unclaim(ctx, "never-claimed", owner); err != nil {
			t.Fatalf("Unclaim of a missing key: %v", err)
		}
		owner2 := NewClaimOwner()
		if got, err := e.ClaimOnce(ctx, key, owner2, time.Hour); err != nil || !got {
			t.Fatalf("ClaimOnce after Unclaim = %v, %v; want true", got, err)
		}
		if e.raw != nil {
			pttl, err := e.raw.PTTL(ctx, e.prefix+"once:"+key).Result()
			if err != nil || pttl <= 0 || pttl > time.Hour {
				t.Fatalf("PTTL of claim = %s, %v", pttl, err)
			}
			if v, err := e.raw.Get(ctx, e.prefix+"once:"+key).Result(); err != nil || v != owner2 {
				t.Fatalf("claim value = %q, %v; want the owner %q", v, err, owner2)
			}
		}
	})

	t.Run("Unclaim by another owner keeps the claim", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		const key = "jti:owned"
		owner := NewClaimOwner()
		if got, err := e.ClaimOnce(ctx, key, owner, time.Hour); err != nil || !got {
			t.Fatalf("ClaimOnce = %v, %v", got, err)
		}
		// A stale or foreign release (e.g. an exchange whose claim lost to
		// this one) must not free the key.
		if err := e.Unclaim(ctx, key, NewClaimOwner()); err != nil {
			t.Fatalf("Unclaim with another owner: %v", err)
		}
		if got, err := e.ClaimOnce(ctx, key, NewClaimOwner(), time.Hour); err != nil || got {
			t.Fatalf("ClaimOnce after a foreign Unclaim = %v, %v; want false (still claimed)", got, err)
		}
		if e.raw != nil {
			if v, err := e.raw.Get(ctx, e.prefix+"once:"+key).Result(); err != nil || v != owner {
				t.Fatalf("claim value = %q, %v; want the owner %q", v, err, owner)
			}
		}
		// The owner's release works.
		if err := e.Unclaim(ctx, key, owner); err != nil {
			t.Fatalf("Unclaim by the owner: %v", err)
		}
		if e.raw != nil {
			if n, err := e.raw.Exists(ctx, e.prefix+"once:"+key).Result(); err != nil || n != 0 {
				t.Fatalf("claim key still exists after the owner's Unclaim: %d, %v", n, err)
			}
		}
		if got, err := e.ClaimOnce(ctx, key, NewClaimOwner(), time.Hour); err != nil || !got {
			t.Fatalf("ClaimOnce after the owner's Unclaim = %v, %v; want true", got, err)
		}
		// A release after the key has passed to someone else does nothing.
		if err := e.Unclaim(ctx, key, owner); err != nil {
			t.Fatalf("late Unclaim by the former owner: %v", err)
		}
		if got, err := e.ClaimOnce(ctx, key, NewClaimOwner(), time.Hour); err != nil || got {
			t.Fatalf("ClaimOnce after the former owner's late Unclaim = %v, %v; want false", got, err)
		}
	})

	t.Run("ClaimOnce retried by its owner", func(t *testing.T) {
		// A claim whose reply was lost and that is sent again (go-redis
		// retries after a connection error) must not read as a replay.
		e := newEnv(t)
		ctx := testCtx(t)
		owner := NewClaimOwner()
		for i := range 2 {
			if got, err := e.ClaimOnce(ctx, "retried", owner, time.Hour); err != nil || !got {
				t.Fatalf("ClaimOnce #%d by the same owner = %v, %v; want true", i+1, got, err)
			}
		}
		if got, err := e.ClaimOnce(ctx, "retried", NewClaimOwner(), time.Hour); err != nil || got {
			t.Fatalf("ClaimOnce by another owner = %v, %v; want false", got, err)
		}
	})

	t.Run("ClaimOnce expires", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		const ttl = 200 * time.Millisecond
		if got, err := e.ClaimOnce(ctx, "k", NewClaimOwner(), ttl); err != nil || !got {
			t.Fatalf("ClaimOnce = %v, %v", got, err)
		}
		e.elapse(t, ttl, func() bool {
			got, err := e.ClaimOnce(ctx, "k", NewClaimOwner(), ttl)
			if err != nil {
				t.Fatalf("ClaimOnce: %v", err)
			}
			return got
		})
	})

	t.Run("ClaimOnce concurrent", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		const n = 50
		var wins, fails atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				ok, err := e.ClaimOnce(ctx, "race", NewClaimOwner(), time.Minute)
				if err != nil {
					fails.Add(1)
					t.Errorf("ClaimOnce: %v", err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || fails.Load() != 0 {
			t.Fatalf("%d of %d concurrent claims won (%d errors), want exactly 1", wins.Load(), n, fails.Load())
		}
	})

	t.Run("Allow fixed window", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		l := Limit{Key: "exchange:provider-1", Max: 3, Window: time.Minute}
		for i := range 3 {
			res, err := e.Allow(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			want := LimitResult{Allowed: true, Remaining: 2 - i}
			if len(res) != 1 || res[0] != want {
				t.Fatalf("hit %d: %+v, want %+v", i+1, res, want)
			}
		}
		res, err := e.Allow(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		// The fake clock is at :30.5 in the minute, so 29.5s remain.
		if res[0].Allowed || res[0].Remaining != 0 || res[0].RetryAfter != 29500*time.Millisecond {
			t.Fatalf("hit 4: %+v, want denied with RetryAfter 29.5s", res[0])
		}
		e.clock.Advance(29 * time.Second)
		res, _ = e.Allow(ctx, l)
		if res[0].Allowed || res[0].RetryAfter != 500*time.Millisecond {
			t.Fatalf("same window later: %+v", res[0])
		}
		e.clock.Advance(500 * time.Millisecond) // next window
		res, _ = e.Allow(ctx, l)
		if want := (LimitResult{Allowed: true, Remaining: 2}); res[0] != want {
			t.Fatalf("next window: %+v, want %+v", res[0], want)
		}
		if e.raw != nil {
			idx, _ := window(e.clock.Now(), time.Minute)
			key := fmt.Sprintf("%srl:%s:%d", e.prefix, l.Key, idx)
			pttl, err := e.raw.PTTL(ctx, key).Result()
			if err != nil || pttl <= 0 || pttl > time.Minute {
				t.Fatalf("PTTL %s = %s, %v; want in (0, 1m]", key, pttl, err)
			}
		}
	})

	t.Run("Allow several limits", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		perProvider := Limit{Key: "p:1", Max: 5, Window: time.Minute}
		perIP := Limit{Key: "ip:203.0.113.7", Max: 1, Window: time.Second}
		res, err := e.Allow(ctx, perProvider, perIP)
		if err != nil || len(res) != 2 {
			t.Fatalf("Allow = %v, %v", res, err)
		}
		if !res[0].Allowed || res[0].Remaining != 4 || !res[1].Allowed || res[1].Remaining != 0 {
			t.Fatalf("first: %+v", res)
		}
		res, _ = e.Allow(ctx, perProvider, perIP)
		if !res[0].Allowed || res[0].Remaining != 3 || res[1].Allowed || res[1].RetryAfter != 500*time.Millisecond {
			t.Fatalf("second: %+v", res)
		}
		if res, err := e.Allow(ctx); err != nil || len(res) != 0 {
			t.Fatalf("Allow() = %v, %v", res, err)
		}
	})

	t.Run("Allow rejects bad limits", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		for _, l := range []Limit{{Key: "", Max: 1, Window: time.Second}, {Key: "k", Max: 0, Window: time.Second}, {Key: "k", Max: 1, Window: 0}} {
			if _, err := e.Allow(ctx, l); err == nil || errors.Is(err, ErrUnavailable) {
				t.Errorf("Allow(%+v) = %v, want a validation error", l, err)
			}
		}
	})

	t.Run("nil vs empty slices round-trip", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		now := e.clock.Now()
		cases := map[string]*Record{
			"nil workspaces (all)":  {Scopes: []string{"WORKSPACE"}, Workspaces: nil, ExpiresAt: now.Unix() + 60},
			"empty workspaces":      {Scopes: []string{"WORKSPACE"}, Workspaces: []string{}, ExpiresAt: now.Unix() + 60},
			"nil scopes and claims": {ExpiresAt: now.Unix() + 60},
		}
		for name, rec := range cases {
			_, h := mustNew(t)
			if err := e.Save(ctx, h, rec, time.Hour); err != nil {
				t.Fatal(err)
			}
			got, err := e.Get(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Workspaces == nil) != (rec.Workspaces == nil) || len(got.Workspaces) != len(rec.Workspaces) {
				t.Errorf("%s: Workspaces %#v, want %#v", name, got.Workspaces, rec.Workspaces)
			}
			if !reflect.DeepEqual(got, rec) {
				t.Errorf("%s: got %+v, want %+v", name, got, rec)
			}
		}
	})

	t.Run("input validation", func(t *testing.T) {
		e := newEnv(t)
		ctx := testCtx(t)
		_, h := mustNew(t)
		rec := sampleRecord(e.clock.Now())
		bad := map[string]error{
			"bad hash": e.Save(ctx, "tok", rec, time.Hour),
			"nil rec":  e.Save(ctx, h, nil, time.Hour),
			"ttl 0":    e.Save(ctx, h, rec, 0),
			"ttl < 0":  e.Save(ctx, h, rec, -time.Second),
		}
		_, err := e.ClaimOnce(ctx, "", "o", time.Hour)
		bad["claim empty key"] = err
		_, err = e.ClaimOnce(ctx, "k", "o", 0)
		bad["claim ttl 0"] = err
		_, err = e.ClaimOnce(ctx, string(make([]byte, maxKeyLen+1)), "o", time.Hour)
		bad["claim huge key"] = err
		_, err = e.ClaimOnce(ctx, "k", "", time.Hour)
		bad["claim empty owner"] = err
		_, err = e.ClaimOnce(ctx, "k", string(make([]byte, maxOwnerLen+1)), time.Hour)
		bad["claim huge owner"] = err
		bad["unclaim empty key"] = e.Unclaim(ctx, "", "o")
		bad["unclaim empty owner"] = e.Unclaim(ctx, "k", "")
		for name, err := range bad {
			if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
				t.Errorf("%s: err = %v, want a validation error", name, err)
			}
		}
	})
	runIssueConformance(t, newEnv)
}

func TestMemoryStoreConformance(t *testing.T) {
	runStoreConformance(t, func(t *testing.T) *storeRig {
		clock := testkit.NewClock(clockStart)
		m := NewMemory(clock.Now)
		t.Cleanup(func() { m.Close() })
		return &storeRig{
			Store: m,
			clock: clock,
			elapse: func(t *testing.T, d time.Duration, cond func() bool) {
				t.Helper()
				clock.Advance(d)
				if !cond() {
					t.Fatalf("condition does not hold after %s", d)
				}
			},
		}
	})
}

// newTestRedis builds a RedisStore on srv with a fake clock and a unique prefix.
func newTestRedis(t testing.TB, srv *redistest.Server, o RedisOptions) (*RedisStore, *testkit.Clock) {
	t.Helper()
	if o.URL == "" && len(o.Addrs) == 0 {
		o.URL = srv.URL()
	}
	if o.Timeout == 0 {
		// Generous unless a test is about failure timing: tests that check
		// semantics must not flake on a loaded CI box under -race.
		o.Timeout = 2 * time.Second
	}
	s, err := NewRedis(o)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	clock := testkit.NewClock(clockStart)
	s.now = clock.Now
	t.Cleanup(func() { s.Close() })
	return s, clock
}

var prefixSeq atomic.Int64

func TestRedisStoreConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	runStoreConformance(t, func(t *testing.T) *storeRig {
		prefix := fmt.Sprintf("conf%d:", prefixSeq.Add(1))
		s, clock := newTestRedis(t, srv, RedisOptions{KeyPrefix: prefix})
		return &storeRig{
			Store:  s,
			clock:  clock,
			raw:    srv.Client(),
			prefix: prefix,
			elapse: func(t *testing.T, d time.Duration, cond func() bool) {
				t.Helper()
				clock.Advance(d) // keep the store's clock in step; Redis expires on its own clock
				testkit.Await(t, d+5*time.Second, "Redis native expiry", cond)
			},
		}
	})
}

// TestRedisClusterConformance runs the whole suite against a real
// three-node Redis Cluster through the store's cluster client: keys of one
// operation land in different slots (rate limits, claims and tokens), and
// the claim scripts must run there too.
func TestRedisClusterConformance(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t, 3)
	addrs := redistest.ClusterAddrs(nodes)
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DisableIdentity: true})
	t.Cleanup(func() { raw.Close() })
	runStoreConformance(t, func(t *testing.T) *storeRig {
		prefix := fmt.Sprintf("cl%d:", prefixSeq.Add(1))
		s, clock := newTestRedis(t, nil, RedisOptions{Addrs: addrs, KeyPrefix: prefix})
		if _, ok := s.Client().(*redis.ClusterClient); !ok {
			t.Fatalf("store client is %T, want a cluster client", s.Client())
		}
		return &storeRig{
			Store: s, clock: clock, raw: raw, prefix: prefix,
			elapse: func(t *testing.T, d time.Duration, cond func() bool) {
				t.Helper()
				clock.Advance(d)
				testkit.Await(t, d+5*time.Second, "Redis native expiry", cond)
			},
		}
	})
}

// TestRedisSentinelConformance runs the whole suite through a real Redis
// Sentinel: the store asks the sentinel for the master and talks to it.
func TestRedisSentinelConformance(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "sidecar-master")
	runStoreConformance(t, func(t *testing.T) *storeRig {
		prefix := fmt.Sprintf("se%d:", prefixSeq.Add(1))
		s, clock := newTestRedis(t, nil, RedisOptions{Addrs: []string{sentinel.Addr()}, MasterName: "sidecar-master", KeyPrefix: prefix})
		return &storeRig{
			Store: s, clock: clock, raw: master.Client(), prefix: prefix,
			elapse: func(t *testing.T, d time.Duration, cond func() bool) {
				t.Helper()
				clock.Advance(d)
				testkit.Await(t, d+5*time.Second, "Redis native expiry", cond)
			},
		}
	})
}
