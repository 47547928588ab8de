package token

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

// TestMain silences go-redis's own logger (one "failed to dial" line per
// attempt in the fault tests); errors reach the tests through return values.
// Set REDIS_LOG=1 to see it.
func TestMain(m *testing.M) {
	if os.Getenv("REDIS_LOG") == "" {
		redis.SetLogger(quietLogger{})
	}
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func benchRedis(b *testing.B) *RedisStore {
	srv := redistest.Start(b)
	s, err := NewRedis(RedisOptions{URL: srv.URL(), Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRedisSaveGet: one Save (SET PX) and one Get (GET + JSON decode)
// per op, sequential, loopback.
func BenchmarkRedisSaveGet(b *testing.B) {
	s := benchRedis(b)
	ctx := context.Background()
	rec := sampleRecord(time.Now())
	_, h, _ := New()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(ctx, h, rec, time.Minute); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Get(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisGetParallel: Get from GOMAXPROCS×4 goroutines.
func BenchmarkRedisGetParallel(b *testing.B) {
	s := benchRedis(b)
	ctx := context.Background()
	_, h, _ := New()
	if err := s.Save(ctx, h, sampleRecord(time.Now()), time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, h); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisClaimOnce: the claim script (SET NX PX, owner compare) on a
// fresh key per op.
func BenchmarkRedisClaimOnce(b *testing.B) {
	s := benchRedis(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		ok, err := s.ClaimOnce(ctx, fmt.Sprintf("jti-%d", n.Add(1)), "bench-owner", time.Minute)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkRedisAllow3: three limits in one pipelined round trip.
func BenchmarkRedisAllow3(b *testing.B) {
	s := benchRedis(b)
	ctx := context.Background()
	limits := []Limit{
		{Key: "provider:p1", Max: 1 << 30, Window: time.Minute},
		{Key: "ip:203.0.113.9", Max: 1 << 30, Window: time.Minute},
		{Key: "sub:x", Max: 1 << 30, Window: time.Minute},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Allow(ctx, limits...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemorySaveGet is the in-process counterpart of BenchmarkRedisSaveGet.
func BenchmarkMemorySaveGet(b *testing.B) {
	m := NewMemory(nil)
	defer m.Close()
	ctx := context.Background()
	rec := sampleRecord(time.Now())
	_, h, _ := New()
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Save(ctx, h, rec, time.Minute); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Get(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisSaveMinReplicasAck: one Save per op on a primary with one
// replica (loopback), without waiting for it (ack0) and with WAIT 1 (ack1):
// the difference is what redis.min_replicas_ack costs a token exchange.
func BenchmarkRedisSaveMinReplicasAck(b *testing.B) {
	primary := redistest.Start(b, redistest.WithArgs(redistest.FastSyncArgs()...))
	redistest.StartReplica(b, primary)
	for _, ack := range []int{0, 1} {
		b.Run(fmt.Sprintf("ack%d", ack), func(b *testing.B) {
			s, err := NewRedis(RedisOptions{URL: primary.URL(), Timeout: time.Second, MinReplicasAck: ack})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			rec := sampleRecord(time.Now())
			b.ReportAllocs()
			for b.Loop() {
				_, h, _ := New()
				if err := s.Save(ctx, h, rec, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
