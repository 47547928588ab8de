package token

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

func TestRedisOptionsValidation(t *testing.T) {
	bad := map[string]struct {
		o    RedisOptions
		want string
	}{
		"nothing":            {RedisOptions{}, "one of URL"},
		"URL and Addrs":      {RedisOptions{URL: "redis://a:1", Addrs: []string{"b:2"}}, "not both"},
		"http scheme":        {RedisOptions{URL: "http://a:6379"}, `scheme "http" is not supported`},
		"no scheme":          {RedisOptions{URL: "localhost:6379"}, "not supported"},
		"unix scheme":        {RedisOptions{URL: "unix:///tmp/redis.sock"}, "not supported"},
		"no host":            {RedisOptions{URL: "redis://"}, "missing host"},
		"query":              {RedisOptions{URL: "redis://a:6379/0?dial_timeout=5s"}, "query parameters"},
		"bad db":             {RedisOptions{URL: "redis://a:6379/x"}, "invalid database"},
		"sentinel with URL":  {RedisOptions{URL: "redis://a:6379", MasterName: "m"}, "MasterName"},
		"addr without port":  {RedisOptions{Addrs: []string{"a:1", "b"}}, `"b" is not host:port`},
		"cluster with DB":    {RedisOptions{Addrs: []string{"a:1"}, DB: 2}, "only database 0"},
		"negative timeout":   {RedisOptions{URL: "redis://a:1", Timeout: -1}, "Timeout"},
		"negative pool size": {RedisOptions{URL: "redis://a:1", PoolSize: -1}, "PoolSize"},
		"negative DB":        {RedisOptions{URL: "redis://a:1", DB: -1}, "DB"},
	}
	for name, c := range bad {
		s, err := NewRedis(c.o)
		if err == nil {
			s.Close()
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, c.want)
		}
	}

	// A URL that does not parse must not echo its password.
	_, err := NewRedis(RedisOptions{URL: "redis://:s3cr3t-pw@host:6379/0\x7f"})
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Errorf("bad URL error %v leaks or is missing", err)
	}
}

func TestRedisOptionsTranslation(t *testing.T) {
	uo, err := RedisOptions{URL: "rediss://user:pw@cache.example:6380/3"}.universal()
	if err != nil {
		t.Fatal(err)
	}
	if uo.Addrs[0] != "cache.example:6380" || uo.Username != "user" || uo.Password != "pw" || uo.DB != 3 || uo.TLSConfig == nil {
		t.Errorf("rediss URL: %+v", uo)
	}
	if uo.ReadTimeout != DefaultTimeout || uo.WriteTimeout != DefaultTimeout || uo.DialTimeout != DefaultTimeout ||
		!uo.ContextTimeoutEnabled || uo.MaxRetries != 1 || uo.DialerRetries != 1 {
		t.Errorf("fail-fast settings missing: %+v", uo)
	}

	uo, _ = RedisOptions{URL: "redis://:urlpw@h:1/1", Password: "explicit", DB: 5, TLS: true, Timeout: time.Second}.universal()
	if uo.Password != "explicit" || uo.DB != 5 || uo.TLSConfig == nil || uo.TLSConfig.MinVersion != tls.VersionTLS12 || uo.ReadTimeout != time.Second {
		t.Errorf("explicit fields must override the URL: %+v", uo)
	}

	uo, _ = RedisOptions{Addrs: []string{"seed:7000"}}.universal()
	if !uo.IsClusterMode || uo.MasterName != "" {
		t.Errorf("single cluster seed must be cluster mode: %+v", uo)
	}
	s, err := NewRedis(RedisOptions{Addrs: []string{"seed:7000"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Client().(*redis.ClusterClient); !ok {
		t.Errorf("Addrs gave %T, want *redis.ClusterClient", s.Client())
	}
	s.Close()

	uo, _ = RedisOptions{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DB: 1}.universal()
	if uo.MasterName != "mymaster" || uo.IsClusterMode || uo.DB != 1 {
		t.Errorf("sentinel: %+v", uo)
	}
	s, _ = NewRedis(RedisOptions{Addrs: []string{"s1:26379"}, MasterName: "mymaster"})
	if _, ok := s.Client().(*redis.Client); !ok || s.Kind() != "redis" {
		t.Errorf("sentinel gave %T", s.Client())
	}
	s.Close()

	custom := &tls.Config{ServerName: "x", MinVersion: tls.VersionTLS13}
	uo, _ = RedisOptions{URL: "redis://h:1", TLSConfig: custom}.universal()
	if uo.TLSConfig == nil || uo.TLSConfig.ServerName != "x" || uo.TLSConfig == custom {
		t.Errorf("TLSConfig must be used (cloned): %+v", uo.TLSConfig)
	}
}

func TestRedisPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("s3cret"))
	s, _ := newTestRedis(t, srv, RedisOptions{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping with password from URL: %v", err)
	}
	s2, _ := newTestRedis(t, srv, RedisOptions{URL: "redis://" + srv.Addr(), Password: "wrong"})
	err := s2.Ping(testCtx(t))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v, want ErrUnavailable mentioning WRONGPASS", err)
	}
	if _, err := s2.Get(testCtx(t), Hash("x")); errors.Is(err, ErrNotFound) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with wrong password = %v, want ErrUnavailable (never not found)", err)
	}
}

