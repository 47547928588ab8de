package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

// faultResult is one request of a fault-time load loop.
type faultResult struct {
	op     string // "exchange" or "proxy"
	at     time.Time
	status int
	dur    time.Duration
	body   string
}

// faultLoad runs a small bounded load (workers × at most perWorker
// requests, at most d) alternating exchanges of fresh pre-signed tokens and
// proxied calls with issued tokens.
func faultLoad(t *testing.T, s *sidecar, jwts, toks []string, workers, perWorker int, d time.Duration) []faultResult {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var out []faultResult
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				var req *http.Request
				op := "proxy"
				if i%2 == 0 {
					if j := int(next.Add(1)) - 1; j < len(jwts) {
						op = "exchange"
						body, _ := json.Marshal(map[string]string{"provider_id": ghID, "web_identity_token": jwts[j]})
						req, _ = http.NewRequest(http.MethodPost, s.URL+"/user/oidc/tokens", bytes.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
					}
				}
				if req == nil {
					req, _ = http.NewRequest(http.MethodGet, s.URL+"/workspaces/"+workspace+"/projects", nil)
					req.Header.Set("Authorization", "Bearer "+toks[(wk+i)%len(toks)])
				}
				start := time.Now()
				resp, err := client.Do(req)
				res := faultResult{op: op, at: start, dur: time.Since(start)}
				if err != nil {
					res.body = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					res.status, res.body = resp.StatusCode, string(b)
				}
				mu.Lock()
				out = append(out, res)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// checkOutage asserts that every request of an outage loop was a 503 in
// Buddy's error shape within maxDur, except proxied calls answered 200
// within tokenCacheBound of since from the proxy's token cache (counted and
// logged). It returns how many such cached answers there were.
func checkOutage(t *testing.T, what string, rs []faultResult, since time.Time, maxDur time.Duration) int {
	t.Helper()
	if len(rs) == 0 {
		t.Fatalf("%s: no requests ran", what)
	}
	cached, bad := 0, 0
	var slowest time.Duration
	for _, r := range rs {
		slowest = max(slowest, r.dur)
		switch {
		case r.status == http.StatusServiceUnavailable && r.dur < maxDur:
		case r.op == "proxy" && r.status == http.StatusOK && r.at.Sub(since) < tokenCacheBound:
			cached++
		default:
			bad++
			if bad <= 5 {
				t.Errorf("%s: %s answered %d in %s: %s", what, r.op, r.status, r.dur.Round(time.Millisecond), truncate(r.body, 300))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d requests were not a 503 within %s", what, bad, len(rs), maxDur)
	}
	t.Logf("%s: %d requests, all 503 (slowest %s), except %d proxied call(s) served from the proxy's token cache within %s of the outage",
		what, len(rs), slowest.Round(time.Millisecond), cached, tokenCacheBound)
	return cached
}

// TestFaultRedis: Redis hung (SIGSTOP), then killed, under a small load:
// exchanges and proxied calls get 503 within 1 s each, never an allow;
// /readyz, introspection and revocation say the store is unavailable; when
// Redis comes back (empty: no persistence) the same sidecar process serves
// again, and OIDC tokens refused during the outage were not burned.
func TestFaultRedis(t *testing.T) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	// Rate limits on: the first store round trip of an exchange is then the
	// rate-limit script, and it must fail closed too.
	cfg["rate_limits"] = map[string]any{"per_ip": 100000, "per_provider": 100000, "window": "1m"}
	s := startSidecar(t, cfg, nil)
	pid := s.Pid()

	toks := []string{s.mustExchange(t, ghID, w.ghToken(t, nil)), s.mustExchange(t, ghID, w.ghToken(t, nil))}
	presign := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = w.ghToken(t, nil)
		}
		return out
	}
	pausedJWTs, stoppedJWTs := presign(40), presign(40)
	for _, tok := range toks {
		expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", tok), http.StatusOK)
	}
	storeErrors := s.metric(t, `oidc_sidecar_store_errors_total{op="rate_limit"}`)

	// --- Hung Redis: connections stay open, nothing answers.
	n := w.upstreamCount()
	w.redis.Pause()
	paused := time.Now()
	rs := faultLoad(t, s, pausedJWTs, toks, 4, 20, 10*time.Second)
	cached := checkOutage(t, "Redis paused", rs, paused, time.Second)
	if st, body := s.readyz(t); st != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body["problems"]), "token store unreachable") {
		t.Errorf("/readyz while Redis is paused: %d %v", st, body)
	}
	w.redis.Resume()
	if got := w.upstreamCount() - n; got != cached {
		t.Errorf("the upstream received %d requests during the outage, want only the %d cached ones", got, cached)
	}

	// --- Dead Redis.
	n = w.upstreamCount()
	w.redis.Stop()
	stopped := time.Now()
	rs = faultLoad(t, s, stoppedJWTs, toks, 4, 20, 10*time.Second)
	cached = checkOutage(t, "Redis stopped", rs, stopped, time.Second)
	if got := w.upstreamCount() - n; got != cached {
		t.Errorf("the upstream received %d requests during the outage, want only the %d cached ones", got, cached)
	}
	if st, body := s.readyz(t); st != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body["problems"]), "token store unreachable") {
		t.Errorf("/readyz with Redis down: %d %v", st, body)
	}
	r := s.introspect(t, toks[0], adminToken)
	if code, _ := oauthError(t, r); r.Status != http.StatusServiceUnavailable || code != "temporarily_unavailable" {
		t.Errorf("introspection with Redis down: %s, want 503 (never active:false)", r)
	}
	r = s.revoke(t, toks[0])
	if code, desc := oauthError(t, r); r.Status != http.StatusServiceUnavailable || code != "temporarily_unavailable" || !strings.Contains(desc, "NOT revoked") {
		t.Errorf("revocation with Redis down: %s", r)
	}
	r = s.exchange8693(t, ghID, w.ghToken(t, nil), "")
	if code, _ := oauthError(t, r); r.Status != http.StatusServiceUnavailable || code != "temporarily_unavailable" {
		t.Errorf("RFC 8693 exchange with Redis down: %s", r)
	}
	if got := s.metric(t, `oidc_sidecar_store_errors_total{op="rate_limit"}`); got <= storeErrors {
		t.Errorf("store_errors_total{op=rate_limit} = %v, want more than %v", got, storeErrors)
	}
	var msg503 string
	for _, r := range rs {
		if r.op == "exchange" {
			msg503 = r.body
			break
		}
	}
	if !strings.Contains(msg503, "the token store is unavailable, so no token was issued; retry in a few seconds (decision ") {
		t.Errorf("exchange 503 body %q", msg503)
	}

	// --- Recovery, same process.
	w.redis.Restart()
	took := await(t, awaitTimeout, "/readyz 200 after Redis restarted", func() bool { st, _ := quickStatus(s.AdminURL + "/readyz"); return st == 200 })
	t.Logf("ready %s after Redis restarted", took.Round(time.Millisecond))
	if s.Pid() != pid {
		t.Fatal("the sidecar process changed")
	}
	// A token refused with 503 during the outage exchanges now: its replay
	// claim never reached Redis.
	fresh := s.mustExchange(t, ghID, stoppedJWTs[0])
	n = w.upstreamCount()
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", fresh), http.StatusOK)
	w.upstreamSawOnly(t, n, fresh)
	// Tokens issued before the restart died with Redis's data: refused
	// (their records left Redis when it was stopped).
	r = awaitUnauthorized(t, w, s, "/workspaces/"+workspace+"/projects", toks[0], stopped)
	expectError(t, r, http.StatusUnauthorized, "Wrong authentication data")
	stopGracefully(t, s)
}

