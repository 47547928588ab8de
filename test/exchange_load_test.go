package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/open-policy-agent/opa/v1/rego"
)

// TestExchangeThroughput is issue #3's exchange benchmark, run only when
// asked (it is a measurement, not a test; it fails only on a wrong answer):
//
//	OIDC_SIDECAR_EXCHANGE_LOAD=1 go test -count=1 ./test -run '^TestExchangeThroughput$' -v
//
// Against the built binary with Redis (rate limits on, counted in Redis;
// replay guard on) and the fake GitHub-like issuer (RS256), a Go load
// generator on the same 2 cores sends Buddy-endpoint exchanges, each with
// its own pre-signed token:
//
//  1. closed loop: loadWorkers workers back to back for 4 s → exchanges/s,
//     and the sidecar process's CPU per exchange (from /proc);
//  2. open loop at half of 3,000/s (the "half that rate") for
//     10 s → p50/p99 latency from each request's scheduled start;
//  3. the floor, in this process: RS256 jwt.Parse (jwx) + one prepared
//     OPA evaluation of performance-floors B.2's module + one Redis SET,
//     serially → CPU per operation.
//
// With OIDC_SIDECAR_EXCHANGE_PROFILE=FILE the sidecar runs with pprof on
// and a CPU profile of the closed loop (its 4 s) is fetched from the admin
// listener's /debug/pprof/profile into FILE (go tool pprof -top FILE).
// Profiling costs the sidecar a few per cent of its CPU, so the capacity of
// such a run is not a figure for the tables.
//
// OIDC_SIDECAR_EXCHANGE_LIMITS=off turns the rate limits off (one Redis
// round trip per exchange instead of two: issue #17's condition), and
// OIDC_SIDECAR_EXCHANGE_WORKERS=N sets the closed loop's workers (default 32).
func TestExchangeThroughput(t *testing.T) {
	if os.Getenv("OIDC_SIDECAR_EXCHANGE_LOAD") == "" {
		t.Skip("a benchmark: set OIDC_SIDECAR_EXCHANGE_LOAD=1 to run it")
	}
	const (
		capacityFor = 4 * time.Second
		openRate    = 1500.0
		openFor     = 10 * time.Second
	)
	workers := 32
	if v := os.Getenv("OIDC_SIDECAR_EXCHANGE_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("OIDC_SIDECAR_EXCHANGE_WORKERS=%q: want a positive number", v)
		}
		workers = n
	}
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg["rate_limits"] = map[string]any{"per_ip": 1 << 30, "per_provider": 1 << 30, "window": "1m"}
	switch v := os.Getenv("OIDC_SIDECAR_EXCHANGE_LIMITS"); v {
	case "", "on":
	case "off":
		cfg["rate_limits"] = map[string]any{"per_ip": 0, "per_provider": 0, "window": "1m"}
	default:
		t.Fatalf("OIDC_SIDECAR_EXCHANGE_LIMITS=%q: use on or off", v)
	}
	cfg["log_level"] = "warn"
	profile := os.Getenv("OIDC_SIDECAR_EXCHANGE_PROFILE")
	if profile != "" {
		cfg["pprof"] = true
	}
	s := startSidecar(t, cfg, nil)

	life := 10 * time.Minute
	claims := func() map[string]any {
		c := w.ghClaims()
		c["exp"] = time.Now().Add(life).Unix()
		return c
	}
	signStart := time.Now()
	capPool := presign(t, w.gh, 10000*int(capacityFor.Seconds()), claims)
	openPool := presign(t, w.gh, int(openRate*openFor.Seconds())+100, claims)
	t.Logf("pre-signed %d RS256 tokens in %s", len(capPool.toks)+len(openPool.toks), time.Since(signStart).Round(time.Millisecond))

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute,
	}}
	var bad atomic.Int64
	var badSample atomic.Value
	exchange := func(jwt string) {
		body := `{"provider_id":"` + ghID + `","web_identity_token":"` + jwt + `"}`
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/user/oidc/tokens", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			bad.Add(1)
			badSample.Store(err.Error())
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			bad.Add(1)
			badSample.Store(fmt.Sprintf("%d %s", resp.StatusCode, truncate(string(b), 200)))
		}
	}
	// Warm up: connections, JWKS, policy.
	for range 20 {
		tok, _ := openPool.take()
		exchange(tok)
	}

	// 1. Capacity, closed loop.
	cpu0 := procCPU(t, s.Pid())
	var done atomic.Int64
	var wg sync.WaitGroup
	profiled := make(chan error, 1)
	if profile != "" {
		go func() { profiled <- fetchCPUProfile(s.AdminURL, capacityFor, profile) }()
	} else {
		profiled <- nil
	}
	start := time.Now()
	deadline := start.Add(capacityFor)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				tok, ok := capPool.take()
				if !ok {
					return
				}
				exchange(tok)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	cpu := procCPU(t, s.Pid()) - cpu0
	n := done.Load()
	if _, ok := capPool.take(); !ok {
		t.Errorf("the capacity phase ran out of pre-signed tokens: raise the pool")
	}
	capacity := float64(n) / took.Seconds()
	cpuPer := cpu / time.Duration(n)
	if err := <-profiled; err != nil {
		t.Errorf("CPU profile: %v", err)
	} else if profile != "" {
		t.Logf("CPU profile of the closed loop written to %s (go tool pprof -top %s)", profile, profile)
	}

	// 2. Open loop at 1,500/s.
	var mu sync.Mutex
	var lat []time.Duration
	jobs := make(chan time.Time, int(openRate*openFor.Seconds())+1)
	for range maxInFlight {
		wg.Go(func() {
			for due := range jobs {
				tok, ok := openPool.take()
				if !ok {
					bad.Add(1)
					badSample.Store("open-loop pool empty")
					continue
				}
				exchange(tok)
				d := time.Since(due)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	total := int(openRate * openFor.Seconds())
	interval := time.Second * 2 / 3000 // 1/openRate
	openStart := time.Now()
	tick := time.NewTicker(time.Millisecond)
	for sent := 0; sent < total; {
		now := time.Now()
		for sent < total {
			due := openStart.Add(time.Duration(sent) * interval)
			if due.After(now) {
				break
			}
			jobs <- due
			sent++
		}
		<-tick.C
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	openTook := time.Since(openStart)
	slices.Sort(lat)

	// 3. The floor, serially in this process.
	floorCPU := exchangeFloorCPU(t, w, 2000)

	t.Logf("GOMAXPROCS=%d (sidecar, Redis, issuer and generator share the machine's %d CPUs)\n"+
		"capacity: %d exchanges in %s with %d workers = %.0f exchanges/s; sidecar CPU %.0f µs per exchange\n"+
		"open loop: %.0f exchanges/s offered for %s, %d answered in %s: p50 %s, p90 %s, p99 %s, max %s (from scheduled start)\n"+
		"floor (RS256 jwt.Parse + prepared OPA eval of the B.2 module + one Redis SET): %.0f µs CPU per operation; ratio %.2f\n"+
		"unexpected answers: %d",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), n, took.Round(time.Millisecond), workers, capacity, us(cpuPer),
		openRate, openFor, len(lat), openTook.Round(time.Millisecond),
		pct(lat, .5).Round(time.Microsecond), pct(lat, .9).Round(time.Microsecond), pct(lat, .99).Round(time.Microsecond), pct(lat, 1).Round(time.Microsecond),
		us(floorCPU), float64(cpuPer)/float64(floorCPU), bad.Load())
	if bad.Load() > 0 {
		t.Errorf("%d unexpected answers, e.g. %v", bad.Load(), badSample.Load())
	}
}

// fetchCPUProfile fetches a CPU profile of d from a pprof endpoint (the
// sidecar's admin listener with pprof: true, or proxybench's) into path.
func fetchCPUProfile(adminURL string, d time.Duration, path string) error {
	return fetchProfile(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", adminURL, int(d.Seconds())), path, d+30*time.Second)
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// procCPU is the user+system CPU time of process pid (Linux /proc).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Skipf("no /proc to read the sidecar's CPU time: %v", err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz
}

// exchangeFloorCPU measures this process's CPU per floor operation: RS256
// jwt.Parse of a GitHub-shaped token with jwx against a static key set,
// one prepared evaluation of performance-floors B.2's module with the
// token's claims as input (converted on every eval), and one Redis SET.
func exchangeFloorCPU(t *testing.T, w *world, n int) time.Duration {
	t.Helper()
	ctx := context.Background()
	raw := sign(t, w.gh, w.ghClaims())
	key, err := jwk.Import(w.gh.Key(w.gh.KID()).Public())
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, w.gh.KID())
	_ = key.Set(jwk.AlgorithmKey, jwa.RS256())
	set := jwk.NewSet()
	if err := set.AddKey(key); err != nil {
		t.Fatal(err)
	}
	pq, err := testkit.FloorQuery(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set))
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	for _, k := range tok.Keys() {
		var v any
		if err := tok.Get(k, &v); err == nil {
			claims[k] = v
		}
	}
	val := strings.Repeat("x", 400)
	runtime.GC()
	before := selfCPU(t)
	for i := range n {
		tk, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(w.gh.URL()), jwt.WithAudience(ghAudience))
		if err != nil {
			t.Fatal(err)
		}
		_ = tk
		rs, err := pq.Eval(ctx, rego.EvalInput(map[string]any{"claims": claims, "provider": "p0"}))
		if err != nil || len(rs) != 1 {
			t.Fatal(rs, err)
		}
		if err := w.rdb.Set(ctx, "floor:"+strconv.Itoa(i%64), val, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return (selfCPU(t) - before) / time.Duration(n)
}

func selfCPU(t *testing.T) time.Duration { return procCPU(t, os.Getpid()) }