// allOps runs every Store operation once and returns their errors by name,
// checking on the way that none reports a false "not found" or "first use".
func allOps(t *testing.T, s Store, h string) map[string]error {
	t.Helper()
	ctx := context.Background()
	errs := map[string]error{}
	errs["Save"] = s.Save(ctx, h, sampleRecord(time.Now()), time.Minute)
	rec, err := s.Get(ctx, h)
	if rec != nil {
		t.Errorf("Get returned a record with error %v", err)
	}
	errs["Get"] = err
	ok, err := s.Revoke(ctx, h)
	if ok {
		t.Error("Revoke reported true on error")
	}
	errs["Revoke"] = err
	ok, err = s.ClaimOnce(ctx, "jti-1", "owner-1", time.Minute)
	if ok {
		t.Error("ClaimOnce reported first use on error")
	}
	errs["ClaimOnce"] = err
	errs["Unclaim"] = s.Unclaim(ctx, "jti-1", "owner-1")
	res, err := s.Allow(ctx, Limit{Key: "a", Max: 1, Window: time.Minute}, Limit{Key: "b", Max: 1, Window: time.Minute})
	if res != nil {
		t.Error("Allow returned results with an error")
	}
	errs["Allow"] = err
	_, h2, _ := New()
	ires, err := Issue(ctx, s, Issuance{Limits: []Limit{{Key: "a", Max: 1, Window: time.Minute}}, ClaimKey: "jti-2", ClaimOwner: "owner-2", ClaimTTL: time.Minute,
		Hash: h2, Record: sampleRecord(time.Now()), TTL: time.Minute})
	if err != nil && (ires.Limited || ires.Replayed) {
		t.Error("Issue reported an outcome with an error")
	}
	errs["Issue"] = err
	errs["Ping"] = s.Ping(ctx)
	return errs
}

// assertUnavailable checks that every op fails with ErrUnavailable within limit.
//
// cause, if set, must hold for each error. A loaded machine (-race, parallel
// packages, 2 cores) can starve a refused dial's retry past the deadline, so
// callers accept a timeout as an alternative cause.
func assertUnavailable(t *testing.T, s Store, h string, limit time.Duration, cause func(error) bool) {
	t.Helper()
	start := time.Now()
	var elapsed sync.Map
	s = timedStore{Store: s, record: func(op string, d time.Duration) { elapsed.Store(op, d) }}
	errs := allOps(t, s, h)
	for op, err := range errs {
		d, _ := elapsed.Load(op)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", op, err)
			continue
		}
		if errors.Is(err, ErrNotFound) {
			t.Errorf("%s: outage reported as not found: %v", op, err)
		}
		if cause != nil && !cause(err) {
			t.Errorf("%s: err = %v: unexpected cause", op, err)
		}
		if d.(time.Duration) >= limit {
			t.Errorf("%s took %s, want < %s", op, d, limit)
		}
		if !strings.Contains(err.Error(), "redis ") {
			t.Errorf("%s: error %q does not say which command failed", op, err)
		}
	}
	t.Logf("all %d operations failed in %s total; e.g. Get: %v", len(errs), time.Since(start).Round(time.Millisecond), errs["Get"])
}

// isTimeout: the context deadline or a socket read/write deadline fired.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func refusedOrTimeout(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || isTimeout(err)
}

// timedStore measures each operation.
type timedStore struct {
	Store
	record func(op string, d time.Duration)
}

func (s timedStore) time(op string) func() {
	start := time.Now()
	return func() { s.record(op, time.Since(start)) }
}

