package test

import (
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRateLimitFromEnv: OIDC_SIDECAR_RATE_LIMITS_PER_IP overrides the
// config file's per_ip: 0; past the limit exchanges get 429 with
// Retry-After — before any verification (garbage tokens are counted too) —
// and nothing is stored.
func TestRateLimitFromEnv(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), map[string]string{"OIDC_SIDECAR_RATE_LIMITS_PER_IP": "3"})
	s.mustExchange(t, ghID, w.ghToken(t, nil))
	expectError(t, s.exchangeBuddy(t, ghID, "garbage"), http.StatusUnauthorized, "OIDC token rejected")
	expectError(t, s.exchangeBuddy(t, unknownID, "garbage"), http.StatusUnauthorized, "no OIDC provider")
	before := w.keys(t)
	jwt := w.ghToken(t, nil)
	r := s.exchangeBuddy(t, ghID, jwt)
	expectError(t, r, http.StatusTooManyRequests, "too many token exchanges from 127.0.0.1: at most 3 per 1m; retry in ")
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want 1..60 seconds", r.Header.Get("Retry-After"))
	}
	r = s.exchange8693(t, ghID, jwt, "")
	if code, _ := oauthError(t, r); r.Status != http.StatusTooManyRequests || code != "temporarily_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Errorf("RFC 8693 when rate limited: %s", r)
	}
	w.expectNoNewKeys(t, before)
	// Proxied calls are not exchanges: not limited.
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/projects", ""), http.StatusUnauthorized)
}

// TestServeRefusesBadConfig: serve validates everything at start and lists
// every problem; it refuses to start without the upstream credential.
func TestServeRefusesBadConfig(t *testing.T) {
	w := newWorld(t, worldOpts{noRedis: true})
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, `listen: 127.0.0.1:1
admin_listen: 127.0.0.1:1
upstream: {url: "ftp://example.com"}
providers: `+w.providers+`
oidc: {leeway: 10m, refresh_cooldown: 10ms}
rate_limits: {per_ip: -1}
unknown_routes: allow
`)
	out, errOut, code := runCLI(t, map[string]string{"BUDDY_TOKEN": upstreamToken}, "serve", "--config", bad)
	if code == 0 {
		t.Fatalf("serve accepted a bad config: %s%s", out, errOut)
	}
	for _, want := range []string{"listen and admin_listen are both", "upstream.url", "oidc.leeway", "oidc.refresh_cooldown", "rate_limits", "unknown_routes"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error does not mention %s:\n%s", want, errOut)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "listen: "+freeAddr(t)+"\nadmin_listen: "+freeAddr(t)+"\nupstream: {url: "+w.apiSrv.URL+"}\nproviders: "+w.providers+"\n")
	_, errOut, code = runCLI(t, nil, "serve", "--config", good) // no BUDDY_TOKEN
	if code == 0 || !strings.Contains(errOut, "BUDDY_TOKEN is empty") {
		t.Errorf("serve without the upstream credential: status %d, stderr %s", code, errOut)
	}
}

// TestGracefulShutdownDrains: SIGTERM during a slow proxied request stops
// accepting connections, lets the request finish with its 200, and exits 0.
// Without an admin token, introspection is disabled (404).
func TestGracefulShutdownDrains(t *testing.T) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg["unknown_routes"] = "authenticated" // lets the fake's /_fake/slow through
	s := startSidecar(t, cfg, map[string]string{"OIDC_SIDECAR_ADMIN_TOKEN": ""})

	tok := s.mustExchange(t, ghID, w.ghToken(t, nil))
	r := s.introspect(t, tok, adminToken)
	if code, _ := oauthError(t, r); r.Status != http.StatusNotFound || code != "not_found" {
		t.Errorf("introspection without an admin token configured: %s, want 404", r)
	}

	done := make(chan *response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/_fake/slow?ms=2000", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			done <- &response{Body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		done <- &response{Status: resp.StatusCode, Body: b[:n]}
	}()
	await(t, awaitTimeout, "the slow request to reach the upstream", func() bool {
		for _, rq := range w.api.Requests() {
			if rq.Path == "/_fake/slow" {
				return true
			}
		}
		return false
	})
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await(t, awaitTimeout, "the listener to close after SIGTERM", func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case r := <-done:
		if r.Status != http.StatusOK {
			t.Errorf("the in-flight request got %s, want the upstream's 200", r)
		}
	case <-time.After(awaitTimeout):
		t.Fatal("the in-flight request did not finish")
	}
	select {
	case <-s.exited:
		if s.exitCode != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", s.exitCode)
		}
	case <-time.After(stopTimeout):
		s.kill()
		t.Fatal("the sidecar did not exit after SIGTERM")
	}
}
