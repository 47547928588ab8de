package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated means a write was applied on the Redis primary but not
// confirmed by RedisOptions.MinReplicasAck replicas in time. Errors
// wrapping it wrap ErrUnavailable too.
var ErrNotReplicated = errors.New("not confirmed by enough replicas")

// ackConfig is RedisOptions.MinReplicasAck, resolved.
type ackConfig struct {
	n    int           // replicas that must confirm a write; 0 = do not wait
	wait time.Duration // WAIT's timeout
	op   time.Duration // the deadline of a write + WAIT
}

func newAckConfig(n int, timeout time.Duration) ackConfig {
	return ackConfig{n: n, wait: AckTimeout(timeout), op: timeout + AckTimeout(timeout) + ackSlack}
}

// AckTimeout is how long WAIT waits for RedisOptions.MinReplicasAck
// replicas, given the per-operation timeout (0 = DefaultTimeout): the same
// duration. An operation that waits for replicas is bounded by the timeout
// for the write, plus AckTimeout for WAIT, plus ackSlack.
func AckTimeout(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return timeout
}

// ackSlack is added to an acknowledged write's deadline: Redis checks WAIT
// timeouts on its cron (hz 10 by default), so WAIT may answer up to about
// 100ms after its timeout.
const ackSlack = 200 * time.Millisecond

// writeCtx is ctx for a write that may wait for replicas (Save, Revoke,
// ClaimOnce). Like ctx, it counts the operation in flight (overload
// detection) until its cancel function is called.
func (s *RedisStore) writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.ack.n > 0 {
		s.inflight.Add(1)
		c, cancel := context.WithTimeout(ctx, s.ack.op)
		return c, func() { cancel(); s.inflight.Add(-1) }
	}
	return s.ctx(ctx)
}

// acked runs write and WAIT minAck ackWait in one pipeline on one
// connection to the primary that owns key (in Cluster mode WAIT has no key,
// so the pipeline goes to MasterForKey's node instead of letting the
// cluster client route a keyless command to any node). WAIT confirms every
// write this connection made, so the write itself. The result is write's
// command; an error wraps ErrUnavailable, and ErrNotReplicated when WAIT
// counted fewer than minAck replicas.
func (s *RedisStore) acked(ctx context.Context, key, name string, write func(redis.Pipeliner) redis.Cmder) (redis.Cmder, error) {
	var node *redis.Client
	cc, cluster := s.client.(*redis.ClusterClient)
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		n, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, s.unavailable(name+" (finding the key's primary)", err)
		}
		node = n
	case *redis.Client: // one server, or Sentinel's failover client
		node = c
	default:
		return nil, fmt.Errorf("%w: redis %s: cannot wait for replicas with a %T", ErrUnavailable, name, s.client)
	}
	// A pipeline's replies must arrive within the client's read timeout;
	// WAIT's may take the ack timeout more. The clone shares the pool.
	c := node.WithTimeout(s.ack.op)
	var wcmd redis.Cmder
	var wait *redis.Cmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		wcmd = write(p)
		wait = p.Do(ctx, "wait", s.ack.n, s.ack.wait.Milliseconds())
		return nil
	})
	if err != nil {
		if cluster {
			// A MOVED or a dead node: the cluster client's slot map is stale
			// (e.g. after a failover); refresh it for the next call.
			cc.ReloadState(ctx)
		}
		if wcmd != nil && wcmd.Err() != nil {
			return wcmd, s.unavailable(name, wcmd.Err())
		}
		return wcmd, s.unavailable(name+"+WAIT", err)
	}
	n, err := wait.Int64()
	if err != nil {
		return wcmd, s.unavailable("WAIT", err)
	}
	if n < int64(s.ack.n) {
		return wcmd, fmt.Errorf("%w: %w: redis WAIT: the %s reached %d of the %d replica(s) redis.min_replicas_ack requires within %s",
			ErrUnavailable, ErrNotReplicated, name, n, s.ack.n, s.ack.wait)
	}
	return wcmd, nil
}

// discard deletes key, best effort, on a fresh context (ctx may be spent).
func (s *RedisStore) discard(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	_ = s.client.Del(ctx, key).Err()
}