// TestFaultIssuer: with the issuer's JWKS down after warm-up, cached keys
// keep verifying; an issuer down from the start is a 503 (nothing stored)
// until it comes back.
func TestFaultIssuer(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.cc.SetDown(true) // never reachable before the sidecar starts
	s := startSidecar(t, w.config(), nil)

	s.mustExchange(t, ghID, w.ghToken(t, nil)) // warm (the sidecar also prefetches)
	w.gh.SetDown(true)
	d0, j0 := w.gh.Fetches()
	for range 5 {
		tok := s.mustExchange(t, ghID, w.ghToken(t, nil))
		expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", tok), http.StatusOK)
	}
	if d, j := w.gh.Fetches(); d != d0 || j != j0 {
		t.Logf("issuer fetched %d/%d times while down (refreshes, answered 503)", d-d0, j-j0)
	}
	// A new kid cannot be learnt while the issuer is down: 401, not an allow.
	kid, err := w.gh.Rotate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	expectError(t, s.exchangeBuddy(t, ghID, sign(t, w.gh, w.ghClaims(), oidctest.WithKID(kid))), http.StatusUnauthorized, "is not in the issuer's key set")

	// The CircleCI-shaped issuer has never answered.
	before := w.keys(t)
	ccJWT := sign(t, w.cc, w.ccClaims())
	r := s.exchangeBuddy(t, ccID, ccJWT)
	expectError(t, r, http.StatusServiceUnavailable, "the keys of the OIDC issuer "+w.cc.URL()+" could not be fetched", "retry in a few seconds (decision ")
	if r.Dur > 10*time.Second {
		t.Errorf("the 503 took %s", r.Dur)
	}
	w.expectNoNewKeys(t, before)
	w.cc.SetDown(false)
	var last *response
	took := await(t, awaitTimeout, "the CircleCI-shaped issuer's keys after it came back", func() bool {
		last = s.exchangeBuddy(t, ccID, ccJWT) // a 503 does not claim the token
		return last.Status == http.StatusOK
	})
	t.Logf("exchanges worked %s after the issuer came back", took.Round(time.Millisecond))
	bareToken(t, last)
}

