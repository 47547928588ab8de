package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// TestRedisMinReplicasAck: with MinReplicasAck the store's writes return
// only once WAIT confirmed them on the replicas; a write that cannot be
// confirmed is an ErrNotReplicated error, and Save deletes what it wrote.
func TestRedisMinReplicasAck(t *testing.T) {
	t.Parallel()
	g := redistest.StartSentinelGroup(t, redistest.SentinelOptions{Name: "ack", Replicas: 1, Sentinels: 1})
	primary, replica := g.Servers[0], g.Servers[1]
	ctx := context.Background()

	if _, err := NewRedis(RedisOptions{URL: primary.URL(), MinReplicasAck: -1}); err == nil || !strings.Contains(err.Error(), "MinReplicasAck") {
		t.Fatalf("negative MinReplicasAck: %v", err)
	}
	if got := AckTimeout(0); got != DefaultTimeout {
		t.Fatalf("AckTimeout(0) = %s", got)
	}

	// One replica required, one there: the record is on the replica the
	// moment Save returns (no polling: that is what WAIT guarantees).
	for _, o := range []RedisOptions{
		{URL: primary.URL(), KeyPrefix: "ack1:", MinReplicasAck: 1},
		{Addrs: g.SentinelAddrs(), MasterName: "ack", KeyPrefix: "ack2:", MinReplicasAck: 1},
	} {
		s, clock := newTestRedis(t, nil, o)
		_, h := mustNew(t)
		if err := s.Save(ctx, h, sampleRecord(clock.Now()), time.Minute); err != nil {
			t.Fatalf("%s Save: %v", o.KeyPrefix, err)
		}
		if n, err := replica.Client().Exists(ctx, o.KeyPrefix+"tok:"+h).Result(); err != nil || n != 1 {
			t.Fatalf("%s: the record on the replica right after Save: %d, %v", o.KeyPrefix, n, err)
		}
		if ok, err := s.Revoke(ctx, h); err != nil || !ok {
			t.Fatalf("%s Revoke: %v %v", o.KeyPrefix, ok, err)
		}
		if n, err := replica.Client().Exists(ctx, o.KeyPrefix+"tok:"+h).Result(); err != nil || n != 0 {
			t.Fatalf("%s: the record on the replica right after Revoke: %d, %v", o.KeyPrefix, n, err)
		}
		if ok, err := s.ClaimOnce(ctx, "k", "owner", time.Minute); err != nil || !ok {
			t.Fatalf("%s ClaimOnce: %v %v", o.KeyPrefix, ok, err)
		}
	}

	// Two required, one there: Save fails after the ack timeout, clearly,
	// and leaves nothing behind; Revoke fails too (the caller answers 503).
	s, clock := newTestRedis(t, nil, RedisOptions{URL: primary.URL(), KeyPrefix: "ack3:", MinReplicasAck: 2, Timeout: 200 * time.Millisecond})
	_, h := mustNew(t)
	start := time.Now()
	err := s.Save(ctx, h, sampleRecord(clock.Now()), time.Minute)
	if !errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrUnavailable) ||
		!strings.Contains(err.Error(), "reached 1 of the 2 replica(s) redis.min_replicas_ack requires within 200ms") ||
		!strings.Contains(err.Error(), "not handed out") {
		t.Fatalf("Save with too few replicas: %v", err)
	}
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Fatalf("Save failed after %s, before WAIT's 200ms", d)
	}
	if n, err := primary.Client().Exists(ctx, "ack3:tok:"+h).Result(); err != nil || n != 0 {
		t.Fatalf("the unconfirmed record is still on the primary: %d, %v", n, err)
	}
	if _, err := s.Get(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of the unconfirmed record: %v", err)
	}
	if _, err := s.Revoke(ctx, h); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("Revoke with too few replicas: %v", err)
	}

	// Issue, the exchange's one write: with two replicas required and one
	// there, it fails like Save and leaves no record (the caller releases
	// its claim); a refusal by a limit needs no replica and is answered.
	iss := Issuance{Limits: []Limit{{Key: "p", Max: 1, Window: time.Minute}}, ClaimKey: "jti:ack", ClaimOwner: NewClaimOwner(), ClaimTTL: time.Minute,
		Record: sampleRecord(clock.Now()), TTL: time.Minute}
	_, iss.Hash = mustNew(t)
	if _, err := s.Issue(ctx, iss); !errors.Is(err, ErrNotReplicated) || !strings.Contains(err.Error(), "not handed out") {
		t.Fatalf("Issue with too few replicas: %v", err)
	}
	if n, err := primary.Client().Exists(ctx, "ack3:tok:"+iss.Hash).Result(); err != nil || n != 0 {
		t.Fatalf("the unconfirmed issued record is still on the primary: %d, %v", n, err)
	}
	limited := iss
	limited.ClaimKey, limited.ClaimOwner = "jti:ack2", NewClaimOwner()
	_, limited.Hash = mustNew(t)
	if res, err := s.Issue(ctx, limited); err != nil || !res.Limited {
		t.Fatalf("Issue over the limit with too few replicas = %+v, %v; want Limited and no error", res, err)
	}
	// One required, one there: the record is on the replica when Issue returns.
	s2, clock2 := newTestRedis(t, nil, RedisOptions{URL: primary.URL(), KeyPrefix: "ack5:", MinReplicasAck: 1})
	iss2 := Issuance{ClaimKey: "jti:ack", ClaimOwner: NewClaimOwner(), ClaimTTL: time.Minute, Record: sampleRecord(clock2.Now()), TTL: time.Minute, EpochKey: "ack5:epochs"}
	_, iss2.Hash = mustNew(t)
	if res, err := s2.Issue(ctx, iss2); err != nil || !res.Saved() {
		t.Fatalf("Issue with the replica required = %+v, %v", res, err)
	}
	if n, err := replica.Client().Exists(ctx, "ack5:tok:"+iss2.Hash, "ack5:once:jti:ack").Result(); err != nil || n != 2 {
		t.Fatalf("the record and claim on the replica right after Issue: %d of 2, %v", n, err)
	}

	// A hung replica: nothing is confirmed until it answers again.
	s1, clock := newTestRedis(t, nil, RedisOptions{URL: primary.URL(), KeyPrefix: "ack4:", MinReplicasAck: 1, Timeout: 200 * time.Millisecond})
	replica.Pause()
	_, h = mustNew(t)
	err = s1.Save(ctx, h, sampleRecord(clock.Now()), time.Minute)
	replica.Resume()
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("Save with the replica hung: %v", err)
	}
	if _, err := s1.Get(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of the unconfirmed record: %v", err)
	}
	testkit.Await(t, 10*time.Second, "a Save confirmed after the replica resumed", func() bool {
		_, h := mustNew(t)
		return s1.Save(ctx, h, sampleRecord(clock.Now()), time.Minute) == nil
	})
}

