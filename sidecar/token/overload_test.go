package token

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

// TestRedisOverloadIsNotUnavailability: when every pooled connection is
// busy and an operation cannot get one within the timeout, the error wraps
// ErrOverloaded (and ErrUnavailable), so callers report overload rather
// than blame a healthy Redis (issue 11 #12). A failure with a free pool is
// not overload.
func TestRedisOverloadIsNotUnavailability(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{PoolSize: 1, Timeout: 150 * time.Millisecond})
	if s.PoolSize() != 1 {
		t.Fatalf("PoolSize() = %d", s.PoolSize())
	}
	assertWorks(t, s)
	// Hold the only connection with a blocking command.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Client().BLPop(ctx, 2*time.Second, "oidc-sidecar-test:never").Err()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for st := s.PoolStats(); st.TotalConns != 1 || st.IdleConns != 0; st = s.PoolStats() {
		if time.Now().After(deadline) {
			t.Fatalf("the blocking command never took the connection: %+v", st)
		}
		runtime.Gosched()
	}
	_, err := s.Get(context.Background(), Hash("x"))
	if !errors.Is(err, ErrOverloaded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with the pool exhausted = %v, want ErrOverloaded", err)
	}
	if !strings.Contains(err.Error(), "1 of 1 connections busy") {
		t.Errorf("message %q", err)
	}
	<-done
	// Redis gone, pool free: unavailable, not overloaded.
	srv.Stop()
	_, err = s.Get(context.Background(), Hash("x"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded) {
		t.Fatalf("Get with Redis stopped = %v, want ErrUnavailable only", err)
	}
}

func TestDefaultPoolSizeFromGOMAXPROCS(t *testing.T) {
	s, err := NewRedis(RedisOptions{URL: "redis://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if want := 10 * runtime.GOMAXPROCS(0); s.PoolSize() != want || DefaultPoolSize() != want {
		t.Errorf("PoolSize() = %d, DefaultPoolSize() = %d, want 10 × GOMAXPROCS = %d", s.PoolSize(), DefaultPoolSize(), want)
	}
}