// TestFaultKeyRotation: the issuer rotates its key and unpublishes the old
// one; a token with the new kid is accepted within the refresh cooldown,
// and the old key stops verifying once the new key set is fetched.
func TestFaultKeyRotation(t *testing.T) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg["oidc"] = map[string]any{"refresh_cooldown": "1s"}
	s := startSidecar(t, cfg, nil)

	oldKID := w.gh.KID()
	oldKey := w.gh.Key(oldKID)
	s.mustExchange(t, ghID, w.ghToken(t, nil))
	// The first unknown kid right after the warm-up may fall in the cooldown.
	expectError(t, s.exchangeBuddy(t, ghID, handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "not-yet"}, mustJSON(w.ghClaims()), oldKey)),
		http.StatusUnauthorized, `signing key "not-yet" is not in the issuer's key set`)

	newKID, err := w.gh.Rotate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	w.gh.RemoveKey(oldKID)
	rotated := time.Now()
	jwt := sign(t, w.gh, w.ghClaims(), oidctest.WithKID(newKID))
	var last *response
	await(t, awaitTimeout, "a token with the new kid to be accepted", func() bool {
		last = s.exchangeBuddy(t, ghID, jwt) // refusals do not claim it
		if last.Status != http.StatusOK && last.Status != http.StatusUnauthorized {
			t.Fatalf("new kid: %s", last)
		}
		return last.Status == http.StatusOK
	})
	took := time.Since(rotated)
	t.Logf("new kid accepted %s after the rotation (refresh_cooldown 1s)", took.Round(time.Millisecond))
	if took > time.Second+5*time.Second {
		t.Errorf("the new kid took %s to be accepted, want at most the 1s cooldown (+ slack)", took)
	}
	tok := bareToken(t, last)
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", tok), http.StatusOK)

	// The old key is gone from the fetched set: its tokens are refused.
	old := handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": oldKID}, mustJSON(w.ghClaims()), oldKey)
	before := w.keys(t)
	expectError(t, s.exchangeBuddy(t, ghID, old), http.StatusUnauthorized, fmt.Sprintf("signing key %q is not in the issuer's key set", oldKID))
	w.expectNoNewKeys(t, before)

	// An ECDSA rotation on the generic issuer, to another curve.
	esKID, err := w.gen.Rotate("ES384")
	if err != nil {
		t.Fatal(err)
	}
	esJWT := sign(t, w.gen, w.genClaims(), oidctest.WithKID(esKID))
	await(t, awaitTimeout, "an ES384 token with the new kid to be accepted", func() bool {
		last = s.exchangeBuddy(t, genID, esJWT)
		return last.Status == http.StatusOK
	})
}

