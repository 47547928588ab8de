package proxy

import (
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

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
type tokenCache struct {
	ttl    time.Duration
	shards [16]cacheShard // by the first hex digit of the token hash
}

type cacheShard struct {
	mu  sync.Mutex
	m   map[string]cacheEntry
	gen uint64 // bumped by forget: a lookup that overlapped one does not cache its result
}

type cacheEntry struct {
	rec   *token.Record
	val   ast.Value
	until time.Time // monotonic
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

// get returns the cached record and value for hash, if fresh at now, and
// on a miss the generation to pass to put.
func (c *tokenCache) get(hash string, now time.Time) (*token.Record, ast.Value, uint64, bool) {
	s := c.shard(hash)
	s.mu.Lock()
	e, ok := s.m[hash]
	if ok && !now.Before(e.until) {
		delete(s.m, hash)
		ok = false
	}
	gen := s.gen
	s.mu.Unlock()
	return e.rec, e.val, gen, ok
}

// forget evicts hash. A lookup that was in flight meanwhile (its get
// returned an older generation) will not cache what it read.
func (c *tokenCache) forget(hash string) {
	s := c.shard(hash)
	s.mu.Lock()
	delete(s.m, hash)
	s.gen++
	s.mu.Unlock()
}

// put caches a record the store returned for a lookup that started at now,
// unless a forget on the shard happened since get returned gen.
func (c *tokenCache) put(hash string, rec *token.Record, val ast.Value, now time.Time, gen uint64) {
	s := c.shard(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	if len(s.m) >= maxCachedTokens/len(c.shards) {
		for k, e := range s.m {
			if !now.Before(e.until) {
				delete(s.m, k)
			}
		}
		for k := range s.m { // still full: drop an arbitrary entry
			if len(s.m) < maxCachedTokens/len(c.shards) {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[hash] = cacheEntry{rec: rec, val: val, until: now.Add(c.ttl)}
}
