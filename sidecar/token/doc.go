// Package token mints the sidecar's opaque API tokens and stores what they
// grant.
//
// # Tokens
//
// New returns a token such as
//
//	ocs_3kTMd9Xk...(43 base62 chars)...Aq81Zx
//
// made of the Prefix, 32 crypto/rand bytes in fixed-width base62 and a 6-char
// base62 CRC32 of the random part (the scheme GitHub uses for its tokens), plus
// its Hash: the lowercase hex SHA-256 of the whole string. WellFormed checks
// prefix, length, alphabet and checksum so that garbage is rejected without a
// store round trip. Only the hash is ever stored.
//
// # Stores
//
// A Store keeps a Record per token hash with native expiry, replay-guard
// claims (ClaimOnce/Unclaim, each claim holding a random owner so that only
// its owner can release it) and fixed-window rate-limit counters (Allow).
// RedisStore (NewRedis: single server, Sentinel or Cluster) is for production
// and for several sidecar replicas; MemoryStore (NewMemory) is for a single
// process.
//
// Keys, below a prefix (default "oidc-sidecar:"):
//
//	tok:<sha256 hex>          compact JSON Record, expires with the token
//	once:<key>                claim owner, replay guard, expires with ttl
//	rl:<key>:<window index>   counter, window index = unix ms / window ms
//
// Every Redis command touches a single key, and Allow pipelines one single-key
// script call per limit, so no operation needs its keys in one hash slot and
// the store works unchanged on Redis Cluster.
//
// # Failures
//
// ErrNotFound is returned only when the backend answered. Anything else that
// stops the backend from answering (connection refused, timeout, auth error,
// full memory store, closed store) wraps ErrUnavailable and names what failed,
// so callers fail closed and never read an outage as "not found" or
// "first use". The Redis client is tuned to fail within the per-operation
// Timeout (default 250ms), not go-redis's multi-second defaults.
//
// # Replicas
//
// Redis replicates asynchronously: a failover can lose writes the old
// primary acknowledged. With RedisOptions.MinReplicasAck, Save and Revoke
// (and, in a Cluster, ClaimOnce) send the write and WAIT in one pipeline
// to the key's primary and fail with ErrNotReplicated (wrapping
// ErrUnavailable) unless enough replicas confirmed it; Save then deletes
// the unconfirmed record (ack.go).
package token
