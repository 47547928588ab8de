package token

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

// replyDropper is a TCP proxy in front of Redis that loses replies: while
// armed, it forwards an EVALSHA to Redis, lets Redis apply it, and then closes
// the client's connection instead of delivering the reply. That is the
// "reply lost after the server applied the command" failure a connection
// reset or a failover produces.
type replyDropper struct {
	t      *testing.T
	ln     net.Listener
	target string
	armed  atomic.Int32 // EVALSHA replies still to drop
	drops  atomic.Int32 // replies dropped so far
	wg     sync.WaitGroup
}

func newReplyDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{t: t, ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *replyDropper) addr() string { return p.ln.Addr().String() }

func (p *replyDropper) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		var dropNext atomic.Bool
		closeBoth := func() { c.Close(); s.Close() }
		go func() { // client → Redis
			defer p.wg.Done()
			defer closeBoth()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					// go-redis writes a whole command per write; loopback
					// delivers it in one read.
					if bytes.Contains(bytes.ToLower(buf[:n]), []byte("evalsha")) && p.armed.Add(-1) >= 0 {
						dropNext.Store(true)
					}
					if _, werr := s.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // Redis → client
			defer p.wg.Done()
			defer closeBoth()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					if dropNext.Load() {
						p.drops.Add(1)
						return // the command was applied; its reply is lost
					}
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
						p.t.Logf("proxy: %v", err)
					}
					return
				}
			}
		}()
	}
}

// TestRedisClaimReplyLost: the claim's EVALSHA is applied by Redis but its
// reply never arrives.
func TestRedisClaimReplyLost(t *testing.T) {
	srv := redistest.Start(t)
	proxy := newReplyDropper(t, srv.Addr())
	s, _ := newTestRedis(t, srv, RedisOptions{URL: "redis://" + proxy.addr()})
	ctx := testCtx(t)
	raw := srv.Client()
	// Load both scripts, so that the EVALSHAs below do not meet NOSCRIPT.
	warm := NewClaimOwner()
	if ok, err := s.ClaimOnce(ctx, "warm-up", warm, time.Minute); err != nil || !ok {
		t.Fatalf("warm-up ClaimOnce = %v, %v", ok, err)
	}
	if err := s.Unclaim(ctx, "warm-up", warm); err != nil {
		t.Fatalf("warm-up Unclaim: %v", err)
	}

	t.Run("go-redis retry finds its own claim", func(t *testing.T) {
		// go-redis retries once after EOF (MaxRetries 1). The retry meets
		// the key the first try set: with the same owner it is the same
		// claim, not a replay.
		start := proxy.drops.Load()
		proxy.armed.Store(1)
		owner := NewClaimOwner()
		ok, err := s.ClaimOnce(ctx, "retried", owner, time.Minute)
		if proxy.drops.Load()-start != 1 {
			t.Fatalf("the proxy dropped %d replies, want 1", proxy.drops.Load()-start)
		}
		if err != nil || !ok {
			t.Fatalf("ClaimOnce whose first reply was lost = %v, %v; want true (the retry holds its own claim)", ok, err)
		}
		if v, err := raw.Get(ctx, DefaultKeyPrefix+"once:retried").Result(); err != nil || v != owner {
			t.Fatalf("claim value %q, %v; want %q", v, err, owner)
		}
		if ok, err := s.ClaimOnce(ctx, "retried", NewClaimOwner(), time.Minute); err != nil || ok {
			t.Fatalf("a replay after the retried claim = %v, %v; want false", ok, err)
		}
	})

	t.Run("every reply lost: error, and the owner can release", func(t *testing.T) {
		start := proxy.drops.Load()
		proxy.armed.Store(2) // the try and go-redis's one retry
		owner := NewClaimOwner()
		ok, err := s.ClaimOnce(ctx, "lost", owner, time.Minute)
		if ok || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("ClaimOnce with every reply lost = %v, %v; want false and ErrUnavailable", ok, err)
		}
		if proxy.drops.Load()-start != 2 {
			t.Fatalf("the proxy dropped %d replies, want 2", proxy.drops.Load()-start)
		}
		// Redis did apply it: without a release this OIDC token would be burned.
		if v, err := raw.Get(ctx, DefaultKeyPrefix+"once:lost").Result(); err != nil || v != owner {
			t.Fatalf("claim value %q, %v; want %q (applied despite the error)", v, err, owner)
		}
		// Someone else's release does nothing...
		if err := s.Unclaim(ctx, "lost", NewClaimOwner()); err != nil {
			t.Fatal(err)
		}
		if n := raw.Exists(ctx, DefaultKeyPrefix+"once:lost").Val(); n != 1 {
			t.Fatal("a foreign Unclaim released the claim")
		}
		// ...the owner's does.
		if err := s.Unclaim(ctx, "lost", owner); err != nil {
			t.Fatalf("Unclaim by the owner: %v", err)
		}
		if _, err := raw.Get(ctx, DefaultKeyPrefix+"once:lost").Result(); !errors.Is(err, redis.Nil) {
			t.Fatalf("claim still there after the owner's Unclaim: %v", err)
		}
		if ok, err := s.ClaimOnce(ctx, "lost", NewClaimOwner(), time.Minute); err != nil || !ok {
			t.Fatalf("ClaimOnce after the release = %v, %v; want true", ok, err)
		}
	})
}

// TestRedisClaimScriptsReload: after SCRIPT FLUSH (a failover to a fresh
// replica) ClaimOnce and Unclaim load their scripts again.
func TestRedisClaimScriptsReload(t *testing.T) {
	srv := redistest.Start(t)
	s, _ := newTestRedis(t, srv, RedisOptions{})
	ctx := testCtx(t)
	for i := range 2 {
		owner := NewClaimOwner()
		if ok, err := s.ClaimOnce(ctx, "k", owner, time.Minute); err != nil || !ok {
			t.Fatalf("round %d: ClaimOnce = %v, %v", i, ok, err)
		}
		if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Unclaim(ctx, "k", owner); err != nil {
			t.Fatalf("round %d: Unclaim: %v", i, err)
		}
		if n := srv.Client().Exists(ctx, DefaultKeyPrefix+"once:k").Val(); n != 0 {
			t.Fatalf("round %d: the key survived Unclaim", i)
		}
		if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewClaimOwner(t *testing.T) {
	a, b := NewClaimOwner(), NewClaimOwner()
	if len(a) != 32 || a == b {
		t.Fatalf("owners %q, %q: want 32 hex chars, distinct", a, b)
	}
	if err := checkOwner("test", a); err != nil {
		t.Fatal(err)
	}
}
