package redistest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestStartPingAndConfig(t *testing.T) {
	s := Start(t)
	c := s.Client()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr = %q", s.Addr())
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL = %q, want %q", s.URL(), want)
	}
	cfg, err := c.ConfigGet(ctx(t), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1"} {
		if cfg[k] != want {
			t.Errorf("CONFIG %s = %q, want %q", k, cfg[k], want)
		}
	}
	if dir := cfg["dir"]; dir == "" || dir == "/" {
		t.Errorf("CONFIG dir = %q, want the test's temp dir", dir)
	}
}

func TestURLParsesWithGoRedis(t *testing.T) {
	s := Start(t, WithPassword("p@ss w:rd/"))
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	if opt.Password != "p@ss w:rd/" || opt.Addr != s.Addr() || opt.DB != 0 {
		t.Fatalf("ParseURL(%q) = pw %q addr %q db %d", s.URL(), opt.Password, opt.Addr, opt.DB)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING via URL: %v", err)
	}
}

func TestPasswordRequired(t *testing.T) {
	s := Start(t, WithPassword("secret"))
	if err := s.Client().Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	noAuth := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer noAuth.Close()
	err := noAuth.Ping(ctx(t)).Err()
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: err = %v, want NOAUTH", err)
	}
}

func TestStopRestart(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	c := s.Client()
	if err := c.Set(ctx(t), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	if pingRaw(addr) {
		t.Fatal("server still answers after Stop")
	}
	s.Stop() // idempotent
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	// The assertion client reconnects on its own; the data is gone.
	n, err := c.Exists(ctx(t), "k").Result()
	if err != nil {
		t.Fatalf("EXISTS after Restart: %v", err)
	}
	if n != 0 {
		t.Fatalf("key survived Restart (persistence should be off)")
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer c.Close()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Ping(short).Err(); err == nil {
		t.Fatal("PING answered while paused")
	}
	s.Resume()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	s.Pause() // cleanup must kill a paused server without hanging
}

func TestParallelServers(t *testing.T) {
	// Many servers at once: ports must not collide.
	const n = 8
	var mu sync.Mutex
	addrs := map[string]bool{}
	for i := range n {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			s := Start(t)
			if err := s.Client().Set(ctx(t), "i", i, 0).Err(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if addrs[s.Addr()] {
				t.Errorf("address %s handed out twice", s.Addr())
			}
			addrs[s.Addr()] = true
		})
	}
}

func TestPortTakenIsDetected(t *testing.T) {
	// A foreign Redis holds the port: start must refuse it rather than use it.
	foreign := Start(t)
	s := &Server{t: t, bin: foreign.bin, dir: t.TempDir(), port: foreign.port}
	defer s.shutdown()
	err := s.start()
	if err == nil {
		t.Fatal("start succeeded on a port held by another redis-server")
	}
	if !strings.Contains(err.Error(), "port already in use") {
		t.Fatalf("err = %v, want port already in use", err)
	}
}

// TestMissingBinary runs Start with an empty PATH in a subtest-like fake TB.
func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	t.Run("local skips", func(t *testing.T) {
		t.Setenv("CI", "")
		ft := &fakeTB{TB: t}
		runFake(ft, func() { Start(ft) })
		if !ft.skipped || ft.failed {
			t.Fatalf("skipped=%v failed=%v, want skip", ft.skipped, ft.failed)
		}
		if !strings.Contains(ft.msg, "apt-get install -y redis-server") {
			t.Errorf("skip message %q does not say how to install", ft.msg)
		}
	})
	t.Run("CI fails", func(t *testing.T) {
		t.Setenv("CI", "true")
		ft := &fakeTB{TB: t}
		runFake(ft, func() { Start(ft) })
		if !ft.failed {
			t.Fatalf("failed=%v, want failure under CI=true", ft.failed)
		}
		want := "redis-server not found; CI must install it (apt-get install -y redis-server)"
		if ft.msg != want {
			t.Errorf("message = %q, want %q", ft.msg, want)
		}
	})
}

// fakeTB records Skip/Fatal instead of ending the real test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

type stopNow struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	panic(stopNow{})
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	panic(stopNow{})
}

func runFake(f *fakeTB, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopNow); !ok {
				panic(r)
			}
		}
	}()
	fn()
}