func (s timedStore) Save(ctx context.Context, h string, r *Record, ttl time.Duration) error {
	defer s.time("Save")()
	return s.Store.Save(ctx, h, r, ttl)
}
func (s timedStore) Get(ctx context.Context, h string) (*Record, error) {
	defer s.time("Get")()
	return s.Store.Get(ctx, h)
}
func (s timedStore) Revoke(ctx context.Context, h string) (bool, error) {
	defer s.time("Revoke")()
	return s.Store.Revoke(ctx, h)
}
func (s timedStore) ClaimOnce(ctx context.Context, k, owner string, ttl time.Duration) (bool, error) {
	defer s.time("ClaimOnce")()
	return s.Store.ClaimOnce(ctx, k, owner, ttl)
}
func (s timedStore) Unclaim(ctx context.Context, k, owner string) error {
	defer s.time("Unclaim")()
	return s.Store.Unclaim(ctx, k, owner)
}
func (s timedStore) Issue(ctx context.Context, iss Issuance) (IssueResult, error) {
	defer s.time("Issue")()
	return Issue(ctx, s.Store, iss)
}
func (s timedStore) Allow(ctx context.Context, l ...Limit) ([]LimitResult, error) {
	defer s.time("Allow")()
	return s.Store.Allow(ctx, l...)
}
func (s timedStore) Ping(ctx context.Context) error {
	defer s.time("Ping")()
	return s.Store.Ping(ctx)
}

// assertWorks runs a full, successful round of operations.
func assertWorks(t *testing.T, s Store) {
	t.Helper()
	ctx := testCtx(t)
	_, h := mustNew(t)
	rec := sampleRecord(time.Now())
	rec.ExpiresAt = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix() // whatever the store's clock says
	if err := s.Save(ctx, h, rec, time.Minute); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if _, err := s.Get(ctx, h); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if ok, err := s.ClaimOnce(ctx, "after-"+h, NewClaimOwner(), time.Minute); err != nil || !ok {
		t.Fatalf("ClaimOnce: %v, %v", ok, err)
	}
	if _, err := s.Allow(ctx, Limit{Key: "after", Max: 10, Window: time.Minute}); err != nil {
		t.Fatalf("Allow: %v", err)
	}
	if ok, err := s.Revoke(ctx, h); err != nil || !ok {
		t.Fatalf("Revoke: %v, %v", ok, err)
	}
}

func TestRedisServerStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{Timeout: DefaultTimeout})
	assertWorks(t, s) // pooled connections exist now

	srv.Stop()
	_, h := mustNew(t)
	// Twice: first with dead pooled connections, then with fresh dials refused.
	assertUnavailable(t, s, h, time.Second, nil)
	assertUnavailable(t, s, h, time.Second, refusedOrTimeout)
	// The message says what failed (polled: under load one attempt may time out instead).
	var msg string
	testkit.Await(t, 5*time.Second, "a 'connection refused' error message", func() bool {
		_, err := s.Get(context.Background(), h)
		msg = err.Error()
		return strings.Contains(msg, "redis GET: dial tcp "+srv.Addr()) && strings.Contains(msg, "connection refused")
	})
	t.Logf("refused: %s", msg)
	// Hammer it so go-redis's dial circuit breaker opens (PoolSize failures).
	for range 50 {
		_ = s.Ping(context.Background())
	}
	assertUnavailable(t, s, h, time.Second, nil)

	srv.Restart()
	// Same store object: it must reconnect on its own. go-redis probes a
	// tripped dialer once per second, so allow a few seconds.
	testkit.Await(t, 5*time.Second, "store to reconnect after Restart", func() bool {
		return s.Ping(context.Background()) == nil
	})
	assertWorks(t, s)
}

func TestRedisServerHung(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{Timeout: 200 * time.Millisecond})
	assertWorks(t, s)

	srv.Pause() // connections stay open, nothing answers
	_, h := mustNew(t)
	assertUnavailable(t, s, h, time.Second, isTimeout)
	_, err := s.Get(context.Background(), h)
	if !strings.Contains(err.Error(), "redis GET: ") || !strings.Contains(err.Error(), "(timeout 200ms)") {
		t.Errorf("timeout error %q should name the command and the configured timeout", err)
	}

	// A caller deadline shorter than Timeout wins.
	slow, _ := newTestRedis(t, srv, RedisOptions{Timeout: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := slow.Get(ctx, h); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("caller deadline 20ms ignored (Timeout 3s): took %s", d)
	}

	srv.Resume()
	testkit.Await(t, 5*time.Second, "store to answer after Resume", func() bool {
		return s.Ping(context.Background()) == nil
	})
	assertWorks(t, s)
}

