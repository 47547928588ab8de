package proxy

import (
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

func TestTokenCache(t *testing.T) {
	c := newTokenCache(time.Second)
	rec := record("USER_INFO")
	val := tokenValue(&rec)
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
