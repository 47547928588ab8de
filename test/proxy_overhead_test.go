package test

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestProxyOverhead is issue #17's cross-process proxy measurement, run
// only when asked (a measurement, not a test: it fails only on a wrong
// answer, never on a number):
//
//	OIDC_SIDECAR_PROXY_BENCH=1 go test -count=1 ./test -run '^TestProxyOverhead$' -v -timeout 20m
//
// Three processes besides this one and Redis: a minimal upstream API, a
// bare httputil.ReverseProxy in front of it (test/testdata/proxybench:
// credential swap, X-Forwarded-*, 256 idle connections per host, pooled
// copy buffers) and the built `oidc-sidecar serve` in front of the same
// upstream (the token in a real redis-server, the world's compiled policy,
// the audit line written to a file, as a container's stderr would be).
// Both proxies get the same GET of an allowed route with the same token.
//
//  1. latency: 10 rounds; in each, 3,000 sequential GETs on one keep-alive
//     connection to each proxy, the order alternating between rounds →
//     p50/p99 per proxy and what the sidecar adds, per round; with the CPU
//     time and the read/write system calls (/proc/<pid>/io) each proxy
//     process spent per request;
//  2. throughput: wrk -t2 -c16 for 5 s, 3 rounds per proxy, interleaved →
//     requests/s and the sidecar's share of the bare proxy's, per pair.
//     Without wrk on PATH, a Go closed loop with 16 connections does it
//     (and says so).
//
// OIDC_SIDECAR_PROXY_ROUNDS and OIDC_SIDECAR_PROXY_REQUESTS change the
// round count and the requests per round; OIDC_SIDECAR_PROXY_SECONDS the
// length of a throughput round. With OIDC_SIDECAR_PROXY_PROFILE=FILE the
// sidecar and the bare proxy run with pprof on; CPU profiles of 5 s of
// their first latency round (which lasts at least that long) and of their
// first throughput round (whose figures are then not table figures) are written to FILE.seq and
// FILE (the sidecar's), FILE.bare.seq and FILE.bare (the bare proxy's), and
// the sidecar's allocation profile, at the end, to FILE.allocs.
// OIDC_SIDECAR_PROXY_ENV="K=V K2=V2" adds variables to the sidecar's
// environment (e.g. GOGC=200 to compare GC settings), and
// OIDC_SIDECAR_PROXY_BARE_ENV to the bare proxy's (e.g. GOMAXPROCS=1 for
// both, as a container's CPU limit of one core would set it).
//
// Before/after in the same run: OIDC_SIDECAR_PROXY_BASELINE=BIN (a sidecar
// binary built from another commit) and/or
// OIDC_SIDECAR_PROXY_BASELINE_ENV="K=V ..." start a second sidecar, the
// "baseline", measured in the same interleaved rounds as a third target.
func TestProxyOverhead(t *testing.T) {
	if os.Getenv("OIDC_SIDECAR_PROXY_BENCH") == "" {
		t.Skip("a benchmark: set OIDC_SIDECAR_PROXY_BENCH=1 to run it")
	}
	if raceEnabled || os.Getenv("OIDC_SIDECAR_E2E_RACE") == "1" {
		t.Skip("a benchmark: run it without -race (the race detector slows the sidecar several times)")
	}
	rounds := envInt(t, "OIDC_SIDECAR_PROXY_ROUNDS", 10)
	perRound := envInt(t, "OIDC_SIDECAR_PROXY_REQUESTS", 3000)
	tputFor := time.Duration(envInt(t, "OIDC_SIDECAR_PROXY_SECONDS", 5)) * time.Second
	const tputRounds = 3
	profile := os.Getenv("OIDC_SIDECAR_PROXY_PROFILE")

	bin := buildProxyBench(t)
	up := startPeer(t, bin, nil, "upstream")
	bareEnv := envList(t, "OIDC_SIDECAR_PROXY_BARE_ENV")
	if profile != "" {
		bareEnv["PROXYBENCH_PPROF"] = "1"
	}
	bare := startPeer(t, bin, bareEnv, "bare", up.URL)

	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg["upstream"].(map[string]any)["url"] = up.URL
	cfg["log_level"] = "info" // the product's default: one audit line per request
	if profile != "" {
		cfg["pprof"] = true
	}
	sc := startSidecarLogFile(t, sidecarBin, cfg, envList(t, "OIDC_SIDECAR_PROXY_ENV"))
	sidecars := []*logFileSidecar{sc}

	tok := sc.mustExchange(t, genID, sign(t, w.gen, w.genClaims())) // WORKSPACE VARIABLE_INFO, 1 h
	const path = "/workspaces/" + workspace + "/projects"
	targets := []*benchTarget{
		{name: "bare", url: bare.URL + path, pid: bare.pid, pprofURL: bare.pprofURL},
		{name: "sidecar", url: sc.URL + path, pid: sc.Pid()},
	}
	// A second sidecar for a before/after comparison in the same run: another
	// binary (a build of the previous commit), other variables, or both. It
	// shares Redis, so the same token works for both.
	baseBin, baseEnv := os.Getenv("OIDC_SIDECAR_PROXY_BASELINE"), os.Getenv("OIDC_SIDECAR_PROXY_BASELINE_ENV")
	if baseBin != "" || baseEnv != "" {
		bcfg := maps.Clone(cfg)
		delete(bcfg, "pprof")
		base := startSidecarLogFile(t, cmp.Or(baseBin, sidecarBin), bcfg, envList(t, "OIDC_SIDECAR_PROXY_BASELINE_ENV"))
		sidecars = append(sidecars, base)
		targets = append(targets, &benchTarget{name: "baseline", url: base.URL + path, pid: base.Pid()})
	}
	const warmup = 500
	for _, tg := range targets {
		tg.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
		tg.req, _ = http.NewRequest(http.MethodGet, tg.url, nil)
		tg.req.Header.Set("Authorization", "Bearer "+tok)
		for range warmup { // connections, the token cache, the route table
			if err := tg.get(); err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
		}
	}
	nt := len(targets)
	for _, tg := range targets {
		t.Logf("%s: pid %d, %s", tg.name, tg.pid, tg.url) // for perf record -p
	}

	// 1. Latency, interleaved rounds: round r starts with target r mod n.
	type sample struct {
		p50, p99         time.Duration
		cpu, reads, wrts float64 // per request
		switches         float64 // context switches of the process's threads per request
	}
	res := make([][]sample, rounds)
	seqReqs := make([]int64, nt)
	gc0 := make([]gcStats, len(sidecars))
	for i, s := range sidecars {
		gc0[i] = s.gcStats(t)
	}
	for r := range rounds {
		res[r] = make([]sample, nt)
		for k := range nt {
			i := (r + k) % nt
			tg := targets[i]
			runtime.GC() // this process's garbage is not the next target's
			var prof chan error
			if profile != "" && r == 0 && tg.name != "baseline" {
				prof = make(chan error, 1)
				go func() { prof <- fetchCPUProfile(tg.pprof(sc), 5*time.Second, tg.profileFile(profile)+".seq") }()
			}
			cpu0, io0, cs0 := procCPU(t, tg.pid), procIO(t, tg.pid), procSwitches(tg.pid)
			lat := make([]time.Duration, 0, perRound)
			for len(lat) < perRound || prof != nil {
				start := time.Now()
				if err := tg.get(); err != nil {
					t.Fatalf("%s round %d: %v", tg.name, r+1, err)
				}
				lat = append(lat, time.Since(start))
				if prof != nil { // the round lasts as long as the profile
					select {
					case err := <-prof:
						if err != nil {
							t.Errorf("CPU profile of %s, sequential: %v", tg.name, err)
						}
						prof = nil
					default:
					}
				}
			}
			cpu, io1, cs1 := procCPU(t, tg.pid)-cpu0, procIO(t, tg.pid), procSwitches(tg.pid)
			n := float64(len(lat))
			seqReqs[i] += int64(len(lat))
			slices.Sort(lat)
			res[r][i] = sample{
				p50: pct(lat, .5), p99: pct(lat, .99), cpu: us(cpu) / n,
				reads: float64(io1.syscr-io0.syscr) / n, wrts: float64(io1.syscw-io0.syscw) / n,
				switches: float64(cs1-cs0) / n,
			}
		}
	}

	gcs := make([]string, len(sidecars))
	for i, s := range sidecars {
		g := s.gcStats(t)
		n := float64(seqReqs[i+1])
		gcs[i] = fmt.Sprintf("%s: %.2f GC cycles per 1,000 requests, %.1f KB allocated per request, next GC at %.1f MiB (GOGC %.0f)",
			targets[i+1].name, (g.cycles-gc0[i].cycles)/n*1000, (g.alloc-gc0[i].alloc)/n/1000, g.nextGC/(1<<20), g.gogc)
	}

	// 2. Throughput, interleaved rounds.
	wrk, wrkErr := exec.LookPath("wrk")
	tool := "wrk -t2 -c16 -d" + tputFor.String()
	if wrkErr != nil {
		tool = "Go closed loop, 16 connections (wrk is not on PATH)"
	}
	tput := make([][]float64, tputRounds)
	tcost := make([][]string, tputRounds) // CPU, read+write system calls, context switches per request
	tputReqs := make([]int64, nt)
	for r := range tputRounds {
		tput[r] = make([]float64, nt)
		tcost[r] = make([]string, nt)
		for k := range nt {
			i := (r + k) % nt
			tg := targets[i]
			var prof chan error
			if profile != "" && r == 0 && tg.name != "baseline" {
				prof = make(chan error, 1)
				go func() { prof <- fetchCPUProfile(tg.pprof(sc), tputFor-time.Second, tg.profileFile(profile)) }()
			}
			var rps float64
			var n int64
			var err error
			cpu0, io0, cs0 := procCPU(t, tg.pid), procIO(t, tg.pid), procSwitches(tg.pid)
			if wrkErr == nil {
				rps, n, err = runWrk(wrk, tg, tok, tputFor)
			} else {
				rps, n, err = tg.closedLoop(16, tputFor)
			}
			if err != nil {
				t.Fatalf("throughput, %s round %d: %v", tg.name, r+1, err)
			}
			if n > 0 {
				io1 := procIO(t, tg.pid)
				tcost[r][i] = fmt.Sprintf("%.1f µs, %.2f+%.2f, %.2f", us(procCPU(t, tg.pid)-cpu0)/float64(n),
					float64(io1.syscr-io0.syscr)/float64(n), float64(io1.syscw-io0.syscw)/float64(n),
					float64(procSwitches(tg.pid)-cs0)/float64(n))
			}
			if prof != nil {
				if err := <-prof; err != nil {
					t.Errorf("CPU profile: %v", err)
				} else {
					t.Logf("CPU profile of the %s's first throughput round written (go tool pprof -top %s, and %s.bare for the bare proxy)", tg.name, profile, profile)
				}
			}
			tput[r][i], tputReqs[i] = rps, tputReqs[i]+n
		}
	}

	// The tables.
	var b strings.Builder
	fmt.Fprintf(&b, "GOMAXPROCS=%d (this process, Redis, the upstream and the proxies share %d CPUs); load average at the end %s\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), loadAvgString())
	if v := os.Getenv("OIDC_SIDECAR_PROXY_BARE_ENV"); v != "" {
		fmt.Fprintf(&b, "bare: %s\n", v)
	}
	for i, tg := range targets[1:] {
		fmt.Fprintf(&b, "%s: %s %s\n", tg.name, cmp.Or([]string{sidecarBin, baseBin}[i], sidecarBin), os.Getenv([]string{"OIDC_SIDECAR_PROXY_ENV", "OIDC_SIDECAR_PROXY_BASELINE_ENV"}[i]))
	}
	fmt.Fprintf(&b, "latency: %d rounds of %d sequential keep-alive GETs per proxy, µs (added: over bare in the same round)\n| round | bare p50 / p99 |", rounds, perRound)
	for _, tg := range targets[1:] {
		fmt.Fprintf(&b, " %s p50 / p99 | added p50 / p99 |", tg.name)
	}
	b.WriteString(" CPU µs per request | read+write syscalls per request | context switches per request |\n|---|---|" + strings.Repeat("---|---|", nt-1) + "---|---|---|\n")
	add50, add99 := make([][]time.Duration, nt), make([][]time.Duration, nt)
	for r, rr := range res {
		fmt.Fprintf(&b, "| %d | %d / %d |", r+1, rr[0].p50.Microseconds(), rr[0].p99.Microseconds())
		var cpus, calls, switches []string
		for i, s := range rr {
			cpus = append(cpus, fmt.Sprintf("%.0f", s.cpu))
			switches = append(switches, fmt.Sprintf("%.1f", s.switches))
			calls = append(calls, fmt.Sprintf("%.1f+%.1f", s.reads, s.wrts))
			if i == 0 {
				continue
			}
			a50, a99 := s.p50-rr[0].p50, s.p99-rr[0].p99
			add50[i], add99[i] = append(add50[i], a50), append(add99[i], a99)
			fmt.Fprintf(&b, " %d / %d | %+d / %+d |", s.p50.Microseconds(), s.p99.Microseconds(), a50.Microseconds(), a99.Microseconds())
		}
		fmt.Fprintf(&b, " %s | %s | %s |\n", strings.Join(cpus, " / "), strings.Join(calls, " / "), strings.Join(switches, " / "))
	}
	b.WriteString(strings.Join(gcs, "\n") + "\n")
	for i, tg := range targets[1:] {
		a50, a99 := add50[i+1], add99[i+1]
		slices.Sort(a50)
		slices.Sort(a99)
		fmt.Fprintf(&b, "%s added p50: %+d … %+d µs (median %+d); added p99: %+d … %+d µs (median %+d)\n", tg.name,
			a50[0].Microseconds(), a50[len(a50)-1].Microseconds(), a50[len(a50)/2].Microseconds(),
			a99[0].Microseconds(), a99[len(a99)-1].Microseconds(), a99[len(a99)/2].Microseconds())
	}
	fmt.Fprintf(&b, "throughput: %s, %d rounds per proxy, interleaved, req/s (share: of bare in the same round)\n| round | bare |", tool, tputRounds)
	for _, tg := range targets[1:] {
		fmt.Fprintf(&b, " %s | share |", tg.name)
	}
	b.WriteString(" CPU, read+write syscalls, context switches per request |\n|---|---|" + strings.Repeat("---|---|", nt-1) + "---|\n")
	shares := make([][]float64, nt)
	for r, p := range tput {
		fmt.Fprintf(&b, "| %d | %.0f |", r+1, p[0])
		for i := 1; i < nt; i++ {
			shares[i] = append(shares[i], p[i]/p[0])
			fmt.Fprintf(&b, " %.0f | %.2f× |", p[i], p[i]/p[0])
		}
		b.WriteString(" " + strings.Join(tcost[r], " / ") + " |\n")
	}
	for i, tg := range targets[1:] {
		sh := shares[i+1]
		slices.Sort(sh)
		fmt.Fprintf(&b, "%s share of the bare proxy's throughput: %.2f … %.2f×\n", tg.name, sh[0], sh[len(sh)-1])
	}
	t.Log("\n" + b.String())

	if profile != "" {
		if err := fetchProfile(sc.AdminURL+"/debug/pprof/allocs", profile+".allocs", 30*time.Second); err != nil {
			t.Errorf("allocation profile: %v", err)
		} else {
			t.Logf("allocation profile of the whole run written to %s.allocs (go tool pprof -sample_index=alloc_space -top %s.allocs)", profile, profile)
		}
	}

	// Every proxied request left its audit line.
	for i, s := range sidecars {
		lines, err := s.auditLines()
		if err != nil {
			t.Fatal(err)
		}
		if want := warmup + seqReqs[i+1] + tputReqs[i+1]; lines < want {
			t.Errorf("%s: %d proxy audit lines, want at least %d (one per proxied request)", targets[i+1].name, lines, want)
		}
	}
}

// envList reads "K=V K2=V2" from the variable name.
func envList(t *testing.T, name string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, kv := range strings.Fields(os.Getenv(name)) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s: %q is not K=V", name, kv)
		}
		env[k] = v
	}
	return env
}

