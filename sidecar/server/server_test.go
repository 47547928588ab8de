package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestAdminEndpointsWithRedis: /healthz, /readyz (revision, providers,
// store; 503 with "token store unreachable" while Redis is down, 200 again
// after it is back) and every documented metric family after traffic.
func TestAdminEndpointsWithRedis(t *testing.T) {
	rs := redistest.Start(t)
	h := newRig(t, rigOptions{configure: func(h *rig) {
		h.cfg.Redis = &RedisConfig{URL: rs.URL(), KeyPrefix: "test:"}
	}})

	status, body := h.do(http.MethodGet, h.admin+HealthPath, "", "", nil)
	if status != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", status, body)
	}
	status, r := h.readyz()
	if status != http.StatusOK || r.Status != "ready" || r.Store != "redis" || r.Providers != 1 ||
		!strings.HasPrefix(r.Revision, "sha256-") || r.LoadedAt == "" || r.LastReloadError != "" {
		t.Fatalf("/readyz: %d %+v", status, r)
	}
	if !strings.Contains(r.Source, h.provPath) || !strings.Contains(r.Source, "embedded policies") {
		t.Fatalf("/readyz source: %q", r.Source)
	}

	// Traffic: an issued token, a denial, an allowed and a refused call.
	tok := h.mustExchange(h.iss, provA)
	status, body, _, err := h.exchange(provA, h.jwt(h.iss, "evil-org"))
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("denied exchange: %d %s %v", status, body, err)
	}
	if status, body := h.do(http.MethodGet, h.base+"/workspaces/my-company/projects", tok, "", nil); status != http.StatusOK {
		t.Fatalf("allowed call: %d %s", status, body)
	}
	if status, body := h.do(http.MethodPost, h.base+"/workspaces/my-company/projects/web/pipelines/7/executions", tok, "application/json", strings.NewReader("{}")); status != http.StatusForbidden {
		t.Fatalf("call lacking EXECUTION_RUN: %d %s", status, body)
	}

	// Redis down: not ready, and the metric counts the failed ping.
	rs.Stop()
	r = h.awaitReady("503 with Redis stopped", func(status int, r readiness) bool { return status == http.StatusServiceUnavailable })
	if r.Status != "not ready" || len(r.Problems) != 1 || !strings.HasPrefix(r.Problems[0], "token store unreachable") ||
		r.Revision == "" {
		t.Fatalf("/readyz with Redis down: %+v", r)
	}
	if status, body := h.do(http.MethodGet, h.admin+HealthPath, "", "", nil); status != http.StatusOK {
		t.Fatalf("/healthz must not depend on Redis: %d %s", status, body)
	}
	text := h.metricsText()
	for _, fam := range []struct {
		name   string
		labels []string
	}{
		{"oidc_sidecar_exchanges_total", []string{"provider", provA, "outcome", "issued"}},
		{"oidc_sidecar_exchanges_total", []string{"provider", provA, "outcome", "denied"}},
		{"oidc_sidecar_exchange_denials_total", []string{"provider", provA, "reason", "condition_failed"}},
		{"oidc_sidecar_proxy_decisions_total", []string{"route", "/workspaces/{workspace}/projects", "status", "200"}},
		{"oidc_sidecar_proxy_decisions_total", []string{"status", "403"}},
		{"oidc_sidecar_exchange_duration_seconds_count", nil},
		{"oidc_sidecar_proxy_authorization_duration_seconds_count", nil},
		{"oidc_sidecar_upstream_duration_seconds_count", []string{"class", "2xx"}},
		{"oidc_sidecar_policy_eval_duration_seconds_count", []string{"query", "exchange"}},
		{"oidc_sidecar_jwks_fetches_total", []string{"issuer", h.iss.URL(), "kind", "jwks", "result", "ok"}},
		{"oidc_sidecar_store_errors_total", []string{"op", "ping"}},
		{"oidc_sidecar_policy_reloads_total", []string{"result", "ok"}},
		{"oidc_sidecar_policy_revision_info", []string{"revision", r.Revision}},
	} {
		if v := metric(text, fam.name, fam.labels...); v < 1 {
			t.Errorf("metric %s%v = %v, want >= 1", fam.name, fam.labels, v)
		}
	}
	if v := metric(text, "oidc_sidecar_exchange_duration_seconds_bucket", "le", "+Inf"); v < 2 {
		t.Errorf("exchange latency histogram: +Inf bucket %v", v)
	}
	if !strings.Contains(text, "# TYPE oidc_sidecar_exchange_duration_seconds histogram") {
		t.Errorf("exchange_duration_seconds is not a histogram")
	}
	if v := metric(text, "oidc_sidecar_policy_reloads_total", "result", "ok"); v != 1 {
		t.Errorf("one load so far, policy_reloads_total{ok} = %v", v)
	}

	// Redis back: ready again (the client reconnects).
	rs.Restart()
	h.awaitReady("200 after Redis restart", func(status int, r readiness) bool {
		return status == http.StatusOK && r.Status == "ready"
	})
	h.mustExchange(h.iss, provA)
}