// TestRedisBlackHole: something accepts TCP connections but never answers
// (no redis-server needed).
func TestRedisBlackHole(t *testing.T) {
	t.Parallel()
	addr := testkit.BlackHole(t)
	s, err := NewRedis(RedisOptions{URL: "redis://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, h := mustNew(t)
	assertUnavailable(t, s, h, time.Second, isTimeout)
}

func TestRedisKeysHoldOnlyHashes(t *testing.T) {
	srv := redistest.Start(t)
	s, clock := newTestRedis(t, srv, RedisOptions{}) // default prefix
	ctx := testCtx(t)
	tokens := map[string]string{}
	for range 20 {
		tok, h := mustNew(t)
		tokens[tok] = h
		if err := s.Save(ctx, h, sampleRecord(clock.Now()), time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimOnce(ctx, "jti:"+h[:16], NewClaimOwner(), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Allow(ctx, Limit{Key: "ip:127.0.0.1", Max: 5, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}

	raw := srv.Client()
	var keys []string
	iter := raw.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 41 {
		t.Fatalf("found %d keys, want 20 tok + 20 once + 1 rl: %v", len(keys), keys)
	}
	toks := 0
	for _, k := range keys {
		if !strings.HasPrefix(k, "oidc-sidecar:tok:") && !strings.HasPrefix(k, "oidc-sidecar:once:") && !strings.HasPrefix(k, "oidc-sidecar:rl:ip:127.0.0.1:") {
			t.Errorf("unexpected key %q", k)
		}
		val, err := raw.Get(ctx, k).Result()
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		for tok, h := range tokens {
			if strings.Contains(k, tok) || strings.Contains(val, tok) || strings.Contains(k, tok[len(Prefix):len(Prefix)+randomLen]) || strings.Contains(val, tok[len(Prefix):len(Prefix)+randomLen]) {
				t.Fatalf("raw token found in key %q or its value", k)
			}
			if k == "oidc-sidecar:tok:"+h {
				toks++
			}
		}
	}
	if toks != 20 {
		t.Errorf("found %d tok:<hash> keys, want 20", toks)
	}
}

func TestRedisAllowOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{})
	ctx := testCtx(t)
	limits := []Limit{
		{Key: "provider:p1", Max: 100, Window: time.Minute},
		{Key: "ip:203.0.113.9", Max: 10, Window: time.Second},
		{Key: "sub:repo:octo/x", Max: 50, Window: time.Hour},
	}
	if _, err := s.Allow(ctx, limits...); err != nil { // loads the script (NOSCRIPT → EVAL)
		t.Fatal(err)
	}
	hook := &redistest.Counter{}
	s.Client().AddHook(hook)
	res, err := s.Allow(ctx, limits...)
	if err != nil {
		t.Fatal(err)
	}
	if hook.Pipelines.Load() != 1 || hook.Cmds.Load() != 0 {
		t.Fatalf("Allow of 3 limits used %d pipelines and %d single commands, want 1 and 0", hook.Pipelines.Load(), hook.Cmds.Load())
	}
	if res[0].Remaining != 98 || res[1].Remaining != 8 || res[2].Remaining != 48 {
		t.Fatalf("results %+v", res)
	}

	// After SCRIPT FLUSH (as after a failover to a fresh replica) Allow recovers.
	if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	res, err = s.Allow(ctx, limits...)
	if err != nil || res[0].Remaining != 97 {
		t.Fatalf("Allow after SCRIPT FLUSH = %+v, %v", res, err)
	}
}

func TestRedisCorruptRecord(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{})
	_, h := mustNew(t)
	if err := srv.Client().Set(testCtx(t), DefaultKeyPrefix+"tok:"+h, "{not json", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(testCtx(t), h)
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Get of corrupt record = %v", err)
	}
}

func TestRedisCloseAndStats(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{PoolSize: 3})
	assertWorks(t, s)
	if st := s.PoolStats(); st.TotalConns == 0 || st.Hits+st.Misses == 0 {
		t.Errorf("PoolStats = %+v", st)
	}
	if d, _ := NewRedis(RedisOptions{URL: srv.URL()}); d.Timeout() != DefaultTimeout {
		t.Errorf("default Timeout = %s, want %s", d.Timeout(), DefaultTimeout)
	} else {
		d.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(context.Background(), Hash("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get after Close = %v, want ErrUnavailable", err)
	}
}
