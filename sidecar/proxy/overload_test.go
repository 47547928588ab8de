package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// gatedStore holds every Get until release is closed.
type gatedStore struct {
	token.Store
	release chan struct{}
}

func (g *gatedStore) Get(ctx context.Context, hash string) (*token.Record, error) {
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Store.Get(ctx, hash)
}

// TestColdTokenBurstCoalesced: concurrent requests with one uncached token
// share one store lookup (issue 11 #12).
func TestColdTokenBurstCoalesced(t *testing.T) {
	stores(t, func(t *testing.T, store token.Store) {
		g := &gatedStore{Store: store, release: make(chan struct{})}
		f := newRig(t, g)
		tok := f.mint(record("WORKSPACE"))
		const n = 50
		var wg sync.WaitGroup
		statuses := make(chan int, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- f.do(http.MethodGet, "/workspaces/acme", tok, nil, nil).status
			}()
		}
		deadline := time.Now().Add(10 * time.Second)
		for f.proxy.cache.waiting.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d lookups reached the cache", f.proxy.cache.waiting.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
		close(g.release)
		wg.Wait()
		close(statuses)
		for s := range statuses {
			if s != http.StatusOK {
				t.Errorf("status %d, want 200", s)
			}
		}
		if got := f.store.gets.Load(); got != 1 {
			t.Errorf("%d store lookups for %d concurrent requests with one cold token, want 1", got, n)
		}
	})
}

// overloadedStore fails every Get as the Redis store does when no pooled
// connection is free in time.
type overloadedStore struct{ token.Store }

func (overloadedStore) Get(context.Context, string) (*token.Record, error) {
	return nil, fmt.Errorf("%w: %w: 300 operations in flight, 20 of 20 connections busy: redis GET: context deadline exceeded", token.ErrUnavailable, token.ErrOverloaded)
}

// TestOverloadReportedAsOverload: a lookup that failed for want of a store
// connection is a 503 with its own message, code, metric and Retry-After,
// not "token store unavailable" (issue 11 #12).
func TestOverloadReportedAsOverload(t *testing.T) {
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	f := newRig(t, overloadedStore{st})
	tok := f.mint(record("WORKSPACE"))
	r := f.do(http.MethodGet, "/workspaces/acme", tok, nil, nil)
	if r.status != http.StatusServiceUnavailable || r.body != errBody("The sidecar is overloaded; retry in a second") {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	lines := f.auditLines()
	if len(lines) != 1 || lines[0]["code"] != CodeOverloaded {
		t.Errorf("audit %v", lines)
	}
	if strings.Contains(f.logs.String(), "token store lookup failed") {
		t.Errorf("the log blames the store:\n%s", f.logs.String())
	}
}