// TestRedisClusterMinReplicasAckConformance runs the whole store suite on
// a Cluster of three primaries with a replica each, with MinReplicasAck 1:
// WAIT goes to the primary owning each key (a keyless command the cluster
// client would otherwise send to any node), for tokens and claims alike.
// Then it checks that a requirement the cluster cannot meet fails.
func TestRedisClusterMinReplicasAckConformance(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartClusterWithReplicas(t, redistest.ClusterOptions{Primaries: 3, ReplicasEach: 1})
	addrs := redistest.ClusterAddrs(nodes)
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DisableIdentity: true})
	t.Cleanup(func() { raw.Close() })
	runStoreConformance(t, func(t *testing.T) *storeRig {
		prefix := fmt.Sprintf("ca%d:", prefixSeq.Add(1))
		s, clock := newTestRedis(t, nil, RedisOptions{Addrs: addrs, KeyPrefix: prefix, MinReplicasAck: 1})
		return &storeRig{
			Store: s, clock: clock, raw: raw, prefix: prefix,
			elapse: func(t *testing.T, d time.Duration, cond func() bool) {
				t.Helper()
				clock.Advance(d)
				testkit.Await(t, d+5*time.Second, "Redis native expiry", cond)
			},
		}
	})
	ctx := context.Background()
	s, clock := newTestRedis(t, nil, RedisOptions{Addrs: addrs, KeyPrefix: "cb:", MinReplicasAck: 1})
	// Every saved record is on its shard's replica when Save returns.
	for range 20 {
		_, h := mustNew(t)
		if err := s.Save(ctx, h, sampleRecord(clock.Now()), time.Minute); err != nil {
			t.Fatal(err)
		}
		key := "cb:tok:" + h
		p := redistest.ClusterPrimaryForKey(t, nodes, key)
		found := false
		for _, n := range nodes {
			if n == p {
				continue
			}
			info, err := n.Client().Info(ctx, "replication").Result()
			if err != nil || !strings.Contains(info, fmt.Sprintf("master_port:%d", p.Port())) {
				continue
			}
			// READONLY lets a cluster replica answer for its primary's slots.
			c := n.Client().Conn()
			if err := c.ReadOnly(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			v, err := c.Exists(ctx, key).Result()
			c.Close()
			if err != nil || v != 1 {
				t.Fatalf("record %s not on the replica %s of %s: %d %v", key, n.Addr(), p.Addr(), v, err)
			}
			found = true
		}
		if !found {
			t.Fatalf("no replica of %s", p.Addr())
		}
	}
	s2, clock := newTestRedis(t, nil, RedisOptions{Addrs: addrs, KeyPrefix: "cc:", MinReplicasAck: 2, Timeout: 200 * time.Millisecond})
	if _, err := s2.ClaimOnce(ctx, "k", "o", time.Minute); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("ClaimOnce with too few replicas: %v", err)
	}
	_, h := mustNew(t)
	if err := s2.Save(ctx, h, sampleRecord(clock.Now()), time.Minute); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("Save with too few replicas: %v", err)
	}
	if n, err := raw.Exists(ctx, "cc:tok:"+h).Result(); err != nil || n != 0 {
		t.Fatalf("the unconfirmed record is still there: %d %v", n, err)
	}
}

