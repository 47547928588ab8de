package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/logline"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// benchTargets starts, on loopback: a small upstream API; a bare
// httputil.ReverseProxy in front of it (same tuned transport, pooled
// buffers); and the sidecar proxy in front of it with a real Redis token
// store, the real compiled policy, metrics and the server's JSON audit
// line (logline, to io.Discard). It returns the three base URLs and the token to send.
func benchTargets(tb testing.TB) (targets map[string]string, tok string) {
	return benchTargetsWith(tb, defaultSnapshot(tb))
}

func benchTargetsWith(tb testing.TB, snap *policy.Snapshot) (targets map[string]string, tok string) {
	tb.Helper()
	body := []byte(`{"url":"https://api.buddy.works/workspaces/acme/projects/web/pipelines/7/executions","page":1,"page_size":20,"executions":[]}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	tb.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)

	bareTr := NewTransport()
	tb.Cleanup(bareTr.CloseIdleConnections)
	bare := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upURL)
			pr.SetXForwarded()
		},
		Transport:  bareTr,
		BufferPool: &bufferPool{},
	})
	tb.Cleanup(bare.Close)

	rs := redistest.Start(tb)
	store, err := token.NewRedis(token.RedisOptions{URL: rs.URL(), Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	rec := record("EXECUTION_INFO")
	rec.ExpiresAt = time.Now().Add(24 * time.Hour).Unix()
	tok, hash, _ := token.New()
	if err := store.Save(context.Background(), hash, &rec, 24*time.Hour); err != nil {
		tb.Fatal(err)
	}
	// The sidecars use the product's default transport (the direct path
	// for these GETs to a plain-HTTP upstream).
	p, err := New(Options{
		Engine: engineWith(snap), Store: store, Upstream: upURL, UpstreamToken: upstreamSecret,
		Metrics:    benchMetrics,
		AuditLines: logline.New(io.Discard, nil).With("log", "audit"), // the server's audit line
	})
	if err != nil {
		tb.Fatal(err)
	}
	side := httptest.NewServer(p)
	tb.Cleanup(side.Close)
	// The same sidecar with decision reuse off: every request is matched
	// and evaluated by OPA.
	p2, err := New(Options{
		Engine: engineWith(snap), Store: store, Upstream: upURL, UpstreamToken: upstreamSecret,
		Metrics: benchMetrics, NoDecisionCache: true,
		AuditLines: logline.New(io.Discard, nil).With("log", "audit"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	side2 := httptest.NewServer(p2)
	tb.Cleanup(side2.Close)
	return map[string]string{"direct": up.URL, "bare": bare.URL, "sidecar": side.URL, "sidecar-evaluated": side2.URL}, tok
}

// benchMetrics records the sidecar target's metrics (policy evaluation and
// authorization time), read back by TestFixedRateLatency.
var benchMetrics = metrics.New()

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}}
}

func get(c *http.Client, base, tok string) error {
	req, _ := http.NewRequest("GET", base+runExecutions+"?page=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("User-Agent", "bench/1.0")
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return nil
}

// BenchmarkProxy compares, in one run and over real loopback HTTP with
// keep-alive clients: the upstream directly, a bare ReverseProxy, and the
// sidecar (token lookup in Redis, OPA decision, forwarding). Concurrency is
// 4×GOMAXPROCS goroutines. Besides ns/op it reports req/s and p50/p99
// latency in µs.
//
//	go test -run '^$' -bench BenchmarkProxy -benchtime 5s ./sidecar/proxy
func BenchmarkProxy(b *testing.B) {
	targets, tok := benchTargets(b)
	for _, name := range []string{"direct", "bare", "sidecar", "sidecar-evaluated"} {
		base := targets[name]
		b.Run(name, func(b *testing.B) {
			c := benchClient()
			defer c.CloseIdleConnections()
			for range 64 { // warm connections, caches and the route table
				if err := get(c, base, tok); err != nil {
					b.Fatal(err)
				}
			}
			var mu sync.Mutex
			var all []time.Duration
			b.SetParallelism(4)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := testkit.ProcessCPU()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				lat := make([]time.Duration, 0, 1024)
				for pb.Next() {
					t0 := time.Now()
					if err := get(c, base, tok); err != nil {
						b.Error(err)
						return
					}
					lat = append(lat, time.Since(t0))
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			cpu := testkit.ProcessCPU() - cpu0
			b.StopTimer()
			// CPU time of this process (client, proxy and upstream; not
			// redis-server) per request: less sensitive to other load on
			// the machine than wall-clock throughput.
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(len(all)), "cpu-µs/op")
			p50, p99 := percentiles(all)
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(p50.Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(p99.Nanoseconds())/1e3, "p99-µs")
		})
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)*50/100], d[min(len(d)-1, len(d)*99/100)]
}

// TestFixedRateLatency is an open-loop load run: requests are sent at a
// fixed rate whatever the response times (latency counted from each
// request's scheduled time, so stalls are not hidden), against the three
// targets of BenchmarkProxy in turn. Set PROXY_FIXED_RATE (req/s) to run it;
// PROXY_FIXED_SECONDS sets the duration per target (default 10),
// PROXY_FIXED_ROUNDS the number of rounds (default 2). With PROXY_FIXED_PIN=1
// the targets run in a child process on CPU 1 and the generator should run
// on CPU 0 (see pinnedTargets):
//
//	PROXY_FIXED_RATE=1000 go test -run TestFixedRateLatency -v ./sidecar/proxy
//	PROXY_FIXED_PIN=1 PROXY_FIXED_RATE=1000 taskset -c 0 go test -run TestFixedRateLatency -v ./sidecar/proxy
func TestFixedRateLatency(t *testing.T) {
	rate, _ := strconv.Atoi(os.Getenv("PROXY_FIXED_RATE"))
	if rate <= 0 {
		t.Skip("set PROXY_FIXED_RATE=<requests per second> to run the fixed-rate load test")
	}
	secs, _ := strconv.Atoi(os.Getenv("PROXY_FIXED_SECONDS"))
	if secs <= 0 {
		secs = 10
	}
	rounds, _ := strconv.Atoi(os.Getenv("PROXY_FIXED_ROUNDS"))
	if rounds <= 0 {
		rounds = 2
	}
	pinned := os.Getenv("PROXY_FIXED_PIN") != ""
	var targets map[string]string
	var tok string
	if pinned {
		targets, tok = pinnedTargets(t)
	} else {
		targets, tok = benchTargets(t)
	}
	for round := 1; round <= rounds; round++ { // interleave the targets, round after round
		for _, name := range []string{"direct", "bare", "sidecar", "sidecar-evaluated"} {
			r := fixedRate(t, targets[name], tok, rate, time.Duration(secs)*time.Second)
			t.Logf("round %d %-8s %d/s × %ds: sent %d, errors %d | service p50 %5.0f p90 %5.0f p99 %6.0f max %6.0f µs | from schedule p50 %5.0f p99 %6.0f µs",
				round, name, rate, secs, r.n, r.errors, us(r.svc[0]), us(r.svc[1]), us(r.svc[2]), us(r.svc[3]), us(r.sched[0]), us(r.sched[2]))
			if name == "sidecar" && !pinned {
				t.Logf("         sidecar internals (mean over the run so far): %s", meanDurations(t,
					"oidc_sidecar_policy_eval_duration_seconds", "oidc_sidecar_proxy_authorization_duration_seconds", "oidc_sidecar_upstream_duration_seconds"))
			}
		}
	}
}

// pinnedTargets starts the four targets (and their Redis) in a child
// process pinned to CPU 1 with taskset, and returns their URLs. The
// generator stays in this process: run it pinned to CPU 0
// (taskset -c 0 go test ...), so that neither side's scheduling shows in the
// other's latencies. The child exits when this test ends.
func pinnedTargets(t *testing.T) (map[string]string, string) {
	t.Helper()
	cmd := exec.Command("taskset", "-c", "1", os.Args[0], "-test.run=^TestBenchServe$")
	cmd.Env = append(os.Environ(), "PROXY_BENCH_SERVE=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start the pinned servers (taskset from util-linux is needed): %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "BENCH-TARGETS ")
		if !ok {
			continue
		}
		var v struct {
			Targets map[string]string
			Token   string
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		return v.Targets, v.Token
	}
	t.Fatalf("the pinned servers did not start: %v", sc.Err())
	return nil, ""
}

// TestBenchServe is the server half of TestFixedRateLatency's pinned mode:
// it serves the targets until its standard input closes.
func TestBenchServe(t *testing.T) {
	if os.Getenv("PROXY_BENCH_SERVE") == "" {
		t.Skip("the server half of TestFixedRateLatency with PROXY_FIXED_PIN=1")
	}
	targets, tok := benchTargets(t)
	b, _ := json.Marshal(map[string]any{"targets": targets, "token": tok})
	fmt.Printf("BENCH-TARGETS %s\n", b)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// loadResult holds p50, p90, p99 and max of the service time (from the
// moment the request was sent) and of the time from its scheduled start
// (which adds any lag of the generator, so stalls are not hidden).
// meanDurations reads histograms from benchMetrics and formats their means.
func meanDurations(t *testing.T, names ...string) string {
	mfs, err := benchMetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range names {
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			var sum float64
			var n uint64
			for _, m := range mf.GetMetric() {
				sum += m.GetHistogram().GetSampleSum()
				n += m.GetHistogram().GetSampleCount()
			}
			if n > 0 {
				out = append(out, fmt.Sprintf("%s %.0f µs", strings.TrimPrefix(name, "oidc_sidecar_"), sum/float64(n)*1e6))
			}
		}
	}
	return strings.Join(out, ", ")
}

type loadResult struct {
	n, errors  int
	svc, sched [4]time.Duration
}

func quantiles(d []time.Duration) [4]time.Duration {
	slices.Sort(d)
	n := len(d)
	return [4]time.Duration{d[n*50/100], d[n*90/100], d[n*99/100], d[n-1]}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func fixedRate(t *testing.T, base, tok string, rate int, d time.Duration) loadResult {
	c := benchClient()
	defer c.CloseIdleConnections()
	for range 200 {
		if err := get(c, base, tok); err != nil {
			t.Fatal(err)
		}
	}
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	lat := make([]time.Duration, total)
	svc := make([]time.Duration, total)
	errs := make([]error, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = get(c, base, tok)
			svc[i] = time.Since(t0)
			lat[i] = time.Since(due)
		}()
	}
	wg.Wait()
	r := loadResult{n: total}
	kinds := map[string]int{}
	for _, e := range errs {
		if e != nil {
			r.errors++
			kinds[e.Error()]++
		}
	}
	for k, n := range kinds {
		t.Logf("  %d× %s", n, k)
	}
	r.svc, r.sched = quantiles(svc), quantiles(lat)
	return r
}

// BenchmarkParts measures the per-request pieces in isolation (no HTTP).
func BenchmarkParts(b *testing.B) {
	snap := defaultSnapshot(b)
	tbl := newTable(snap)
	rec := record("EXECUTION_INFO")
	b.Run("checkPath", func(b *testing.B) {
		req := httptest.NewRequest("GET", runExecutions+"?page=1", nil)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = checkPath(req)
		}
	})
	b.Run("match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = tbl.match("GET", runExecutions)
		}
	})
	b.Run("preparedToken", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = preparedToken(&rec)
		}
	})
	b.Run("authorize", func(b *testing.B) {
		m := tbl.match("GET", runExecutions)
		in := policyInput(m, preparedToken(&rec))
		b.ReportAllocs()
		for b.Loop() {
			d, err := snap.Authorize(context.Background(), in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("requestID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = newRequestID()
		}
	})
	// finish: the audit line (to io.Discard; by slog's JSONHandler and by
	// logline) and the metrics of one allowed request.
	b.Run("finish", func(b *testing.B) {
		p := &Proxy{
			audit: slog.New(slog.NewJSONHandler(io.Discard, nil)), log: slog.New(slog.DiscardHandler),
			metrics: metrics.New(),
		}
		x := &call{
			start: time.Now(), id: "req-123", method: "GET", path: runExecutions,
			route: "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions", workspace: "acme",
			clientIP: netip.MustParseAddr("127.0.0.1"), rec: &rec, status: 200, code: CodeAllowed, allowed: true,
			decided: true, revision: "sha256-0123456789abcdef", wall: time.Now(),
		}
		ctx := context.Background()
		b.Run("slog", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.finish(ctx, x)
			}
		})
		// The server's path: logline (Options.AuditLines).
		b.Run("logline", func(b *testing.B) {
			p.lines = logline.New(io.Discard, nil).With("log", "audit")
			defer func() { p.lines = nil }()
			b.ReportAllocs()
			for b.Loop() {
				p.finish(ctx, x)
			}
		})
	})
}
