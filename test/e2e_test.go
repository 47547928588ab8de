package test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

// TestEndToEnd runs the whole flow against `serve` built from files
// (providers.yaml + the embedded policies) with a real Redis.
func TestEndToEnd(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), nil)
	st, ready := s.readyz(t)
	if st != http.StatusOK || ready["store"] != "redis" || !strings.HasPrefix(ready["revision"].(string), "sha256-") {
		t.Fatalf("/readyz = %d %v", st, ready)
	}
	runFlow(t, w, s)
	stopGracefully(t, s)
}

// TestEndToEndBundle runs the same flow from a bundle built by
// `oidc-sidecar bundle build` and served with `bundle:` in the config.
func TestEndToEndBundle(t *testing.T) {
	w := newWorld(t, worldOpts{})
	b := filepath.Join(w.dir, "b.tar.gz")
	out, errOut, code := runCLI(t, nil, "bundle", "build", "--providers", w.providers, "-o", b, "--revision", "e2e-bundle-1")
	if code != 0 {
		t.Fatalf("bundle build: status %d\n%s%s", code, out, errOut)
	}
	cfg := w.config()
	delete(cfg, "providers")
	cfg["bundle"] = b
	s := startSidecar(t, cfg, nil)
	if st, ready := s.readyz(t); st != http.StatusOK || ready["revision"] != "e2e-bundle-1" || ready["providers"] != float64(3) {
		t.Fatalf("/readyz = %d %v, want revision e2e-bundle-1 with 3 providers", st, ready)
	}
	runFlow(t, w, s)
	stopGracefully(t, s)
}

func stopGracefully(t *testing.T, s *sidecar) {
	t.Helper()
	start := time.Now()
	if code := s.Stop(); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0; log tail:\n%s", code, s.logs.Tail(4096))
	}
	if len(s.logs.Lines(`"msg":"shutting down`)) != 1 {
		t.Errorf("no shutting-down log line; log tail:\n%s", s.logs.Tail(2048))
	}
	t.Logf("graceful shutdown in %s", time.Since(start).Round(time.Millisecond))
}