// TestRedisClusterAllowNoscriptOnSomeNodes: in a Cluster the rate-limit
// script may be cached on some nodes and not on others; Allow repeats only
// the calls that got NOSCRIPT, so no counter is incremented twice.
func TestRedisClusterAllowNoscriptOnSomeNodes(t *testing.T) {
	t.Parallel()
	nodes := redistest.StartCluster(t, 3)
	s, _ := newTestRedis(t, nil, RedisOptions{Addrs: redistest.ClusterAddrs(nodes), KeyPrefix: "ns:"})
	ctx := context.Background()
	// Keys on two different nodes; the script cached on only one of them.
	a, b := Limit{Key: "a", Max: 5, Window: time.Minute}, Limit{Key: "b", Max: 5, Window: time.Minute}
	idx, _ := window(s.now(), time.Minute)
	key := func(l Limit) string { return fmt.Sprintf("ns:rl:%s:%d", l.Key, idx) }
	for i := 0; ; i++ {
		b.Key = fmt.Sprintf("b%d", i)
		ka := redistest.ClusterPrimaryForKey(t, nodes, key(a))
		kb := redistest.ClusterPrimaryForKey(t, nodes, key(b))
		if ka != kb {
			if err := rateScript.Load(ctx, ka.Client()).Err(); err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				if n != ka {
					if err := n.Client().ScriptFlush(ctx).Err(); err != nil {
						t.Fatal(err)
					}
				}
			}
			break
		}
	}
	res, err := s.Allow(ctx, a, b)
	if err != nil || res[0].Remaining != 4 || res[1].Remaining != 4 {
		t.Fatalf("first Allow: %+v, %v (a counter counted twice?)", res, err)
	}
}
