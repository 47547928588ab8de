package revocation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Key and channel names below the store's key prefix.
const (
	// ChannelPart is the sharded pub/sub channel (SPUBLISH/SSUBSCRIBE).
	ChannelPart = "invalidate"
	// EpochsPart is the hash of provider id → epoch.
	EpochsPart = "epochs"
)

// Redis is the Backend on the token store's Redis (single server, Sentinel
// or Cluster).
//
// Events use sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7.0+) on one
// channel, <prefix>invalidate. In a Cluster a sharded channel belongs to
// the shard owning its hash slot: a message goes to that shard's primary
// and replicas only, instead of being broadcast over the cluster bus to
// every node (classic PUBLISH), and the subscription follows the slot's
// owner across a failover (the client re-resolves the slot when it
// resubscribes). On a single server or Sentinel it behaves like classic
// pub/sub. The epochs are one hash, <prefix>epochs (one slot).
type Redis struct {
	client  redis.UniversalClient
	channel string
	epochs  string
	timeout time.Duration
	// Heartbeat is how often an idle subscription is pinged; two silent
	// heartbeats mark it lost. Default 1s.
	Heartbeat time.Duration
	// Backoff bounds the wait between resubscription attempts (default 500ms).
	Backoff time.Duration
}

// NewRedis returns the backend for a token.RedisStore.
func NewRedis(s *token.RedisStore) *Redis {
	return NewRedisClient(s.Client(), s.Prefix(), s.Timeout())
}

// NewRedisClient returns the backend on client with keys under prefix.
func NewRedisClient(client redis.UniversalClient, prefix string, timeout time.Duration) *Redis {
	if timeout <= 0 {
		timeout = token.DefaultTimeout
	}
	return &Redis{client: client, channel: prefix + ChannelPart, epochs: prefix + EpochsPart, timeout: timeout,
		Heartbeat: time.Second, Backoff: 500 * time.Millisecond}
}

// Kind returns "redis".
func (r *Redis) Kind() string { return "redis" }

func (r *Redis) unavailable(cmd string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", token.ErrUnavailable, cmd, err)
}

// Publish sends e with SPUBLISH.
func (r *Redis) Publish(ctx context.Context, e Event) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.SPublish(ctx, r.channel, encode(e)).Err(); err != nil {
		return r.unavailable("SPUBLISH", err)
	}
	return nil
}

// Epoch is HGET.
func (r *Redis) Epoch(ctx context.Context, providerID string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := r.client.HGet(ctx, r.epochs, providerID).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, r.unavailable("HGET (epoch)", err)
	}
	return v, nil
}

// Epochs is HGETALL.
func (r *Redis) Epochs(ctx context.Context) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	all, err := r.client.HGetAll(ctx, r.epochs).Result()
	if err != nil {
		return nil, r.unavailable("HGETALL (epochs)", err)
	}
	out := make(map[string]int64, len(all))
	for k, v := range all {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("revocation: epoch of provider %q in %s is %q, not an integer", k, r.epochs, v)
		}
		out[k] = n
	}
	return out, nil
}

// raiseScript: epoch = max(current + 1, server time in ms). TIME in a
// script is fine since Redis 5 (effects replication).
var raiseScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = cur + 1
if now > v then v = now end
redis.call('HSET', KEYS[1], ARGV[1], v)
return v
`)

// RaiseEpoch runs the raise script on the epochs hash.
func (r *Redis) RaiseEpoch(ctx context.Context, providerID string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := raiseScript.Run(ctx, r.client, []string{r.epochs}, providerID).Int64()
	if err != nil {
		return 0, r.unavailable("EVALSHA (raise epoch)", err)
	}
	return v, nil
}

// Subscribe keeps one SSUBSCRIBE connection, resubscribing after any error
// and reporting each (re)subscription and loss.
func (r *Redis) Subscribe(ctx context.Context, on func(Event), state func(bool, error)) {
	backoff := r.Backoff
	for ctx.Err() == nil {
		err := r.subscribeOnce(ctx, on, state)
		if ctx.Err() != nil {
			return
		}
		state(false, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func (r *Redis) subscribeOnce(ctx context.Context, on func(Event), state func(bool, error)) error {
	ps := r.client.SSubscribe(ctx)
	defer ps.Close()
	if err := ps.SSubscribe(ctx, r.channel); err != nil {
		return fmt.Errorf("SSUBSCRIBE %s: %w", r.channel, err)
	}
	// The confirmation: only then are messages certain to reach us.
	msg, err := ps.ReceiveTimeout(ctx, r.timeout+r.Heartbeat)
	if err != nil {
		return fmt.Errorf("SSUBSCRIBE %s: %w", r.channel, err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("SSUBSCRIBE %s: unexpected first reply %T", r.channel, msg)
	}
	state(true, nil)
	silent := 0
	for {
		msg, err := ps.ReceiveTimeout(ctx, r.Heartbeat)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var te interface{ Timeout() bool }
			if errors.As(err, &te) && te.Timeout() {
				silent++
				if silent >= 2 {
					return fmt.Errorf("subscription silent for %s (no answer to PING)", 2*r.Heartbeat)
				}
				if err := ps.Ping(ctx); err != nil {
					return fmt.Errorf("PING on the subscription: %w", err)
				}
				continue
			}
			return err
		}
		silent = 0
		switch m := msg.(type) {
		case *redis.Message:
			e, err := decode(m.Payload)
			if err != nil {
				e = Event{} // invalid: on flushes everything
			}
			on(e)
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				// The server drops sharded subscriptions when the slot
				// moves (resharding, failover): subscribe again.
				return errors.New("the server ended the sharded subscription (slot moved)")
			}
		case *redis.Pong:
		}
	}
}

// Memory is the in-process Backend for the embedded store: the same
// events and epochs, delivered synchronously to this process's
// subscribers.
type Memory struct {
	now    func() time.Time
	mu     sync.Mutex
	subs   map[int]func(Event)
	next   int
	epochs map[string]int64
}

// NewMemory returns an in-process backend (now: nil means time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, subs: map[int]func(Event){}, epochs: map[string]int64{}}
}

// Kind returns "memory".
func (m *Memory) Kind() string { return "memory" }

// Publish delivers e to every subscriber before it returns.
func (m *Memory) Publish(_ context.Context, e Event) error {
	m.mu.Lock()
	subs := make([]func(Event), 0, len(m.subs))
	for _, f := range m.subs {
		subs = append(subs, f)
	}
	m.mu.Unlock()
	for _, f := range subs {
		f(e)
	}
	return nil
}

// Subscribe registers on until ctx ends.
func (m *Memory) Subscribe(ctx context.Context, on func(Event), state func(bool, error)) {
	m.mu.Lock()
	id := m.next
	m.next++
	m.subs[id] = on
	m.mu.Unlock()
	state(true, nil)
	<-ctx.Done()
	m.mu.Lock()
	delete(m.subs, id)
	m.mu.Unlock()
}

// Epoch returns the provider's epoch.
func (m *Memory) Epoch(_ context.Context, providerID string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epochs[providerID], nil
}

// Epochs returns a copy of every epoch.
func (m *Memory) Epochs(context.Context) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.epochs))
	for k, v := range m.epochs {
		out[k] = v
	}
	return out, nil
}

// RaiseEpoch sets the epoch to max(current+1, now in ms).
func (m *Memory) RaiseEpoch(_ context.Context, providerID string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := max(m.epochs[providerID]+1, m.now().UnixMilli())
	m.epochs[providerID] = v
	return v, nil
}
