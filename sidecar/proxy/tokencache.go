package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// DefaultTokenCacheTTL is how long a token record looked up in the store is
// reused by one proxy instance, and the longest Options.TokenCacheTTL
// accepted: a revoked token stops working on every replica at most this
// long after its deletion from the store.
const DefaultTokenCacheTTL = time.Second

// maxCachedTokens bounds the cache's memory: about 2-3 KiB per entry.
const maxCachedTokens = 16384

// tokenCache keeps recently used token records, with their policy input
// value, for a short time. Only records the store returned are cached —
// never "not found" and never errors — so an unknown token always costs a
// store round trip and a revoked or expired one is refused as soon as its
// entry (at most ttl old) lapses; the record's own exp is checked on every
// use. Entries are immutable and shared between requests.
//
// Concurrent lookups of one uncached token share one store round trip
// (flights): a burst on a cold token costs one GET, not one per request.
type tokenCache struct {
	flights singleflight.Group // by hash and shard generation
	waiting atomic.Int64       // lookups waiting for a flight (tests await it)
	ttl     time.Duration
	shards  [16]cacheShard // by the first hex digit of the token hash
	memos   atomic.Int64   // decisions remembered in all entries' memos
}

type cacheShard struct {
	mu  sync.Mutex
	m   map[string]cacheEntry
	gen uint64 // bumped by forget: a lookup that overlapped one does not cache its result
}

type cacheEntry struct {
	rec   *token.Record
	val   *policy.PreparedToken
	memo  *decisionMemo // decisions made for this token while the entry lives
	until time.Time     // monotonic
}

func newTokenCache(ttl time.Duration) *tokenCache {
	c := &tokenCache{ttl: ttl}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(hash string) *cacheShard {
	return &c.shards[unhex(hash[0])&0xf] // hash is lowercase hex (token.Hash)
}

// get returns the cached entry for hash, if fresh at now, and on a miss
// the generation to pass to put.
func (c *tokenCache) get(hash string, now time.Time) (cacheEntry, uint64, bool) {
	s := c.shard(hash)
	s.mu.Lock()
	e, ok := s.m[hash]
	if ok && !now.Before(e.until) {
		delete(s.m, hash)
		e.memo.release()
		ok = false
	}
	gen := s.gen
	s.mu.Unlock()
	return e, gen, ok
}

// forget evicts hash. A lookup that was in flight meanwhile (its get
// returned an older generation) will not cache what it read.
func (c *tokenCache) forget(hash string) {
	s := c.shard(hash)
	s.mu.Lock()
	if e, ok := s.m[hash]; ok {
		delete(s.m, hash)
		e.memo.release()
	}
	s.gen++
	s.mu.Unlock()
}

// flush evicts every entry (an invalidation whose extent is unknown, or
// a provider's bulk revocation). Lookups in flight do not cache what they
// read.
func (c *tokenCache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			delete(s.m, k)
			e.memo.release()
		}
		s.gen++
		s.mu.Unlock()
	}
}

// put caches a record the store returned for a lookup that started at now,
// unless a forget on the shard happened since get returned gen. It returns
// the new entry's decision memo, or nil when nothing was cached.
func (c *tokenCache) put(hash string, rec *token.Record, val *policy.PreparedToken, now time.Time, gen uint64) *decisionMemo {
	s := c.shard(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return nil
	}
	if len(s.m) >= maxCachedTokens/len(c.shards) {
		for k, e := range s.m {
			if !now.Before(e.until) {
				delete(s.m, k)
				e.memo.release()
			}
		}
		for k, e := range s.m { // still full: drop an arbitrary entry
			if len(s.m) < maxCachedTokens/len(c.shards) {
				break
			}
			delete(s.m, k)
			e.memo.release()
		}
	}
	if old, ok := s.m[hash]; ok {
		old.memo.release()
	}
	memo := &decisionMemo{count: &c.memos}
	s.m[hash] = cacheEntry{rec: rec, val: val, memo: memo, until: now.Add(c.ttl)}
	return memo
}

// Bounds of decision reuse: per token entry, and in all (at roughly 0.5-1
// KiB per decision with its path and route variables, at most ≈ 16-32 MiB).
const (
	maxMemoDecisions = 16
	maxMemoTotal     = 32768
)

// decisionMemo remembers the proxy's decisions for one cached token: for a
// snapshot whose proxy decision is pure (policy.Snapshot.ProxyDecisionPure)
// the same method, path and client address give the same route match and
// decision. It lives and dies with its token's cache entry, so a revocation
// that evicts the token (or the entry's TTL) ends it too, and a new
// snapshot never meets another's decisions (the snapshot is in the key).
type decisionMemo struct {
	mu    sync.Mutex
	m     map[memoKey]memoValue
	dead  bool          // its entry left the cache: remember nothing more
	count *atomic.Int64 // the cache's total, kept by put and release
}

type memoKey struct {
	snap                 *policy.Snapshot
	method, path, client string
}

type memoValue struct {
	m match
	d *policy.ProxyDecision
}

// getIf is get on a memo that may be nil (no memo: never found).
func (dm *decisionMemo) getIf(k memoKey) (memoValue, bool) {
	if dm == nil {
		return memoValue{}, false
	}
	dm.mu.Lock()
	v, ok := dm.m[k]
	dm.mu.Unlock()
	return v, ok
}

// put remembers a decision, unless the memo's entry has left the cache or
// the memo, or the cache as a whole, is full.
func (dm *decisionMemo) put(k memoKey, v memoValue) {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.dead || len(dm.m) >= maxMemoDecisions {
		return
	}
	if _, ok := dm.m[k]; ok {
		return
	}
	if dm.count.Add(1) > maxMemoTotal {
		dm.count.Add(-1)
		return
	}
	if dm.m == nil {
		dm.m = make(map[memoKey]memoValue, 4)
	}
	dm.m[k] = v
}

// release is called when the memo's entry leaves the cache: it forgets
// every decision and gives them back to the cache's total. Safe on nil.
func (dm *decisionMemo) release() {
	if dm == nil {
		return
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if !dm.dead {
		dm.dead = true
		dm.count.Add(-int64(len(dm.m)))
		dm.m = nil
	}
}