// TestGracefulShutdown: a request in flight when shutdown starts completes
// with 200; new connections are refused meanwhile; Serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	h := newRigNoStart(t, rigOptions{
		upstream: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/_fake/slow" {
					arrived <- struct{}{}
					<-release
				}
				next.ServeHTTP(w, r)
			})
		},
		configure: func(h *rig) {
			routes := filepath.Join(h.dir, "routes.csv")
			csv := "method,path,required_scopes\nGET,/_fake/slow,\nGET,/workspaces/{workspace}/projects,WORKSPACE\n"
			if err := os.WriteFile(routes, []byte(csv), 0o600); err != nil {
				t.Fatal(err)
			}
			h.cfg.Routes = routes
		},
	})
	t.Cleanup(releaseAll) // runs before the upstream closes
	h.start(nil)
	tok := h.mustExchange(h.iss, provA)

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, body, err := h.try(http.MethodGet, h.base+"/_fake/slow?ms=0", tok, "", nil)
		done <- result{status, body, err}
	}()
	select {
	case <-arrived:
	case <-time.After(await):
		t.Fatal("the slow request never reached the upstream")
	}

	h.stop() // shutdown starts with the request in flight
	h.stop = nil
	for _, addr := range []string{h.srv.Addr(), h.srv.AdminAddr()} {
		deadline := time.Now().Add(await)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break // refused: the listener is closed
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("%s still accepts connections %s after shutdown started", addr, await)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("the in-flight request ended before the upstream answered: %+v", r)
	default:
	}

	releaseAll()
	r := <-done
	if r.err != nil || r.status != http.StatusOK || !strings.Contains(r.body, "slept_ms") {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	select {
	case err := <-h.served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(await):
		t.Fatal("Serve did not return")
	}
	if !logHas(t, h.logs, "msg", "shutting down") || !logHas(t, h.logs, "msg", "stopped") {
		t.Fatalf("shutdown not logged:\n%s", h.logs.String())
	}
}

// TestRequestSizeLimits: headers over limits.max_header_bytes get 431 on
// both listeners; an exchange body over limits.max_exchange_bytes gets 413.
func TestRequestSizeLimits(t *testing.T) {
	h := newRig(t, rigOptions{configure: func(h *rig) {
		h.cfg.Limits.MaxHeaderBytes = 8 << 10
		h.cfg.Limits.MaxExchangeBytes = 20 << 10
	}})
	// net/http allows 4 KiB of slack above MaxHeaderBytes.
	big := strings.Repeat("a", 8<<10+4<<10+1024)
	for _, addr := range []string{h.srv.Addr(), h.srv.AdminAddr()} {
		c, err := net.DialTimeout("tcp", addr, await)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(await))
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + big + "\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: oversized headers got %d, want 431", addr, resp.StatusCode)
		}
	}
	// A normal request with a few KiB of headers is fine.
	req, _ := http.NewRequest(http.MethodGet, h.admin+HealthPath, nil)
	req.Header.Set("X-Pad", strings.Repeat("a", 4<<10))
	resp, err := h.client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("4 KiB header: %v %v", resp, err)
	}
	resp.Body.Close()

	body := func(n int) *strings.Reader {
		b, _ := json.Marshal(map[string]string{"provider_id": provA, "web_identity_token": strings.Repeat("x", n)})
		return strings.NewReader(string(b))
	}
	status, text := h.do(http.MethodPost, h.base+"/user/oidc/tokens", "", "application/json", body(30<<10))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized exchange body: %d %s", status, text)
	}
	status, text = h.do(http.MethodPost, h.base+"/user/oidc/tokens", "", "application/json", body(19<<10))
	if status == http.StatusRequestEntityTooLarge || status >= 500 {
		t.Fatalf("an exchange body under the limit must be read: %d %s", status, text)
	}
}

