package proxy

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

func TestTokenCache(t *testing.T) {
	c := newTokenCache(time.Second)
	rec := record("USER_INFO")
	val := preparedToken(&rec)
	h := token.Hash("ocs_x")
	now := time.Now()

	_, gen, ok := c.get(h, now)
	if ok {
		t.Fatal("hit on an empty cache")
	}
	c.put(h, &rec, val, now, gen)
	if got, _, ok := c.get(h, now.Add(999*time.Millisecond)); !ok || got.rec != &rec {
		t.Fatal("miss within the TTL")
	}
	if _, _, ok := c.get(h, now.Add(time.Second)); ok {
		t.Fatal("hit at the TTL")
	}

	// A forget during a lookup stops that lookup from caching what it read.
	_, gen, _ = c.get(h, now)
	c.forget(h)
	c.put(h, &rec, val, now, gen)
	if _, _, ok := c.get(h, now); ok {
		t.Fatal("a lookup that overlapped a forget was cached")
	}

	// Bounded size.
	for i := range 3 * maxCachedTokens {
		k := token.Hash("ocs_" + time.Duration(i).String())
		_, g, _ := c.get(k, now)
		c.put(k, &rec, val, now, g)
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	if n > maxCachedTokens {
		t.Fatalf("%d entries, bound is %d", n, maxCachedTokens)
	}
}

// TestDecisionMemoBounds: a token's memo holds at most maxMemoDecisions;
// decisions are given back to the cache's total when their entry leaves
// (expiry, forget, replacement), and a memo whose entry left takes no more.
func TestDecisionMemoBounds(t *testing.T) {
	c := newTokenCache(time.Second)
	now := time.Now()
	rec := record("EXECUTION_INFO")
	val := preparedToken(&rec)
	h1, h2 := token.Hash("one"), token.Hash("two")
	_, gen, _ := c.get(h1, now)
	m1 := c.put(h1, &rec, val, now, gen)
	_, gen, _ = c.get(h2, now)
	m2 := c.put(h2, &rec, val, now, gen)
	d := &policy.ProxyDecision{Allow: true, Status: 200}
	for i := range maxMemoDecisions + 5 {
		m1.put(memoKey{method: "GET", path: fmt.Sprintf("/p/%d", i)}, memoValue{d: d})
	}
	m1.put(memoKey{method: "GET", path: "/p/0"}, memoValue{d: d}) // already there: not counted twice
	m2.put(memoKey{method: "GET", path: "/x"}, memoValue{d: d})
	if got := c.memos.Load(); got != maxMemoDecisions+1 {
		t.Fatalf("total %d, want %d", got, maxMemoDecisions+1)
	}
	if _, ok := m1.getIf(memoKey{method: "GET", path: "/p/3"}); !ok {
		t.Fatal("a remembered decision is not found")
	}
	c.forget(h1)
	if got := c.memos.Load(); got != 1 {
		t.Fatalf("after forget: total %d, want 1", got)
	}
	m1.put(memoKey{method: "GET", path: "/late"}, memoValue{d: d}) // an in-flight request of the forgotten token
	if _, ok := m1.getIf(memoKey{method: "GET", path: "/late"}); ok || c.memos.Load() != 1 {
		t.Fatalf("a released memo took a decision (total %d)", c.memos.Load())
	}
	if _, _, ok := c.get(h2, now.Add(time.Second)); ok { // expired: leaves the cache
		t.Fatal("an expired entry was returned")
	}
	if got := c.memos.Load(); got != 0 {
		t.Fatalf("after expiry: total %d, want 0", got)
	}
}

// TestEndedAndFlush: Options.Ended refuses a record even while it is
// cached (a bulk revocation), and FlushCache makes the next use of every
// token ask the store again.
func TestEndedAndFlush(t *testing.T) {
	var epoch atomic.Int64
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	f := newFixture(t, st, func(o *Options) {
		o.Ended = func(r *token.Record) bool { return r.Epoch < epoch.Load() }
	})
	tok := f.mint(record("WORKSPACE"))
	if r := f.do("GET", "/workspaces/acme/projects", tok, nil, nil); r.status != 200 {
		t.Fatalf("before: %d %s", r.status, r.body)
	}
	gets := f.store.gets.Load()
	if r := f.do("GET", "/workspaces/acme/projects", tok, nil, nil); r.status != 200 || f.store.gets.Load() != gets {
		t.Fatalf("second use: %d, store lookups %d → %d (want a cache hit)", r.status, gets, f.store.gets.Load())
	}
	f.proxy.FlushCache()
	if r := f.do("GET", "/workspaces/acme/projects", tok, nil, nil); r.status != 200 || f.store.gets.Load() != gets+1 {
		t.Fatalf("after FlushCache: %d, store lookups %d → %d (want one more)", r.status, gets, f.store.gets.Load())
	}
	n := len(f.up.requests())
	epoch.Store(1) // the provider's tokens were revoked in bulk; the record is still cached
	if r := f.do("GET", "/workspaces/acme/projects", tok, nil, nil); r.status != 401 {
		t.Fatalf("an ended record: %d %s, want 401", r.status, r.body)
	}
	if got := len(f.up.requests()); got != n {
		t.Fatalf("an ended record reached the upstream")
	}
	rec := record("WORKSPACE")
	rec.Epoch = 1
	fresh := f.mint(rec)
	if r := f.do("GET", "/workspaces/acme/projects", fresh, nil, nil); r.status != 200 {
		t.Fatalf("a record of the current epoch: %d %s", r.status, r.body)
	}
}