// bundleServer serves one bundle at /b.tar.gz with an ETag, and can be
// stopped and started again on the same address.
type bundleServer struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	body []byte
	srv  *http.Server
	hits atomic.Int64
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	b := &bundleServer{t: t, body: body}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.stop)
	return b
}

func (b *bundleServer) URL() string { return "http://" + b.addr + "/b.tar.gz" }

func (b *bundleServer) serve(ln net.Listener) {
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		body := b.body
		b.mu.Unlock()
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
}

func (b *bundleServer) set(body []byte) {
	b.mu.Lock()
	b.body = body
	b.mu.Unlock()
}

func (b *bundleServer) stop() {
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

func (b *bundleServer) start() {
	var ln net.Listener
	var err error
	deadline := time.Now().Add(awaitTimeout)
	for ln, err = net.Listen("tcp", b.addr); err != nil; ln, err = net.Listen("tcp", b.addr) {
		if time.Now().After(deadline) {
			b.t.Fatalf("restarting the bundle server on %s: %v", b.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.serve(ln)
}

// rewriteBundle copies a bundle tarball, setting the manifest's revision
// and adding (or replacing) files.
func rewriteBundle(t *testing.T, src []byte, revision string, files map[string]string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	write := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, replaced := files[h.Name]; replaced {
			continue
		}
		if strings.TrimPrefix(h.Name, "/") == ".manifest" {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			m["revision"] = revision
			data = mustJSON(m)
		}
		write(h.Name, data)
	}
	for name, data := range files {
		write(name, []byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestFaultBundle serves the policy from a bundle URL polled every second.
// The bundle server goes down, comes back with garbage bytes, then with a
// bundle whose Rego does not compile: each time the reload is rejected
// (reloads_total{result="error"} grows), /readyz keeps the old revision and
// decisions keep working under it. A good new revision is then picked up
// (positive control: the poller was polling all along).
func TestFaultBundle(t *testing.T) {
	w := newWorld(t, worldOpts{})
	build := func(rev, providers string) []byte {
		p := filepath.Join(w.dir, rev+".tar.gz")
		out, errOut, code := runCLI(t, nil, "bundle", "build", "--providers", providers, "-o", p, "--revision", rev)
		if code != 0 {
			t.Fatalf("bundle build: %s%s", out, errOut)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1 := build("e2e-v1", w.providers)
	p2 := filepath.Join(w.dir, "providers-v2.yaml")
	yml, _ := os.ReadFile(w.providers)
	writeFile(t, p2, strings.Replace(string(yml), "scopes: [WORKSPACE, EXECUTION_RUN]", "scopes: [WORKSPACE, EXECUTION_RUN, VARIABLE_INFO]", 1))
	v2 := build("e2e-v2", p2)

	bs := newBundleServer(t, v1)
	cfg := w.config()
	delete(cfg, "providers")
	cfg["bundle"] = bs.URL()
	cfg["bundle_poll"] = "1s"
	s := startSidecar(t, cfg, nil)

	const errSeries = `oidc_sidecar_policy_reloads_total{result="error"}`
	tok := s.mustExchange(t, ghID, w.ghToken(t, nil))
	// stillServingV1 checks /readyz and a decision of each kind.
	stillServingV1 := func(phase string) {
		t.Helper()
		st, ready := s.readyz(t)
		if st != http.StatusOK || ready["revision"] != "e2e-v1" {
			t.Fatalf("%s: /readyz %d %v, want 200 with revision e2e-v1", phase, st, ready)
		}
		r := s.exchange8693(t, ghID, w.ghToken(t, nil), "")
		expectStatus(t, r, http.StatusOK)
		if sc := jsonObject(t, r)["scope"]; sc != ghScopes {
			t.Fatalf("%s: granted scope %v, want v1's %q", phase, sc, ghScopes)
		}
		expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", tok), http.StatusOK)
		expectError(t, s.call(t, http.MethodGet, "/workspaces/"+otherWS+"/projects", tok), http.StatusForbidden, "is not allowed for this token")
	}
	awaitReloadError := func(phase string) {
		t.Helper()
		base := s.metric(t, errSeries)
		took := await(t, awaitTimeout, phase+": a rejected reload", func() bool { return s.metric(t, errSeries) > base })
		t.Logf("%s: reload rejected after %s (%s %v → %v)", phase, took.Round(time.Millisecond), errSeries, base, s.metric(t, errSeries))
		stillServingV1(phase)
		if _, ready := s.readyz(t); ready["last_reload_error"] == nil {
			t.Errorf("%s: /readyz has no last_reload_error", phase)
		}
	}
	stillServingV1("start")

	bs.stop()
	awaitReloadError("bundle server down")

	bs.set([]byte("this is not a gzip tarball\x00\x01\x02"))
	bs.start()
	awaitReloadError("garbage bytes")

	broken := rewriteBundle(t, v1, "e2e-broken", map[string]string{
		"/sidecar/broken.rego": "package sidecar.broken\n\nallow if no_such_function(input.x)\n",
	})
	bs.set(broken)
	awaitReloadError("Rego that does not compile")
	if lines := s.logs.Lines("still serving the previous revision", "e2e-v1"); len(lines) == 0 {
		t.Error("no log line says the reload was rejected and e2e-v1 still serves")
	}

	okBase := s.metric(t, `oidc_sidecar_policy_reloads_total{result="ok"}`)
	bs.set(v2)
	await(t, awaitTimeout, "revision e2e-v2 to be served", func() bool {
		_, ready := s.readyz(t)
		return ready["revision"] == "e2e-v2"
	})
	r := s.exchange8693(t, ghID, w.ghToken(t, nil), "")
	expectStatus(t, r, http.StatusOK)
	if sc := jsonObject(t, r)["scope"]; sc != ghScopes+" VARIABLE_INFO" {
		t.Errorf("under v2 the granted scope is %v, want %q", sc, ghScopes+" VARIABLE_INFO")
	}
	if got := s.metric(t, `oidc_sidecar_policy_reloads_total{result="ok"}`); got <= okBase {
		t.Errorf("reloads_total{result=ok} = %v, want more than %v", got, okBase)
	}
	if _, ready := s.readyz(t); ready["last_reload_error"] != nil {
		t.Errorf("/readyz still reports a reload error after a good reload: %v", ready["last_reload_error"])
	}
	// Tokens issued under v1 keep working under v2.
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", tok), http.StatusOK)
	t.Logf("the bundle server answered %d requests", bs.hits.Load())
}

// TestFaultUpstream: an upstream slower than upstream.timeout gets a 504
// within about that timeout; an unreachable upstream a 502; neither answer
// leaks the upstream credential, and the audit lines say what happened.
func TestFaultUpstream(t *testing.T) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg["unknown_routes"] = "authenticated" // lets the fake's /_fake/slow through
	cfg["upstream"].(map[string]any)["timeout"] = "1s"
	s := startSidecar(t, cfg, nil)
	tok := s.mustExchange(t, ghID, w.ghToken(t, nil))

	r := s.call(t, http.MethodGet, "/_fake/slow?ms=5000", tok)
	if r.Status != http.StatusGatewayTimeout || r.Dur > 4*time.Second {
		t.Errorf("slow upstream: %s after %s, want 504 after about 1s", r, r.Dur.Round(time.Millisecond))
	}
	if strings.Contains(string(r.Body), upstreamToken) {
		t.Error("the 504 body holds the upstream credential")
	}

	w.apiSrv.Close() // the upstream goes away
	r = s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", tok)
	if r.Status != http.StatusBadGateway || strings.Contains(string(r.Body), upstreamToken) {
		t.Errorf("unreachable upstream: %s, want 502 without the credential", r)
	}
	errMessage(t, r) // Buddy's error shape
	// Audit lines are written after the answer: await them.
	await(t, awaitTimeout, "audit lines for the 504 and the 502", func() bool {
		return len(s.logs.Lines(`"event":"proxy"`, `"status":504`, `"code":"upstream_timeout"`)) == 1 &&
			len(s.logs.Lines(`"event":"proxy"`, `"status":502`, `"code":"upstream_unreachable"`)) == 1
	})
}