// TestStartupFailures: New refuses to start, with a message that says what
// to fix.
func TestStartupFailures(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		edit func(h *rig)
		want []string
	}{
		{"missing upstream credential", func(h *rig) { delete(h.env, "BUDDY_TOKEN") },
			[]string{"BUDDY_TOKEN", "is empty", "upstream.token_env"}},
		{"unreadable providers file", func(h *rig) { h.cfg.Providers = filepath.Join(h.dir, "nope.yaml") },
			[]string{"loading policy from providers " + dirMarker + "/nope.yaml", "no such file"}},
		{"providers path is a directory", func(h *rig) { h.cfg.Providers = h.dir },
			[]string{"providers file", "is a directory"}},
		{"policies do not compile", func(h *rig) {
			dir := filepath.Join(h.dir, "policies")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			src := "package sidecar.bad\n\nx if {\n\tno_such_function(1)\n}\n"
			if err := os.WriteFile(filepath.Join(dir, "bad.rego"), []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			h.cfg.Policies = []string{dir}
		}, []string{"bad.rego:4:", "no_such_function"}},
		{"redis password variable empty", func(h *rig) {
			h.cfg.Redis = &RedisConfig{URL: "redis://127.0.0.1:1/0", PasswordEnv: "REDIS_PASSWORD"}
		}, []string{"redis.password_env names REDIS_PASSWORD, which is empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newRigNoStart(t, rigOptions{})
			c.edit(h)
			_, err := New(ctx, h.cfg, h.options(nil))
			if err == nil {
				t.Fatal("New succeeded")
			}
			t.Logf("%v", err)
			for _, w := range c.want {
				w = strings.ReplaceAll(w, dirMarker, h.dir)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// dirMarker in an expected message stands for the rig's directory.
const dirMarker = "\x00dir\x00"

// TestMemoryStoreWarning: without Redis, a warning at start says tokens
// are neither shared nor kept; /readyz reports the store.
func TestMemoryStoreWarning(t *testing.T) {
	h := newRig(t, rigOptions{})
	found := false
	for _, l := range h.logs.lines(t) {
		msg, _ := l["msg"].(string)
		if l["level"] == "WARN" && strings.Contains(msg, "no redis configured") && strings.Contains(msg, "memory") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no memory-store warning in:\n%s", h.logs.String())
	}
	if _, r := h.readyz(); r.Store != "memory" {
		t.Fatalf("/readyz store %q", r.Store)
	}
}

// TestAuditAndNoSecrets: one audit event per exchange and per proxied
// request; no token, JWT or credential anywhere in the logs.
func TestAuditAndNoSecrets(t *testing.T) {
	h := newRig(t, rigOptions{})
	var secrets []string
	secrets = append(secrets, h.upstreamToken, h.adminToken)

	good := h.jwt(h.iss, "octo-org")
	status, body, tok, err := h.exchange(provA, good)
	if err != nil || status != http.StatusOK {
		t.Fatalf("exchange: %d %s %v", status, body, err)
	}
	bad := h.jwt(h.iss, "evil-org")
	if status, body, _, _ := h.exchange(provA, bad); status != http.StatusUnauthorized {
		t.Fatalf("denied exchange: %d %s", status, body)
	}
	if status, body, _, _ := h.exchange(provA, good); status != http.StatusUnauthorized || !strings.Contains(body, "already exchanged") {
		t.Fatalf("replayed exchange: %d %s", status, body)
	}
	secrets = append(secrets, good, bad, tok, strings.Split(good, ".")[2], tok[len(tok)-20:])

	calls := []struct {
		method, path, bearer string
		want                 int
	}{
		{http.MethodGet, "/workspaces/my-company/projects", tok, http.StatusOK},
		{http.MethodPost, "/workspaces/my-company/projects/web/pipelines/7/executions", tok, http.StatusForbidden},
		{http.MethodGet, "/workspaces/other/projects", tok, http.StatusForbidden},
		{http.MethodGet, "/workspaces/my-company/projects", "", http.StatusUnauthorized},
		{http.MethodGet, "/workspaces/my-company/projects?access_token=" + url.QueryEscape(tok), "", http.StatusOK},
	}
	for _, c := range calls {
		if status, body := h.do(c.method, h.base+c.path, c.bearer, "application/json", nil); status != c.want {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, status, body, c.want)
		}
	}
	// The admin credential in use: introspection and a reload.
	status, body = h.do(http.MethodPost, h.admin+"/_sidecar/oauth2/introspect", h.adminToken,
		"application/x-www-form-urlencoded", strings.NewReader("token="+url.QueryEscape(tok)))
	if status != http.StatusOK || !strings.Contains(body, `"active":true`) {
		t.Fatalf("introspect: %d %s", status, body)
	}
	if status, body := h.do(http.MethodPost, h.admin+ReloadPath, h.adminToken, "", nil); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, body)
	}

	count := func(event string) int {
		n := 0
		for _, l := range h.audit.lines(t) {
			if l["event"] == event {
				n++
			}
		}
		return n
	}
	// Audit lines are written when a request finishes; the client has its
	// answer a moment before.
	deadline := time.Now().Add(await)
	for count("exchange") < 3 || count("proxy") < len(calls) {
		if time.Now().After(deadline) {
			t.Fatalf("audit events: %d exchange, %d proxy:\n%s", count("exchange"), count("proxy"), h.audit.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, m := count("exchange"), count("proxy"); n != 3 || m != len(calls) {
		t.Fatalf("want one audit event per request: %d exchange (want 3), %d proxy (want %d)", n, m, len(calls))
	}
	outcomes := map[string]int{}
	for _, l := range h.audit.lines(t) {
		if l["event"] == "exchange" {
			outcomes[l["outcome"].(string)]++
			if l["decision_id"] == "" || l["provider_id"] != provA {
				t.Errorf("exchange event lacks fields: %v", l)
			}
		}
	}
	if outcomes["issued"] != 1 || len(outcomes) < 2 {
		t.Errorf("exchange outcomes: %v", outcomes)
	}

	all := h.logs.String() + h.audit.String()
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("a secret (%.12s…) appears in the logs", s)
		}
	}
}

// TestReloadEndpointNeedsAdminCredential: POST /_sidecar/reload without
// or with a wrong bearer is 401; with it, 200 and the revision.
func TestReloadEndpointNeedsAdminCredential(t *testing.T) {
	h := newRig(t, rigOptions{})
	for _, bearer := range []string{"", "wrong", h.adminToken + "x"} {
		if status, _ := h.do(http.MethodPost, h.admin+ReloadPath, bearer, "", nil); status != http.StatusUnauthorized {
			t.Errorf("bearer %q: %d", bearer, status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, h.admin+ReloadPath, nil)
	req.Header.Set("Authorization", h.adminToken) // no scheme
	if resp, err := h.client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("credential without Bearer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	status, body := h.do(http.MethodPost, h.admin+ReloadPath, h.adminToken, "", nil)
	var got struct {
		Revision string `json:"revision"`
		Changed  bool   `json:"changed"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || status != http.StatusOK || got.Revision != h.revision() || got.Changed {
		t.Fatalf("reload of unchanged files: %d %s", status, body)
	}
	if status, _ := h.do(http.MethodGet, h.admin+ReloadPath, h.adminToken, "", nil); status != http.StatusMethodNotAllowed {
		t.Errorf("GET reload: %d", status)
	}
}

// TestReloadDisabledWithoutAdminCredential: no admin credential, no reload
// endpoint (401), and a warning says so.
func TestReloadDisabledWithoutAdminCredential(t *testing.T) {
	h := newRigNoStart(t, rigOptions{})
	delete(h.env, h.cfg.AdminTokenEnv)
	h.start(nil)
	if status, _ := h.do(http.MethodPost, h.admin+ReloadPath, "", "", nil); status != http.StatusUnauthorized {
		t.Fatalf("reload without a configured credential: %d", status)
	}
	if !logHas(t, h.logs, "level", "WARN", "msg", ReloadPath+" are disabled") {
		t.Fatalf("no warning:\n%s", h.logs.String())
	}
}

// TestServeReturnsListenError: Serve without Listen opens the listeners
// itself and reports an address in use.
func TestServeReturnsListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := newRigNoStart(t, rigOptions{configure: func(h *rig) { h.cfg.Listen = ln.Addr().String() }})
	srv, err := New(context.Background(), h.cfg, h.options(token.NewMemory(time.Now)))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(context.Background())
	var oe *net.OpError
	if err == nil || !errors.As(err, &oe) || !strings.Contains(err.Error(), "listen "+ln.Addr().String()) {
		t.Fatalf("Serve: %v", err)
	}
}