// runFlow: exchange (both endpoints, three provider shapes) → proxied calls
// (allowed, scope 403, workspace 403, unknown route 403) → introspection →
// expiry (Redis native, via PEXPIRE) → revocation → replay.
func runFlow(t *testing.T, w *world, s *sidecar) {
	ctx := ctxT(t)

	// --- 1. GitHub-shaped token, Buddy endpoint: the bare token (text/plain).
	before := w.keys(t)
	ghJWT := w.ghToken(t, nil)
	r := s.exchangeBuddy(t, ghID, ghJWT)
	expectStatus(t, r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.HasPrefix(string(r.Body), "ocs_") {
		t.Errorf("body %q is not the bare token", truncate(string(r.Body), 20))
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if r.Header.Get("X-Decision-Id") == "" {
		t.Error("no X-Decision-Id")
	}
	ghTok := bareToken(t, r)
	added := w.newKeys(t, before)
	jti := ""
	if err := json.Unmarshal(mustJSON(decodeClaims(t, ghJWT)["jti"]), &jti); err != nil || jti == "" {
		t.Fatalf("jti: %v", err)
	}
	wantOnce := keyPrefix + "once:jti:" + sha256Hex(w.gh.URL()+"\x00"+jti)
	if want := []string{wantOnce, tokenKey(ghTok)}; !sameSet(added, want) {
		t.Fatalf("Redis keys added by the exchange = %v, want exactly %v (the replay claim and the token's SHA-256)", added, want)
	}
	if ttl := w.rdb.PTTL(ctx, tokenKey(ghTok)).Val(); ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Errorf("token key TTL %s, want the provider's lifetime 10m (native expiry)", ttl)
	}
	if ttl := w.rdb.PTTL(ctx, wantOnce).Val(); ttl <= 5*time.Minute || ttl > 6*time.Minute+time.Second {
		t.Errorf("replay key TTL %s, want exp (+5m) + leeway (60s)", ttl)
	}
	stored := w.rdb.Get(ctx, tokenKey(ghTok)).Val()
	if strings.Contains(stored, ghTok) || strings.Contains(stored, ghJWT) || strings.Contains(stored, "ocs_") {
		t.Fatalf("the stored record holds the token or the JWT: %s", stored)
	}
	var rec struct {
		ProviderID string            `json:"provider_id"`
		Scopes     []string          `json:"scopes"`
		Workspaces []string          `json:"workspaces"`
		Claims     map[string]string `json:"claims"`
	}
	if err := json.Unmarshal([]byte(stored), &rec); err != nil {
		t.Fatalf("stored record: %v: %s", err, stored)
	}
	if rec.ProviderID != ghID || strings.Join(rec.Scopes, " ") != ghScopes || !reflect.DeepEqual(rec.Workspaces, []string{workspace}) || rec.Claims["repository"] != ghRepo {
		t.Errorf("stored record %s", stored)
	}

	// --- 2. Allowed proxied calls: the upstream gets only its credential.
	n := w.upstreamCount()
	r = s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", ghTok)
	expectStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"projects"`) {
		t.Errorf("body %s", r.Body)
	}
	r = s.call(t, http.MethodPost, "/workspaces/"+workspace+"/projects/web/pipelines/7/executions", ghTok)
	expectStatus(t, r, http.StatusOK)
	rs := w.upstreamSawOnly(t, n, ghTok)
	if len(rs) != 2 || rs[0].Method != "GET" || rs[0].Path != "/workspaces/"+workspace+"/projects" ||
		rs[1].Method != "POST" || rs[1].Path != "/workspaces/"+workspace+"/projects/web/pipelines/7/executions" {
		t.Fatalf("upstream received %+v", rs)
	}

	// --- 3. Another workspace, an unknown route: 403, nothing forwarded.
	n = w.upstreamCount()
	r = s.call(t, http.MethodGet, "/workspaces/"+otherWS+"/projects", ghTok)
	if msg := expectError(t, r, http.StatusForbidden); msg != `Access to workspace "other-company" is not allowed for this token. Allowed workspaces: [my-company]` {
		t.Errorf("workspace 403 message %q", msg)
	}
	r = s.call(t, http.MethodGet, "/workspaces/"+workspace+"/no-such-thing", ghTok)
	if msg := expectError(t, r, http.StatusForbidden); msg != "GET /workspaces/my-company/no-such-thing is not in the sidecar's route table" {
		t.Errorf("unknown route 403 message %q", msg)
	}
	w.expectUpstreamUntouched(t, n)

	// --- 4. CircleCI-shaped token (no jti), RFC 8693 endpoint.
	before = w.keys(t)
	ccJWT := sign(t, w.cc, w.ccClaims())
	r = s.exchange8693(t, ccID, ccJWT, "")
	expectStatus(t, r, http.StatusOK)
	var grant struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		TokenType       string `json:"token_type"`
		ExpiresIn       int    `json:"expires_in"`
		Scope           string `json:"scope"`
	}
	if err := json.Unmarshal(r.Body, &grant); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(grant.AccessToken, "ocs_") || grant.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" ||
		grant.TokenType != "Bearer" || grant.ExpiresIn != 1800 || grant.Scope != ccScopes {
		t.Fatalf("RFC 8693 answer %s", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("RFC 8693 Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	ccTok := grant.AccessToken
	// Tokens without jti (CircleCI's) are claimed by the hash of what their
	// signature covers (header.payload), never of the signature bytes.
	if want := []string{keyPrefix + "once:jws:" + sha256Hex(ccJWT[:strings.LastIndex(ccJWT, ".")]), tokenKey(ccTok)}; !sameSet(w.newKeys(t, before), want) {
		t.Fatalf("keys added = %v, want %v", w.newKeys(t, before), want)
	}
	n = w.upstreamCount()
	r = s.call(t, http.MethodGet, "/workspaces/"+otherWS+"/projects/web/pipelines/7/executions", ccTok) // all workspaces
	expectStatus(t, r, http.StatusOK)
	if rs := w.upstreamSawOnly(t, n, ccTok); len(rs) != 1 || rs[0].Path != "/workspaces/"+otherWS+"/projects/web/pipelines/7/executions" {
		t.Fatalf("upstream received %+v", rs)
	}
	n = w.upstreamCount()
	r = s.call(t, http.MethodPost, "/workspaces/"+workspace+"/projects/web/pipelines/7/executions", ccTok)
	if msg := expectError(t, r, http.StatusForbidden); msg != "Insufficient scopes. Your token has the following scopes: [EXECUTION_INFO]. This request requires the following scopes: EXECUTION_RUN" {
		t.Errorf("scope 403 message %q", msg)
	}
	w.expectUpstreamUntouched(t, n)

	// --- 5. Generic (ECDSA) token, Buddy endpoint.
	genTok := s.mustExchange(t, genID, sign(t, w.gen, w.genClaims()))
	n = w.upstreamCount()
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/variables", genTok), http.StatusOK)
	w.upstreamSawOnly(t, n, genTok)

	// --- 6. Introspection (admin listener, admin credential).
	r = s.introspect(t, ghTok, adminToken)
	expectStatus(t, r, http.StatusOK)
	in := jsonObject(t, r)
	iat, _ := in["iat"].(float64)
	for k, want := range map[string]any{
		"active": true, "scope": ghScopes, "client_id": ghID, "sub": "repo:" + ghRepo + ":ref:" + ghRef,
		"iss": w.gh.URL(), "token_type": "Bearer", "exp": iat + 600, "repository": ghRepo, "ref": ghRef,
		"provider_name": "GHA-like - octo-repo:deploy", "workspaces": []any{workspace},
	} {
		if !reflect.DeepEqual(in[k], want) {
			t.Errorf("introspection %s = %#v, want %#v (all: %s)", k, in[k], want, r.Body)
		}
	}
	if now := float64(time.Now().Unix()); iat < now-60 || iat > now+1 {
		t.Errorf("introspection iat %v, now %v", iat, now)
	}
	r = s.introspect(t, ghTok, "")
	expectStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) || strings.Contains(string(r.Body), "active") {
		t.Errorf("introspection without the admin token: %s %v", r, r.Header)
	}
	expectStatus(t, s.introspect(t, ghTok, adminToken+"x"), http.StatusUnauthorized)
	expectStatus(t, s.introspect(t, ghTok, ghTok), http.StatusUnauthorized) // a sidecar token is no admin credential
	// Introspection is not served on the main listener: there it is just
	// an unknown route of the proxy, and nothing reaches the upstream.
	n = w.upstreamCount()
	req := newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/introspect", "application/x-www-form-urlencoded", "token="+ghTok)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	r = do(t, req)
	if r.Status == http.StatusOK || strings.Contains(string(r.Body), "active") {
		t.Errorf("introspection answered on the main listener: %s", r)
	}
	w.expectUpstreamUntouched(t, n)

	// --- 7. Expiry: Redis's native expiry removes the record.
	start := time.Now()
	if !w.rdb.PExpire(ctx, tokenKey(genTok), 300*time.Millisecond).Val() {
		t.Fatal("PEXPIRE: the generic token's key does not exist")
	}
	await(t, awaitTimeout, "the token key to expire", func() bool { return w.rdb.Exists(ctx, tokenKey(genTok)).Val() == 0 })
	t.Logf("token key expired %s after PEXPIRE 300ms", time.Since(start).Round(time.Millisecond))
	// The proxy may reuse a record it looked up less than tokenCacheBound
	// ago (sidecar/proxy/tokencache.go); past that the token is refused.
	gone := time.Now()
	r = awaitUnauthorized(t, w, s, "/workspaces/"+workspace+"/variables", genTok, gone)
	if msg := errMessage(t, r); msg != "Wrong authentication data" {
		t.Errorf("expired token message %q", msg)
	}
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
	expectInactive(t, s.introspect(t, genTok, adminToken))

	// --- 8. Revocation (RFC 7009): 200 for anything; the token is gone.
	r = s.revoke(t, ghTok)
	expectStatus(t, r, http.StatusOK)
	if len(r.Body) != 0 {
		t.Errorf("revoke body %q, want empty", r.Body)
	}
	if w.rdb.Exists(ctx, tokenKey(ghTok)).Val() != 0 {
		t.Fatal("the token key survived revocation")
	}
	expectInactive(t, s.introspect(t, ghTok, adminToken))
	// Revoked through this sidecar: refused by the very next request, even
	// though the proxy cached the record moments ago (docs/proxy.md).
	n = w.upstreamCount()
	expectError(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", ghTok), http.StatusUnauthorized, "Wrong authentication data")
	w.expectUpstreamUntouched(t, n)
	expectStatus(t, s.revoke(t, ghTok), http.StatusOK)                    // again
	expectStatus(t, s.revoke(t, "garbage"), http.StatusOK)                // not a token
	expectStatus(t, s.revoke(t, ghTok[:len(ghTok)-1]+"x"), http.StatusOK) // bad checksum
	// The CircleCI token is unaffected by the other revocation.
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects/web/pipelines/7/executions", ccTok), http.StatusOK)

	// --- 9. Replay: the first OIDC token, again.
	before = w.keys(t)
	r = s.exchangeBuddy(t, ghID, ghJWT)
	if msg := expectError(t, r, http.StatusUnauthorized); msg != "this OIDC token was already exchanged; request a fresh one from your CI provider" {
		t.Errorf("replay message %q", msg)
	}
	w.expectNoNewKeys(t, before)

	// --- 10. Audit: one event per issued token, naming its hash prefix
	// (audit lines are written after the answer: await them).
	for _, tok := range []string{ghTok, ccTok, genTok} {
		await(t, awaitTimeout, "the audit event of an issued token", func() bool {
			return len(s.logs.Lines(`"event":"exchange"`, `"outcome":"issued"`, sha256Hex(tok)[:12])) == 1
		})
	}
	await(t, awaitTimeout, "the audit events of the replay and the revocation", func() bool {
		return len(s.logs.Lines(`"event":"exchange"`, `"outcome":"replayed"`)) == 1 &&
			len(s.logs.Lines(`"event":"revoke"`, sha256Hex(ghTok)[:12])) == 1
	})
	if lines := s.logs.Lines(`"event":"proxy"`); len(lines) < 10 {
		t.Errorf("%d proxy audit events, want one per proxied request", len(lines))
	}
}

// expectInactive checks the exact RFC 7662 inactive answer.
func expectInactive(t *testing.T, r *response) {
	t.Helper()
	expectStatus(t, r, http.StatusOK)
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil || !reflect.DeepEqual(m, map[string]any{"active": false}) {
		t.Fatalf("introspection = %s, want exactly {\"active\": false}", r.Body)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

// decodeClaims decodes a JWT's payload without verifying it.
func decodeClaims(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS")
	}
	var m map[string]any
	if err := json.Unmarshal(mustB64(t, parts[1]), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// tokenCacheBound is how long the proxy may keep using a token record it
// read from Redis (proxy.DefaultTokenCacheTTL, 1 s) plus scheduling slack.
const tokenCacheBound = 1500 * time.Millisecond

// awaitUnauthorized calls path with tok until the sidecar answers 401. A
// 200 (a record still in the proxy's short cache) is tolerated only within
// tokenCacheBound of since, the moment the record left Redis; anything else
// fails. Once refused, the token stays refused and nothing more is
// forwarded.
func awaitUnauthorized(t *testing.T, w *world, s *sidecar, path, tok string, since time.Time) *response {
	t.Helper()
	for {
		n := w.upstreamCount()
		r := s.call(t, http.MethodGet, path, tok)
		switch {
		case r.Status == http.StatusUnauthorized:
			if d := time.Since(since); d > 100*time.Millisecond {
				t.Logf("%s: refused %s after the record left Redis (proxy token cache)", path, d.Round(time.Millisecond))
			}
			w.expectUpstreamUntouched(t, n)
			n = w.upstreamCount()
			expectStatus(t, s.call(t, http.MethodGet, path, tok), http.StatusUnauthorized)
			w.expectUpstreamUntouched(t, n)
			return r
		case r.Status == http.StatusOK && time.Since(since) < tokenCacheBound:
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("%s with a token whose record left Redis %s ago: %s, want 401", path, time.Since(since).Round(time.Millisecond), r)
		}
	}
}

// TestRevocationIsImmediate: once the sidecar has answered 200 to a
// revocation, the token must not get through that same sidecar again — the
// issue's "revoke, then 401 on use". The proxy's token cache could only
// excuse a delay for revocations made through another replica.
func TestRevocationIsImmediate(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), nil)
	tok := s.mustExchange(t, ghID, w.ghToken(t, nil))
	path := "/workspaces/" + workspace + "/projects"
	expectStatus(t, s.call(t, http.MethodGet, path, tok), http.StatusOK) // the record is now cached
	expectStatus(t, s.revoke(t, tok), http.StatusOK)
	n := w.upstreamCount()
	r := s.call(t, http.MethodGet, path, tok)
	if r.Status != http.StatusUnauthorized {
		t.Errorf("right after a successful revocation on this sidecar, the revoked token was answered %s and the request "+
			"was forwarded %d time(s); want 401 Wrong authentication data (the revocation must evict the proxy's token cache)",
			r, w.upstreamCount()-n)
	}

	// Revoke while requests with the token are in flight: once the
	// revocation has been answered, no request started afterwards may get
	// through (a lookup in flight during the revocation must not re-cache
	// the record).
	for round := range 5 {
		tok := s.mustExchange(t, ghID, w.ghToken(t, nil))
		stop := make(chan struct{})
		var revokedAt atomic.Int64 // unix nanos; 0 = not yet answered
		var late atomic.Int64      // requests started after revokedAt and answered 200
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					started := time.Now().UnixNano()
					req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					resp.Body.Close()
					if at := revokedAt.Load(); at != 0 && started > at && resp.StatusCode == http.StatusOK {
						late.Add(1)
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond) // let requests run (and cache the record) before revoking
		expectStatus(t, s.revoke(t, tok), http.StatusOK)
		revokedAt.Store(time.Now().UnixNano())
		time.Sleep(100 * time.Millisecond)
		close(stop)
		wg.Wait()
		if late.Load() > 0 {
			t.Errorf("round %d: %d request(s) started after the revocation was answered got 200", round, late.Load())
		}
	}
}

// TestRedisTopologies: the binary configured for a Redis Cluster (redis.addrs)
// and for Sentinel (redis.addrs + redis.master_name) exchanges, refuses a
// replay, proxies and revokes, with every key where the configuration says.
func TestRedisTopologies(t *testing.T) {
	path := "/workspaces/" + workspace + "/projects"
	run := func(t *testing.T, w *world, redisCfg map[string]any, keys func() int) {
		cfg := w.config()
		cfg["redis"] = redisCfg
		s := startSidecar(t, cfg, nil)
		jwt := w.ghToken(t, nil)
		tok := s.mustExchange(t, ghID, jwt)
		expectError(t, s.exchangeBuddy(t, ghID, jwt), http.StatusUnauthorized, "already")
		expectStatus(t, s.call(t, http.MethodGet, path, tok), http.StatusOK)
		if n := keys(); n < 2 {
			t.Errorf("%d sidecar keys in Redis after an exchange, want the token and its replay claim", n)
		}
		expectStatus(t, s.revoke(t, tok), http.StatusOK)
		expectStatus(t, s.call(t, http.MethodGet, path, tok), http.StatusUnauthorized)
	}
	t.Run("cluster", func(t *testing.T) {
		w := newWorld(t, worldOpts{noRedis: true})
		nodes := redistest.StartCluster(t, 3)
		addrs := redistest.ClusterAddrs(nodes)
		run(t, w, map[string]any{"addrs": addrs}, func() int {
			n := 0
			for _, node := range nodes {
				keys, _ := node.Client().Keys(context.Background(), "oidc-sidecar:*").Result()
				n += len(keys)
			}
			return n
		})
	})
	t.Run("sentinel", func(t *testing.T) {
		w := newWorld(t, worldOpts{noRedis: true})
		master := redistest.Start(t)
		sentinel := redistest.StartSentinel(t, master, "sidecar-master")
		run(t, w, map[string]any{"addrs": []string{sentinel.Addr()}, "master_name": "sidecar-master"}, func() int {
			keys, _ := master.Client().Keys(context.Background(), "oidc-sidecar:*").Result()
			return len(keys)
		})
	})
}
