package token

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultTimeout bounds every Redis operation unless RedisOptions.Timeout says otherwise.
const DefaultTimeout = 250 * time.Millisecond

// RedisOptions configures NewRedis. Exactly one of URL and Addrs must be set.
type RedisOptions struct {
	// URL of a single Redis server: redis://[user:password@]host[:port][/db] or
	// rediss://... for TLS. Query parameters are not accepted; use the fields below.
	URL string
	// Addrs are cluster seed addresses (host:port). With MasterName they are the
	// Sentinel addresses instead. A single address without MasterName is still
	// treated as a cluster seed (the client discovers the other nodes).
	Addrs []string
	// MasterName selects Sentinel mode: the name of the monitored master.
	MasterName string
	// Password and Username (Redis ACL) override the ones in URL when set.
	Password, Username string
	// DB selects the database (single server and Sentinel only; must be 0 for a
	// cluster). Overrides the URL's path when non-zero.
	DB int
	// TLS enables TLS (implied by a rediss:// URL).
	TLS bool
	// TLSConfig is an optional TLS configuration (custom CA, client certificates).
	// Setting it implies TLS.
	TLSConfig *tls.Config
	// KeyPrefix namespaces every key; default DefaultKeyPrefix ("oidc-sidecar:").
	KeyPrefix string
	// MinReplicasAck, when positive, makes Save and Revoke (and, in Cluster
	// mode, ClaimOnce) return only after Redis's WAIT confirms that the write
	// reached at least this many replicas of the primary that took it. WAIT
	// waits at most AckTimeout(Timeout) (the per-operation timeout). A
	// write that is not confirmed in time is an error wrapping
	// ErrNotReplicated and ErrUnavailable; Save then deletes the record it
	// wrote. 0 (the default) does not wait: Redis replication is
	// asynchronous, so a failover can lose writes acknowledged in the last
	// moments before the primary died.
	MinReplicasAck int
	// Timeout bounds each operation (dial, read, write, and a context deadline
	// added on top of the caller's); default DefaultTimeout (250ms).
	Timeout time.Duration
	// PoolSize is the maximum number of connections per node; 0 =
	// DefaultPoolSize() (10 × GOMAXPROCS, go-redis's own default, set
	// explicitly so the store knows it).
	PoolSize int
}

// DefaultPoolSize is the connection pool size per node when
// RedisOptions.PoolSize is 0: 10 × runtime.GOMAXPROCS(0), read when the
// store is built (20 on 2 CPUs).
func DefaultPoolSize() int { return 10 * runtime.GOMAXPROCS(0) }

// RedisStore is a Store backed by Redis (single server, Sentinel or Cluster).
//
// Keys (below KeyPrefix): tok:<sha256 hex> holds the compact JSON Record with
// native expiry; once:<key> holds the owner of a replay-guard claim;
// rl:<key>:<window index> holds a counter. Redis never sees a raw token, only
// its SHA-256.
//
// Cluster: every command touches exactly one key. Allow pipelines one
// single-key script call per limit, and Issue's multi-key script runs only
// outside a Cluster (there it is one single-key call per key), so keys of
// one operation never need to share a hash slot; do not put hash tags
// ({...}) in KeyPrefix.
type RedisStore struct {
	client  redis.UniversalClient
	ack     ackConfig // RedisOptions.MinReplicasAck (ack.go)
	prefix  string
	timeout time.Duration
	now     func() time.Time // wall clock for window indexes and ExpiresAt checks; replaced in tests

	pool     int          // connections per node
	inflight atomic.Int64 // operations started and not finished

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*RedisStore)(nil)

