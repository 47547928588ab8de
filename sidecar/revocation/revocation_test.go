package revocation

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// recorder is a cache stand-in that records what the hub asks of it.
type recorder struct {
	mu      sync.Mutex
	forgot  []string
	flushes int
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1000)} }

func (r *recorder) forget(h string) {
	r.mu.Lock()
	r.forgot = append(r.forgot, h)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *recorder) flush() {
	r.mu.Lock()
	r.flushes++
	r.mu.Unlock()
	r.changed <- struct{}{}
}

func (r *recorder) state() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.forgot...), r.flushes
}

// await waits until cond holds (checked after every cache call, and every
// 20 ms), failing after 10 s.
func (r *recorder) await(t *testing.T, what string, cond func(forgot []string, flushes int) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if cond(r.state()) {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			f, n := r.state()
			t.Fatalf("timed out waiting for %s (forgot %v, %d flushes)", what, f, n)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type testMetrics struct {
	mu                  sync.Mutex
	published, received int
	up                  bool
}

func (m *testMetrics) InvalidationPublished() { m.mu.Lock(); m.published++; m.mu.Unlock() }
func (m *testMetrics) InvalidationReceived()  { m.mu.Lock(); m.received++; m.mu.Unlock() }
func (m *testMetrics) InvalidationSubscription(up bool) {
	m.mu.Lock()
	m.up = up
	m.mu.Unlock()
}

// startHub runs a hub on b until the test ends.
func startHub(t *testing.T, b Backend) (*Hub, *recorder, *testMetrics) {
	t.Helper()
	m := &testMetrics{}
	h, err := New(Options{Backend: b, Metrics: m, EpochPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	h.OnInvalidate(rec.forget, rec.flush)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, rec, m
}

func awaitUp(t *testing.T, h *Hub, want bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for h.Status().Up != want {
		if time.Now().After(deadline) {
			t.Fatalf("subscription up=%v not reached: %+v", want, h.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const hashA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// testBackend runs the contract every backend meets: one hub's events
// reach the others (Redis) or itself (memory); epochs rise monotonically
// and end older records.
func testHubs(t *testing.T, newBackend func() Backend, replicas int) {
	testHubsIssue(t, newBackend, replicas, nil)
}

// testHubsIssue is testHubs; redisStore, when set, is a token store on the
// backends' Redis (Issue then reads the epoch in its script).
func testHubsIssue(t *testing.T, newBackend func() Backend, replicas int, redisStore token.Store) {
	hubs := make([]*Hub, replicas)
	recs := make([]*recorder, replicas)
	for i := range hubs {
		hubs[i], recs[i], _ = startHub(t, newBackend())
		awaitUp(t, hubs[i], true)
	}
	ctx := context.Background()

	// A token revoked on the first hub is forgotten by all.
	if err := hubs[0].TokenRevoked(ctx, hashA); err != nil {
		t.Fatalf("TokenRevoked: %v", err)
	}
	for i, r := range recs {
		r.await(t, "the revoked hash on hub "+string(rune('A'+i)), func(f []string, _ int) bool { return contains(f, hashA) })
	}

	// A bulk revocation on the last hub: every hub learns the epoch and
	// flushes; records issued under an older epoch have ended.
	_, before := recs[0].state()
	epoch, err := hubs[replicas-1].RevokeProvider(ctx, "prov-1")
	if err != nil {
		t.Fatalf("RevokeProvider: %v", err)
	}
	if now := time.Now().UnixMilli(); epoch < now-5000 || epoch > now+5000 {
		t.Errorf("epoch %d is not the cut-off time in ms (now %d)", epoch, now)
	}
	for i, h := range hubs {
		recs[i].await(t, "the flush after the bulk revocation", func(_ []string, n int) bool { return h.Epoch("prov-1") == epoch })
		old := &token.Record{ProviderID: "prov-1", Epoch: 0}
		fresh := &token.Record{ProviderID: "prov-1", Epoch: epoch}
		other := &token.Record{ProviderID: "prov-2"}
		if !h.Ended(old) || h.Ended(fresh) || h.Ended(other) {
			t.Errorf("hub %d: Ended(old)=%v Ended(fresh)=%v Ended(other provider)=%v, want true false false", i, h.Ended(old), h.Ended(fresh), h.Ended(other))
		}
	}
	if _, n := recs[0].state(); n <= before {
		t.Errorf("hub 0 did not flush its cache on the bulk revocation (%d flushes before, %d after)", before, n)
	}
	// A second raise in the same millisecond still rises.
	e2, err := hubs[0].RevokeProvider(ctx, "prov-1")
	if err != nil || e2 <= epoch {
		t.Fatalf("second RevokeProvider = %d, %v; want > %d", e2, err, epoch)
	}
	// The store wrapper stamps the current epoch on saved records.
	st := token.NewMemory(nil)
	defer st.Close()
	r := &token.Record{ProviderID: "prov-1", ExpiresAt: time.Now().Add(time.Hour).Unix()}
	if err := hubs[0].Store(st).Save(ctx, hashA, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	if r.Epoch != e2 {
		t.Errorf("saved record's epoch %d, want the provider's current %d", r.Epoch, e2)
	}
	// So does Issue, the exchange's one write, on any store.
	for _, inner := range []token.Store{st, redisStore} {
		if inner == nil {
			continue
		}
		r := &token.Record{ProviderID: "prov-1", ExpiresAt: time.Now().Add(time.Hour).Unix()}
		_, h, _ := token.New()
		res, err := token.Issue(ctx, hubs[0].Store(inner), token.Issuance{Hash: h, Record: r, TTL: time.Hour})
		if err != nil || !res.Saved() {
			t.Fatalf("%s: Issue = %+v, %v", inner.Kind(), res, err)
		}
		got, err := inner.Get(ctx, h)
		if err != nil || r.Epoch != e2 || got.Epoch != e2 {
			t.Errorf("%s: issued record's epoch %d, stored %+v (%v); want the provider's current %d", inner.Kind(), r.Epoch, got, err, e2)
		}
	}
}

func TestMemoryBackend(t *testing.T) {
	b := NewMemory(nil)
	testHubs(t, func() Backend { return b }, 2)
}

func TestRedisBackend(t *testing.T) {
	srv := redistest.Start(t)
	newStore := func() *token.RedisStore {
		st, err := token.NewRedis(token.RedisOptions{URL: srv.URL(), Timeout: 2 * time.Second}) // semantics, not timing: generous under a loaded -race run
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	testHubsIssue(t, func() Backend { return NewRedis(newStore()) }, 3, newStore())
}

func TestClusterBackend(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	newStore := func() *token.RedisStore {
		st, err := token.NewRedis(token.RedisOptions{Addrs: redistest.ClusterAddrs(nodes), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	testHubsIssue(t, func() Backend { return NewRedis(newStore()) }, 3, newStore())
}

// TestRedisSubscriptionLoss: when Redis goes away the subscription is
// reported down (state, metric); when it is back the hub resubscribes and
// flushes the cache, since messages may have been lost meanwhile.
func TestRedisSubscriptionLoss(t *testing.T) {
	srv := redistest.Start(t)
	st, err := token.NewRedis(token.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := NewRedis(st)
	b.Heartbeat = 100 * time.Millisecond
	b.Backoff = 50 * time.Millisecond
	h, rec, m := startHub(t, b)
	awaitUp(t, h, true)
	_, flushes := rec.state()

	srv.Stop()
	awaitUp(t, h, false)
	if s := h.Status(); s.LastError == "" {
		t.Errorf("status while down has no error: %+v", s)
	}
	m.mu.Lock()
	if m.up {
		t.Error("metric still says up")
	}
	m.mu.Unlock()
	if _, err := h.RevokeProvider(context.Background(), "p"); !errors.Is(err, token.ErrUnavailable) {
		t.Errorf("RevokeProvider with Redis down: %v, want ErrUnavailable", err)
	}

	srv.Restart()
	awaitUp(t, h, true)
	rec.await(t, "a flush after resubscribing", func(_ []string, n int) bool { return n > flushes })
	m.mu.Lock()
	if !m.up {
		t.Error("metric still says down")
	}
	m.mu.Unlock()
}

// TestMalformedEventFlushes: a message the hub cannot read flushes
// everything (it may have been a revocation).
func TestMalformedEventFlushes(t *testing.T) {
	srv := redistest.Start(t)
	st, err := token.NewRedis(token.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, rec, _ := startHub(t, NewRedis(st))
	awaitUp(t, h, true)
	_, n0 := rec.state()
	if err := srv.Client().SPublish(context.Background(), token.DefaultKeyPrefix+ChannelPart, "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "a flush", func(_ []string, n int) bool { return n > n0 })
}

func TestEpochsCorrupt(t *testing.T) {
	srv := redistest.Start(t)
	st, err := token.NewRedis(token.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv.Client().HSet(context.Background(), token.DefaultKeyPrefix+EpochsPart, "p", "x")
	_, err = NewRedis(st).Epochs(context.Background())
	if err == nil || !strings.Contains(err.Error(), `provider "p"`) {
		t.Fatalf("corrupt epoch: %v", err)
	}
}