// benchTarget is one proxy under measurement.
type benchTarget struct {
	name, url string
	pid       int
	pprofURL  string // the bare proxy's, with OIDC_SIDECAR_PROXY_PROFILE
	client    *http.Client
	req       *http.Request
}

// pprof is where the target's /debug/pprof is served: the sidecar's admin
// listener, or the bare proxy's own port.
func (tg *benchTarget) pprof(sc *logFileSidecar) string {
	if tg.pprofURL != "" {
		return tg.pprofURL
	}
	return sc.AdminURL
}

// profileFile is FILE for the sidecar and FILE.bare for the bare proxy.
func (tg *benchTarget) profileFile(profile string) string {
	if tg.name == "bare" {
		return profile + ".bare"
	}
	return profile
}

var wantBody = mustReadBody()

// mustReadBody is the upstream's answer (proxybench.Body), read from its
// source so the two cannot drift apart.
func mustReadBody() string {
	src, err := os.ReadFile(filepath.Join("testdata", "proxybench", "main.go"))
	if err != nil {
		return ""
	}
	m := regexp.MustCompile("(?m)^const Body = `([^`]*)`").FindSubmatch(src)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// get sends the target's GET and checks the answer.
func (tg *benchTarget) get() error {
	resp, err := tg.client.Do(tg.req)
	if err != nil {
		return err
	}
	var buf [512]byte
	n, _ := io.ReadFull(resp.Body, buf[:])
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(buf[:n]) != wantBody {
		return fmt.Errorf("HTTP %d %q, want 200 with the upstream's body", resp.StatusCode, truncate(string(buf[:n]), 200))
	}
	return nil
}

// closedLoop: conns goroutines, each with its own keep-alive connection,
// send GETs back to back for d.
func (tg *benchTarget) closedLoop(conns int, d time.Duration) (float64, int64, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		c := &benchTarget{name: tg.name, url: tg.url, req: tg.req,
			client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}}
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := c.get(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), n.Load(), nil
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`(?m)^\s+(\d+) requests in `)
	wrkNon2xx   = regexp.MustCompile(`(?m)Non-2xx or 3xx responses: (\d+)`)
	wrkSockErrs = regexp.MustCompile(`(?m)Socket errors: .*`)
)