// rateScript increments one fixed-window counter and gives it an expiry on
// first use (or if it somehow lost it). One key per call: cluster safe.
var rateScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// claimScript is ClaimOnce: set the key to the owner unless it exists; 1 when
// the key now holds this owner (set now, or by an earlier try of the same
// claim), 0 when another owner holds it. One key per call: cluster safe.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
return 0
`)

// unclaimScript is Unclaim: compare and delete, so a claim is only ever
// released by its owner.
var unclaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// NewRedis validates o and builds a RedisStore on redis.NewUniversalClient.
// It does not contact Redis; call Ping to check connectivity.
//
// The client is tuned to fail fast: ContextTimeoutEnabled, Dial/Read/Write
// timeouts = Timeout, MaxRetries 1, DialerRetries 1, so a dead or hung Redis
// makes each operation fail within about Timeout rather than go-redis's
// multi-second defaults.
func NewRedis(o RedisOptions) (*RedisStore, error) {
	uo, err := o.universal()
	if err != nil {
		return nil, err
	}
	prefix := o.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	client := redis.NewUniversalClient(uo)
	if cc, ok := client.(*redis.ClusterClient); ok {
		cc.AddHook(clusterRefresh{cc}) // clusterstate.go
	}
	return &RedisStore{
		client:  client,
		ack:     newAckConfig(o.MinReplicasAck, uo.ReadTimeout),
		prefix:  prefix,
		timeout: uo.ReadTimeout,
		now:     time.Now,
		pool:    uo.PoolSize,
	}, nil
}

// universal validates o and translates it to go-redis options.
func (o RedisOptions) universal() (*redis.UniversalOptions, error) {
	const p = "token: redis options: "
	if o.Timeout < 0 {
		return nil, fmt.Errorf(p+"Timeout must not be negative, got %s", o.Timeout)
	}
	if o.PoolSize < 0 {
		return nil, fmt.Errorf(p+"PoolSize must not be negative, got %d", o.PoolSize)
	}
	if o.MinReplicasAck < 0 {
		return nil, fmt.Errorf(p+"MinReplicasAck must be 0 (do not wait for replicas) or positive, got %d", o.MinReplicasAck)
	}
	if o.DB < 0 {
		return nil, fmt.Errorf(p+"DB must not be negative, got %d", o.DB)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	pool := o.PoolSize
	if pool == 0 {
		pool = DefaultPoolSize()
	}
	uo := &redis.UniversalOptions{
		Username: o.Username,
		Password: o.Password,
		DB:       o.DB,

		ContextTimeoutEnabled: true,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		MaxRetries:            1,
		DialerRetries:         1,
		PoolSize:              pool,
		// CLIENT MAINT_NOTIFICATIONS is a Redis Enterprise/Cloud feature; skip the
		// extra handshake command (and its error) on every new connection.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}

	switch {
	case o.URL != "" && len(o.Addrs) > 0:
		return nil, errors.New(p + "set either URL (single server) or Addrs (cluster/sentinel), not both")
	case o.URL == "" && len(o.Addrs) == 0:
		return nil, errors.New(p + "one of URL (single server) or Addrs (cluster/sentinel) is required")
	case o.URL != "":
		if o.MasterName != "" {
			return nil, errors.New(p + "MasterName (sentinel) needs Addrs with the sentinel addresses, not URL")
		}
		ro, err := parseRedisURL(o.URL)
		if err != nil {
			return nil, err
		}
		uo.Addrs = []string{ro.Addr}
		if uo.Username == "" {
			uo.Username = ro.Username
		}
		if uo.Password == "" {
			uo.Password = ro.Password
		}
		if uo.DB == 0 {
			uo.DB = ro.DB
		}
		uo.TLSConfig = ro.TLSConfig
	default:
		for _, a := range o.Addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return nil, fmt.Errorf(p+"Addrs: %q is not host:port", a)
			}
		}
		uo.Addrs = append([]string(nil), o.Addrs...)
		uo.MasterName = o.MasterName
		if o.MasterName == "" {
			if o.DB != 0 {
				return nil, fmt.Errorf(p+"DB %d: Redis Cluster has only database 0", o.DB)
			}
			// Addrs without MasterName are cluster seeds, even a single one:
			// otherwise go-redis would silently make a plain client.
			uo.IsClusterMode = true
		}
	}

	switch {
	case o.TLSConfig != nil:
		uo.TLSConfig = o.TLSConfig.Clone()
	case o.TLS && uo.TLSConfig == nil:
		// ServerName is inferred from each node's address by crypto/tls.
		uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return uo, nil
}

// parseRedisURL parses a redis:// or rediss:// URL without ever echoing it
// (it may contain a password) in an error.
func parseRedisURL(raw string) (*redis.Options, error) {
	const p = "token: redis options: URL: "
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf(p+"cannot parse (value not shown, it may hold a password): %v", err)
	}
	switch u.Scheme {
	case "redis", "rediss":
	default:
		return nil, fmt.Errorf(p+"scheme %q is not supported; use redis:// or rediss:// (TLS)", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New(p + "missing host (want redis://host:port/db)")
	}
	if u.RawQuery != "" {
		return nil, errors.New(p + "query parameters are not supported; set RedisOptions fields instead")
	}
	ro, err := redis.ParseURL(u.String())
	if err != nil {
		// go-redis errors name the offending part (db, port), not the whole URL.
		return nil, fmt.Errorf(p+"%v", err)
	}
	return ro, nil
}

// Client returns the underlying go-redis client (for health checks and metrics).
func (s *RedisStore) Client() redis.UniversalClient { return s.client }

// PoolStats returns connection pool statistics for metrics.
func (s *RedisStore) PoolStats() *redis.PoolStats { return s.client.PoolStats() }

// Kind returns "redis".
func (s *RedisStore) Kind() string { return "redis" }

// Prefix returns the key prefix.
func (s *RedisStore) Prefix() string { return s.prefix }

// Timeout returns the per-operation timeout.
func (s *RedisStore) Timeout() time.Duration { return s.timeout }

// Close closes the client. It is safe to call more than once.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.client.Close() })
	return s.closeErr
}

// PoolSize returns the connection pool size per node.
func (s *RedisStore) PoolSize() int { return s.pool }

// ctx bounds one operation by the store's timeout and counts it in flight
// until its cancel function is called.
func (s *RedisStore) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	s.inflight.Add(1)
	c, cancel := context.WithTimeout(ctx, s.timeout)
	return c, func() { cancel(); s.inflight.Add(-1) }
}

// unavailable wraps a backend error so that errors.Is(err, ErrUnavailable)
// holds and the message names the failed command. When the pool had no
// free connection — go-redis's pool timeout; more operations in flight
// than connections; or every connection open and busy when the error
// came — it wraps ErrOverloaded as well: the wait for a connection (or the
// CPU) used up the timeout, which says nothing about Redis's health.
func (s *RedisStore) unavailable(cmd string, err error) error {
	n := s.inflight.Load()
	st := s.client.PoolStats()
	if errors.Is(err, redis.ErrPoolTimeout) || n > int64(s.pool) || (st.IdleConns == 0 && int(st.TotalConns) >= s.pool) {
		return fmt.Errorf("%w: %w: %d operations in flight, %d of %d connections busy: redis %s: %w",
			ErrUnavailable, ErrOverloaded, n, st.TotalConns-st.IdleConns, s.pool, cmd, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: redis %s: %w (timeout %s)", ErrUnavailable, cmd, err, s.timeout)
	}
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, cmd, err)
}

// Save stores rec under tok:<hash> with SET ... PX ttl.
func (s *RedisStore) Save(ctx context.Context, hash string, rec *Record, ttl time.Duration) error {
	if err := checkSave(hash, rec, ttl); err != nil {
		return err
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("token: encoding record: %w", err)
	}
	ctx, cancel := s.writeCtx(ctx)
	defer cancel()
	key := s.prefix + tokKeyPart + hash
	if s.ack.n == 0 {
		if err := s.client.Set(ctx, key, val, ttl).Err(); err != nil {
			return s.unavailable("SET", err)
		}
		return nil
	}
	_, err = s.acked(ctx, key, "SET", func(p redis.Pipeliner) redis.Cmder { return p.Set(ctx, key, val, ttl) })
	if err != nil {
		// The record may be on the primary (and even on some replicas): delete
		// it, so a token that is never handed out cannot be used either.
		s.discard(ctx, key)
		if errors.Is(err, ErrNotReplicated) {
			return fmt.Errorf("%w; the record was deleted and the token not handed out", err)
		}
		return err
	}
	return nil
}

// Get loads the record stored under tok:<hash>.
func (s *RedisStore) Get(ctx context.Context, hash string) (*Record, error) {
	if !validHash(hash) {
		return nil, ErrNotFound
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	val, err := s.client.Get(ctx, s.prefix+tokKeyPart+hash).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, s.unavailable("GET", err)
	}
	return decodeRecord(val, s.now())
}

// decodeRecord parses a stored record and applies the ExpiresAt check.
func decodeRecord(val []byte, now time.Time) (*Record, error) {
	rec := new(Record)
	if err := json.Unmarshal(val, rec); err != nil {
		// Fail closed, but do not call it "not found": a corrupt entry is a bug.
		return nil, fmt.Errorf("token: stored record is corrupt: %w", err)
	}
	if rec.Expired(now) {
		return nil, ErrNotFound
	}
	return rec, nil
}

// Revoke deletes tok:<hash>.
func (s *RedisStore) Revoke(ctx context.Context, hash string) (bool, error) {
	if !validHash(hash) {
		return false, nil
	}
	ctx, cancel := s.writeCtx(ctx)
	defer cancel()
	key := s.prefix + tokKeyPart + hash
	if s.ack.n == 0 {
		n, err := s.client.Del(ctx, key).Result()
		if err != nil {
			return false, s.unavailable("DEL", err)
		}
		return n > 0, nil
	}
	// A revocation a failover could undo is not a revocation: wait for the
	// replicas too, and report a failure (the caller answers 503, the client
	// retries).
	cmd, err := s.acked(ctx, key, "DEL", func(p redis.Pipeliner) redis.Cmder { return p.Del(ctx, key) })
	if err != nil {
		return false, err
	}
	return cmd.(*redis.IntCmd).Val() > 0, nil
}

// ClaimOnce runs a script that does SET once:<key> <owner> NX PX ttl and,
// when the key exists, compares its value with owner: a claim that go-redis
// retries after a lost reply (connection reset) finds its own owner and
// still wins, instead of reading as a replay.
func (s *RedisStore) ClaimOnce(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkKey("ClaimOnce", key); err != nil {
		return false, err
	}
	if err := checkOwner("ClaimOnce", owner); err != nil {
		return false, err
	}
	if err := checkTTL("ClaimOnce", ttl); err != nil {
		return false, err
	}
	ctx, cancel := s.writeCtx(ctx)
	defer cancel()
	k := s.prefix + onceKeyPart + key
	if _, cluster := s.client.(*redis.ClusterClient); cluster && s.ack.n > 0 {
		// On one primary (single server, Sentinel) the WAIT after the
		// token's SET confirms this earlier claim too; in a Cluster the claim
		// may live on another shard, so it needs its own WAIT.
		// EVAL, not EVALSHA: a NOSCRIPT retry would wait for the replicas
		// twice; the script is a few hundred bytes.
		cmd, err := s.acked(ctx, k, "claim", func(p redis.Pipeliner) redis.Cmder {
			return claimScript.Eval(ctx, p, []string{k}, owner, ttl.Milliseconds())
		})
		if err != nil {
			return false, err
		}
		n, err := cmd.(*redis.Cmd).Int64()
		if err != nil {
			return false, s.unavailable("EVALSHA (claim)", err)
		}
		return n == 1, nil
	}
	n, err := claimScript.Run(ctx, s.client, []string{k}, owner, ttl.Milliseconds()).Int64()
	if err != nil {
		// A failed claim is never "first use": callers must fail closed.
		return false, s.unavailable("EVALSHA (claim)", err)
	}
	return n == 1, nil
}

// Unclaim deletes once:<key> if it holds owner, in one script call.
func (s *RedisStore) Unclaim(ctx context.Context, key, owner string) error {
	if err := checkKey("Unclaim", key); err != nil {
		return err
	}
	if err := checkOwner("Unclaim", owner); err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := unclaimScript.Run(ctx, s.client, []string{s.prefix + onceKeyPart + key}, owner).Err(); err != nil {
		return s.unavailable("EVALSHA (unclaim)", err)
	}
	return nil
}

// Allow pipelines one EVALSHA of a single-key INCR+PEXPIRE script per limit:
// one round trip (per cluster node), atomic per counter, cluster safe. If the
// server does not have the script cached (NOSCRIPT, e.g. after a restart) the
// calls that got NOSCRIPT — only those — are repeated once with EVAL, which
// also caches it.
func (s *RedisStore) Allow(ctx context.Context, limits ...Limit) ([]LimitResult, error) {
	if len(limits) == 0 {
		return nil, nil
	}
	if err := checkLimits(limits); err != nil {
		return nil, err
	}
	now := s.now()
	keys := make([]string, len(limits))
	lefts := make([]time.Duration, len(limits))
	for i, l := range limits {
		idx, left := window(now, l.Window)
		keys[i] = s.prefix + rlKeyPart + l.Key + ":" + strconv.FormatInt(idx, 10)
		lefts[i] = left
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()

	calls := make([]scriptCall, len(limits))
	for i, l := range limits {
		calls[i] = scriptCall{rateScript, keys[i : i+1], []any{l.Window.Milliseconds()}}
	}
	cmds, err := s.evalScripts(ctx, calls) // redis_issue.go: NOSCRIPT calls, and only those, repeated with EVAL
	cmdName := "EVALSHA (rate limit)"
	if err != nil {
		return nil, s.unavailable(cmdName, err)
	}
	res := make([]LimitResult, len(limits))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, s.unavailable(cmdName, err)
		}
		res[i] = limitResult(limits[i], n, lefts[i])
	}
	return res, nil
}

// Ping sends PING (in cluster mode go-redis sends it to one, random, node).
func (s *RedisStore) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return s.unavailable("PING", err)
	}
	return nil
}