// runWrk runs wrk -t2 -c16 against the target and returns requests/s and
// the number of requests; any non-2xx answer or socket error is an error.
func runWrk(wrk string, tg *benchTarget, tok string, d time.Duration) (float64, int64, error) {
	cmd := exec.Command(wrk, "-t2", "-c16", "-d"+strconv.Itoa(int(d.Seconds()))+"s",
		"-H", "Authorization: Bearer "+tok, tg.url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		return 0, 0, fmt.Errorf("wrk: %s non-2xx answers", m[1])
	}
	if m := wrkSockErrs.Find(out); m != nil {
		return 0, 0, fmt.Errorf("wrk: %s", m)
	}
	m, mt := wrkRPS.FindSubmatch(out), wrkTotal.FindSubmatch(out)
	if m == nil || mt == nil {
		return 0, 0, fmt.Errorf("wrk: no Requests/sec in its output:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	n, _ := strconv.ParseInt(string(mt[1]), 10, 64)
	return rps, n, nil
}

// buildProxyBench builds test/testdata/proxybench.
func buildProxyBench(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "proxybench")
	cmd := exec.Command("go", "build", "-o", bin, "./test/testdata/proxybench")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/testdata/proxybench: %v\n%s", err, out)
	}
	return bin
}

type peer struct {
	URL      string
	pprofURL string // with PROXYBENCH_PPROF=1
	pid      int
}

// startPeer runs proxybench in a role and reads the address(es) it prints.
func startPeer(t *testing.T, bin string, env map[string]string, args ...string) *peer {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = sidecarEnv(env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	setProcAttr(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := make(chan [2]string, 1)
	go func() {
		br := bufio.NewReader(out)
		var a [2]string
		a[0], _ = br.ReadString('\n')
		if env["PROXYBENCH_PPROF"] == "1" {
			a[1], _ = br.ReadString('\n')
		}
		addr <- a
		_, _ = io.Copy(io.Discard, br)
	}()
	select {
	case a := <-addr:
		if strings.TrimSpace(a[0]) == "" {
			t.Fatalf("proxybench %s printed no address: %s", strings.Join(args, " "), stderr.String())
		}
		p := &peer{URL: "http://" + strings.TrimSpace(a[0]), pid: cmd.Process.Pid}
		if a[1] != "" {
			p.pprofURL = "http://" + strings.TrimSpace(a[1])
		}
		return p
	case <-time.After(awaitTimeout):
		t.Fatalf("proxybench %s did not start within %s", strings.Join(args, " "), awaitTimeout)
		return nil
	}
}

// logFileSidecar is a sidecar whose output goes straight to a file: no
// goroutine of this process reads it while the benchmark runs.
type logFileSidecar struct {
	*sidecar
	logPath string
}

// startSidecarLogFile is startSidecar with the sidecar's standard output
// and error written to a file, scanned (secrets, races, panics) at cleanup.
func startSidecarLogFile(t *testing.T, bin string, cfg map[string]any, env map[string]string) *logFileSidecar {
	t.Helper()
	dir := t.TempDir()
	mainAddr, adminAddr := freeAddr(t), freeAddr(t)
	full := map[string]any{"listen": mainAddr, "admin_listen": adminAddr}
	for k, v := range cfg {
		full[k] = v
	}
	data, err := yaml.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sidecar.yaml")
	writeFile(t, cfgPath, string(data))
	logPath := filepath.Join(dir, "sidecar.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{t: t, URL: "http://" + mainAddr, Addr: mainAddr, AdminURL: "http://" + adminAddr, Dir: dir,
		logs: newLogSink(), exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	s.cmd.Dir, s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = dir, sidecarEnv(env), f, f
	setProcAttr(s.cmd)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	go func() {
		err := s.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			s.exitCode = ee.ExitCode()
		default:
			s.exitCode = -1
		}
		close(s.exited)
	}()
	ls := &logFileSidecar{sidecar: s, logPath: logPath}
	t.Cleanup(func() {
		if !s.stopped {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(stopTimeout):
				s.kill()
			}
			if s.exitCode != 0 {
				t.Errorf("the sidecar exited with status %d after SIGTERM, want 0", s.exitCode)
			}
		}
		if b, err := os.ReadFile(logPath); err == nil {
			_, _ = s.logs.Write(b)
		}
		s.checkLogs(t)
	})
	await(t, readyTimeout, "the sidecar's /readyz", func() bool {
		select {
		case <-s.exited:
			return true
		default:
		}
		st, _ := quickStatus(s.AdminURL + "/readyz")
		return st == http.StatusOK
	})
	select {
	case <-s.exited:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("the sidecar exited with status %d before it was ready; log:\n%s", s.exitCode, truncate(string(b), 4000))
	default:
	}
	return ls
}

// auditLines counts the proxy audit lines in the sidecar's log file.
func (s *logFileSidecar) auditLines() (int64, error) {
	f, err := os.Open(s.logPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var n int64
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"event":"proxy"`)) {
			n++
		}
	}
	return n, sc.Err()
}

// fetchProfile saves a pprof endpoint's answer (admin bearer) to path,
// waiting at most timeout.
func fetchProfile(u, path string, timeout time.Duration) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, truncate(string(b), 200))
	}
	return os.WriteFile(path, b, 0o644)
}

type gcStats struct{ cycles, alloc, nextGC, gogc float64 }

// gcStats reads the sidecar's garbage collector figures from its metrics.
func (s *logFileSidecar) gcStats(t *testing.T) gcStats {
	t.Helper()
	r := do(t, newRequest(t, http.MethodGet, s.AdminURL+"/metrics", "", ""))
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %s", r)
	}
	m := string(r.Body)
	return gcStats{
		cycles: metricValue(m, "go_gc_duration_seconds_count"), alloc: metricValue(m, "go_memstats_alloc_bytes_total"),
		nextGC: metricValue(m, "go_memstats_next_gc_bytes"), gogc: metricValue(m, "go_gc_gogc_percent"),
	}
}

// procSwitches is the number of context switches of pid's threads so far
// (Linux /proc/<pid>/task/*/status), 0 where there is no /proc.
func procSwitches(pid int) int64 {
	dirs, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	var n int64
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

type ioCounts struct{ syscr, syscw int64 }

// procIO reads the read and write system call counts of pid (Linux
// /proc/<pid>/io).
func procIO(t *testing.T, pid int) ioCounts {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		t.Skipf("no /proc/<pid>/io to count system calls: %v", err)
	}
	var c ioCounts
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			c.syscr = n
		case "syscw":
			c.syscw = n
		}
	}
	return c
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func loadAvgString() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// TestProxyAuditLinesOnShutdown: a graceful stop right after a burst of
// proxied requests (each answered before its audit line is written:
// sidecar/proxy) leaves exactly one audit line per request, and "stopped"
// is the last line.
func TestProxyAuditLinesOnShutdown(t *testing.T) {
	t.Run("each line written", func(t *testing.T) { auditLinesOnShutdown(t, "") })
	// log_flush_interval buffers lines; a graceful stop writes them all.
	t.Run("log_flush_interval", func(t *testing.T) { auditLinesOnShutdown(t, "1s") })
}

func auditLinesOnShutdown(t *testing.T, flush string) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	if flush != "" {
		cfg["log_flush_interval"] = flush
	}
	sc := startSidecarLogFile(t, sidecarBin, cfg, nil)
	tok := sc.mustExchange(t, genID, sign(t, w.gen, w.genClaims()))
	const n = 300
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 6 {
		wg.Go(func() {
			for i := range n / 6 {
				r := sc.call(t, http.MethodGet, fmt.Sprintf("/workspaces/%s/projects?g=%d&i=%d", workspace, g, i), tok)
				if r.Status != http.StatusOK {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d proxied requests were not answered 200", bad.Load())
	}
	if code := sc.Stop(); code != 0 {
		t.Fatalf("the sidecar exited with status %d after SIGTERM, want 0", code)
	}
	lines, err := sc.auditLines()
	if err != nil {
		t.Fatal(err)
	}
	if lines != n {
		t.Errorf("%d proxy audit lines after a graceful stop, want %d", lines, n)
	}
	b, err := os.ReadFile(sc.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if flush != "" && !strings.Contains(string(b), `"log_flush_interval":"`+flush+`"`) {
		t.Errorf("no log line says the log is buffered (log_flush_interval %s)", flush)
	}
	last := lastLine(string(b))
	if !strings.Contains(last, `"msg":"stopped"`) {
		t.Errorf("the last log line is %q, want the \"stopped\" line", truncate(last, 300))
	}
}
