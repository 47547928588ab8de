package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

var wrongAuth = `{"errors":[{"message":"Wrong authentication data"}]}` + "\n"

func TestAuthentication(t *testing.T) {
	stores(t, func(t *testing.T, store token.Store) {
		t.Run("no token", func(t *testing.T) {
			f := newRig(t, store)
			r := f.do("GET", "/user", "", nil, nil)
			if r.status != 401 || r.body != wrongAuth {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="oidc-sidecar"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if n := f.store.gets.Load(); n != 0 {
				t.Errorf("store Get called %d times", n)
			}
			f.wantUpstreamUntouched()
		})
		t.Run("garbage token makes no store call", func(t *testing.T) {
			f := newRig(t, store)
			for _, tok := range []string{"garbage", "ocs_" + strings.Repeat("A", 49), strings.Repeat("x", 5000)} {
				r := f.do("GET", "/user", tok, nil, nil)
				if r.status != 401 || r.body != wrongAuth {
					t.Fatalf("%q: got %d %q", tok, r.status, r.body)
				}
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="oidc-sidecar", error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			}
			if n := f.store.gets.Load(); n != 0 {
				t.Errorf("store Get called %d times for garbage", n)
			}
			f.wantUpstreamUntouched()
		})
		t.Run("unknown token", func(t *testing.T) {
			f := newRig(t, store)
			tok, _, _ := token.New()
			r := f.do("GET", "/user", tok, nil, nil)
			if r.status != 401 || r.body != wrongAuth || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("got %d %q %v", r.status, r.body, r.header)
			}
			if n := f.store.gets.Load(); n != 1 {
				t.Errorf("store Get called %d times, want exactly 1", n)
			}
			f.wantUpstreamUntouched()
		})
		t.Run("expired record", func(t *testing.T) {
			f := newRig(t, store)
			rec := record("USER_INFO")
			rec.IssuedAt, rec.ExpiresAt = time.Now().Unix()-7200, time.Now().Unix()-1
			tok := f.mint(rec) // still in the store (ttl 1h): the record's exp decides
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 401 || r.body != wrongAuth {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			f.wantUpstreamUntouched()
		})
		t.Run("expired by the proxy's clock", func(t *testing.T) {
			later := func() time.Time { return time.Now().Add(2 * time.Hour) }
			f := newRig(t, store, func(o *Options) { o.Now = later })
			tok := f.mint(record("USER_INFO"))
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 401 {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			f.wantUpstreamUntouched()
		})
		t.Run("revoked token, no cache", func(t *testing.T) {
			f := newRig(t, store, func(o *Options) { o.TokenCacheTTL = -1 })
			tok := f.mint(record("USER_INFO"))
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 {
				t.Fatalf("before revocation: %d %q", r.status, r.body)
			}
			if ok, err := f.store.Revoke(context.Background(), token.Hash(tok)); err != nil || !ok {
				t.Fatalf("Revoke: %v %v", ok, err)
			}
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 401 || r.body != wrongAuth {
				t.Fatalf("after revocation: %d %q", r.status, r.body)
			}
			if n := len(f.up.requests()); n != 1 {
				t.Fatalf("upstream saw %d requests, want 1", n)
			}
			if n := f.store.gets.Load(); n != 2 {
				t.Fatalf("%d store lookups, want one per request", n)
			}
		})
		t.Run("revoked token, default cache: refused within 1s", func(t *testing.T) {
			f := newRig(t, store)
			tok := f.mint(record("USER_INFO"))
			for range 5 {
				if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 {
					t.Fatalf("before revocation: %d %q", r.status, r.body)
				}
			}
			if n := f.store.gets.Load(); n != 1 {
				t.Fatalf("%d store lookups for 5 requests within the cache TTL, want 1", n)
			}
			revoked := time.Now()
			if ok, err := f.store.Revoke(context.Background(), token.Hash(tok)); err != nil || !ok {
				t.Fatalf("Revoke: %v %v", ok, err)
			}
			for {
				r := f.do("GET", "/user", tok, nil, nil)
				if r.status == 401 {
					break
				}
				if time.Since(revoked) > DefaultTokenCacheTTL+100*time.Millisecond {
					t.Fatalf("revoked token still accepted %s after revocation", time.Since(revoked))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if d := time.Since(revoked); d > DefaultTokenCacheTTL+100*time.Millisecond {
				t.Fatalf("revocation took %s to take effect", d)
			}
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 401 {
				t.Fatalf("accepted again after refusal: %d", r.status)
			}
		})
		t.Run("revoked through ForgetOnRevoke: refused at once", func(t *testing.T) {
			f := newRig(t, store)
			tok := f.mint(record("USER_INFO"))
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 { // now cached
				t.Fatalf("before revocation: %d %q", r.status, r.body)
			}
			revoker := ForgetOnRevoke(f.store, f.proxy)
			if ok, err := revoker.Revoke(context.Background(), token.Hash(tok)); err != nil || !ok {
				t.Fatalf("Revoke: %v %v", ok, err)
			}
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 401 || r.body != wrongAuth {
				t.Fatalf("right after revocation: %d %q", r.status, r.body)
			}
			if n := len(f.up.requests()); n != 1 {
				t.Fatalf("upstream saw %d requests, want 1", n)
			}
		})
		t.Run("token of a removed provider", func(t *testing.T) {
			f := newRig(t, store)
			tok := f.mint(record("USER_INFO"))
			f.engine.Swap(snapshotWithoutProviders(t))
			r := f.do("GET", "/user", tok, nil, nil)
			if r.status != 401 || r.body != wrongAuth || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			f.wantUpstreamUntouched()
		})
	})
}

func snapshotWithoutProviders(t testing.TB) *policy.Snapshot {
	ctx := context.Background()
	b, err := policy.Build(ctx, policy.Sources{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthorization(t *testing.T) {
	stores(t, func(t *testing.T, store token.Store) {
		f := newRig(t, store)
		info := f.mint(record("WORKSPACE", "EXECUTION_INFO"))
		manage := f.mint(record("EXECUTION_MANAGE"))

		t.Run("scope one level too low", func(t *testing.T) {
			r := f.do("POST", runExecutions, info, nil, strings.NewReader(`{"to_revision":{"revision":"HEAD"}}`))
			want := `{"errors":[{"message":"Insufficient scopes. Your token has the following scopes: [WORKSPACE, EXECUTION_INFO]. This request requires the following scopes: EXECUTION_RUN"}]}` + "\n"
			if r.status != 403 || r.body != want {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			f.wantUpstreamUntouched()
		})
		t.Run("hierarchy: EXECUTION_MANAGE reaches an EXECUTION_INFO route", func(t *testing.T) {
			r := f.do("GET", runExecutions, manage, nil, nil)
			if r.status != 200 || r.body != `{"ok":true}` {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			// ... and the EXECUTION_RUN route.
			if r := f.do("POST", runExecutions, manage, nil, strings.NewReader("{}")); r.status != 200 {
				t.Fatalf("run: got %d %q", r.status, r.body)
			}
		})
		t.Run("another workspace", func(t *testing.T) {
			n := len(f.up.requests())
			r := f.do("GET", "/workspaces/globex/projects/web/pipelines/7/executions", manage, nil, nil)
			want := errBody(`Access to workspace "globex" is not allowed for this token. Allowed workspaces: [acme]`)
			if r.status != 403 || r.body != want {
				t.Fatalf("got %d %q, want %q", r.status, r.body, want)
			}
			if len(f.up.requests()) != n {
				t.Fatal("upstream reached")
			}
		})
		t.Run("IP restriction applies on every use", func(t *testing.T) {
			rec := record("EXECUTION_MANAGE")
			rec.IPRestrictions = []string{"10.0.0.0/8"}
			tok := f.mint(rec)
			n := len(f.up.requests())
			r := f.do("GET", runExecutions, tok, nil, nil)
			if r.status != 403 || r.body != errBody("Access from IP address 127.0.0.1 is not allowed for this token") {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			rec.IPRestrictions = []string{"127.0.0.0/8"}
			if r := f.do("GET", runExecutions, f.mint(rec), nil, nil); r.status != 200 {
				t.Fatalf("allowed network: got %d %q", r.status, r.body)
			}
			if len(f.up.requests()) != n+1 {
				t.Fatal("upstream request count")
			}
		})
		t.Run("unknown route", func(t *testing.T) {
			n := len(f.up.requests())
			r := f.do("GET", "/secret/admin", manage, nil, nil)
			if r.status != 403 || r.body != errBody("GET /secret/admin is not in the sidecar's route table") {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			if len(f.up.requests()) != n {
				t.Fatal("upstream reached")
			}
		})
		t.Run("405 with Allow after authentication", func(t *testing.T) {
			n := len(f.up.requests())
			r := f.do("DELETE", "/workspaces/acme/projects", manage, nil, nil)
			if r.status != 405 || r.header.Get("Allow") != "GET, HEAD, POST" ||
				r.body != errBody("Method DELETE is not allowed for this path. Allowed methods: GET, HEAD, POST") {
				t.Fatalf("got %d %q Allow=%q", r.status, r.body, r.header.Get("Allow"))
			}
			r = f.do("DELETE", "/workspaces/acme/projects", "", nil, nil)
			if r.status != 401 || r.body != wrongAuth || r.header.Get("Allow") != "" {
				t.Fatalf("unauthenticated: got %d %q", r.status, r.body)
			}
			if len(f.up.requests()) != n {
				t.Fatal("upstream reached")
			}
		})
		t.Run("HEAD is authorized as GET", func(t *testing.T) {
			if r := f.do("HEAD", runExecutions, manage, nil, nil); r.status != 200 {
				t.Fatalf("got %d", r.status)
			}
			if r := f.do("HEAD", runExecutions, f.mint(record("USER_INFO")), nil, nil); r.status != 403 {
				t.Fatalf("HEAD with too few scopes: got %d", r.status)
			}
		})
		t.Run("letter-case variant of a route", func(t *testing.T) {
			n := len(f.up.requests())
			r := f.do("GET", "/Workspaces/acme/projects", manage, nil, nil)
			if r.status != 400 || !strings.Contains(r.body, "letter case") {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			if r := f.do("GET", "/Workspaces/acme/projects", "", nil, nil); r.status != 401 {
				t.Fatalf("unauthenticated: got %d", r.status)
			}
			if len(f.up.requests()) != n {
				t.Fatal("upstream reached")
			}
		})
	})
}

func TestUnknownRoutesAuthenticated(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now), func(o *Options) {
		o.Engine = engineWith(snapshot(t, policy.Sources{Settings: policy.Settings{UnknownRoutes: "authenticated"}}))
	})
	tok := f.mint(record("USER_INFO"))
	if r := f.do("GET", "/some/unlisted/path?x=1", tok, nil, nil); r.status != 200 {
		t.Fatalf("unknown route: got %d %q", r.status, r.body)
	}
	// A method the table does not list for a known path is an unknown route too.
	if r := f.do("PUT", "/workspaces/acme/projects/web/pipelines/7", tok, nil, strings.NewReader("{}")); r.status != 200 {
		t.Fatalf("unlisted method: got %d %q", r.status, r.body)
	}
	// The token's workspace restriction still applies to unlisted paths.
	r := f.do("PUT", "/workspaces/globex/projects/web/pipelines/7", tok, nil, strings.NewReader("{}"))
	if r.status != 403 || !strings.Contains(r.body, `workspace \"globex\"`) {
		t.Fatalf("other workspace: got %d %q", r.status, r.body)
	}
	// Known routes still need their scopes.
	if r := f.do("GET", runExecutions, tok, nil, nil); r.status != 403 || !strings.Contains(r.body, "Insufficient scopes") {
		t.Fatalf("known route: got %d %q", r.status, r.body)
	}
	// A letter-case variant of a known route is not an unknown route.
	if r := f.do("GET", "/workspaces/acme/projects/web/PIPELINES/7/executions", tok, nil, nil); r.status != 400 {
		t.Fatalf("case variant: got %d %q", r.status, r.body)
	}
	if r := f.do("GET", "/some/unlisted/path", "", nil, nil); r.status != 401 {
		t.Fatalf("no token: got %d", r.status)
	}
	want := []string{"/some/unlisted/path?x=1", "/workspaces/acme/projects/web/pipelines/7"}
	var got []string
	for _, r := range f.up.requests() {
		got = append(got, r.RequestURI)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("upstream saw %q, want %q", got, want)
	}
}

func TestForwarding(t *testing.T) {
	stores(t, func(t *testing.T, store token.Store) {
		f := newRig(t, store)
		tok := f.mint(record("EXECUTION_MANAGE", "USER_INFO"))

		t.Run("credential replaced, token never forwarded or logged", func(t *testing.T) {
			r := f.do("POST", runExecutions+"?page=2&access_token="+tok+"&per_page=5", tok,
				http.Header{"Cookie": {"a=b"}, "User-Agent": {"ci/1.0"}}, strings.NewReader(`{"x":1}`))
			if r.status != 200 {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			got := f.up.requests()
			last := got[len(got)-1]
			if last.RequestURI != runExecutions+"?page=2&per_page=5" {
				t.Errorf("upstream URI = %q", last.RequestURI)
			}
			if a := last.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer "+upstreamSecret {
				t.Errorf("upstream Authorization = %q", a)
			}
			if last.Header.Get("Cookie") != "a=b" || last.Header.Get("User-Agent") != "ci/1.0" {
				t.Errorf("end-to-end headers lost: %v", last.Header)
			}
			if last.Host != f.up.url().Host {
				t.Errorf("upstream Host = %q, want %q", last.Host, f.up.url().Host)
			}
			f.assertTokenNowhere(tok)
		})
		t.Run("access_token query parameter", func(t *testing.T) {
			r := f.do("GET", "/user?access_token="+tok, "", nil, nil)
			if r.status != 200 {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			got := f.up.requests()
			if u := got[len(got)-1].RequestURI; u != "/user" {
				t.Errorf("upstream URI = %q, want /user", u)
			}
			// Escaped parameter name: still recognised and stripped.
			if r := f.do("GET", "/user?a=1&access%5Ftoken="+tok, "", nil, nil); r.status != 200 {
				t.Fatalf("escaped name: got %d %q", r.status, r.body)
			}
			got = f.up.requests()
			if u := got[len(got)-1].RequestURI; u != "/user?a=1" {
				t.Errorf("upstream URI = %q, want /user?a=1", u)
			}
			other := f.mint(record("USER_INFO"))
			n := len(f.up.requests())
			r = f.do("GET", "/user?access_token="+other, tok, nil, nil)
			if r.status != 400 || !strings.Contains(r.body, "two different access tokens") {
				t.Fatalf("conflicting tokens: got %d %q", r.status, r.body)
			}
			if len(f.up.requests()) != n {
				t.Fatal("upstream reached")
			}
			f.assertTokenNowhere(tok)
			f.assertTokenNowhere(other)
		})
		t.Run("hop-by-hop and forged identity headers dropped", func(t *testing.T) {
			r := f.raw("GET", "/user", map[string]string{
				"Authorization":           "Bearer " + tok,
				"Connection":              "keep-alive, X-Hop-Secret",
				"X-Hop-Secret":            "s",
				"Keep-Alive":              "timeout=5",
				"Proxy-Authorization":     "Basic eDp5",
				"Proxy-Connection":        "keep-alive",
				"Te":                      "gzip",
				"Upgrade":                 "websocket",
				"X-Oidc-Sidecar-Subject":  "forged",
				"X-OIDC-Sidecar-Provider": "forged",
				"x-oidc-sidecar-whatever": "forged",
				"Forwarded":               "for=198.51.100.1",
				"X-Forwarded-For":         "198.51.100.1",
				"X-Forwarded-Host":        "evil.example",
				"X-Forwarded-Proto":       "https",
			})
			if r.status != 200 {
				t.Fatalf("got %d %q", r.status, r.body)
			}
			got := f.up.requests()
			h := got[len(got)-1].Header
			for _, k := range []string{"X-Hop-Secret", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Upgrade", "Forwarded",
				"X-Oidc-Sidecar-Subject", "X-Oidc-Sidecar-Provider", "X-Oidc-Sidecar-Whatever"} {
				if v, ok := h[k]; ok {
					t.Errorf("upstream received %s: %q", k, v)
				}
			}
			if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" ||
				h.Get("X-Forwarded-Host") != "sidecar.test" {
				t.Errorf("forwarded headers: %q %q %q", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"))
			}
		})
		t.Run("request id", func(t *testing.T) {
			uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
			r := f.do("GET", "/user", tok, nil, nil)
			id := r.header.Get("X-Request-Id")
			got := f.up.requests()
			if !uuidRE.MatchString(id) || got[len(got)-1].Header.Get("X-Request-Id") != id {
				t.Fatalf("response id %q, upstream id %q", id, got[len(got)-1].Header.Get("X-Request-Id"))
			}
			if vs := r.header.Values("X-Request-Id"); len(vs) != 1 {
				t.Errorf("response X-Request-Id values %q (the upstream's own must not leak through)", vs)
			}
			// The client's own id is recorded in the audit line, never used
			// as the sidecar's (issue 11, item 7).
			r = f.do("GET", "/user", tok, http.Header{"X-Request-Id": {"build-42.step:7"}}, nil)
			got = f.up.requests()
			if id := r.header.Get("X-Request-Id"); !uuidRE.MatchString(id) || got[len(got)-1].Header.Get("X-Request-Id") != id {
				t.Errorf("the client's X-Request-Id replaced the sidecar's: response %q, upstream %q", id, got[len(got)-1].Header.Get("X-Request-Id"))
			}
			r = f.do("GET", "/user", tok, http.Header{"X-Request-Id": {"bad id <script>"}}, nil)
			if !uuidRE.MatchString(r.header.Get("X-Request-Id")) {
				t.Errorf("malformed incoming id kept: %q", r.header.Get("X-Request-Id"))
			}
			// Denials carry it too.
			if r := f.do("GET", "/user", "", nil, nil); !uuidRE.MatchString(r.header.Get("X-Request-Id")) {
				t.Errorf("denial without request id")
			}
		})
		t.Run("identity headers off", func(t *testing.T) {
			f.do("GET", "/user", tok, nil, nil)
			got := f.up.requests()
			for k := range got[len(got)-1].Header {
				if strings.HasPrefix(k, IdentityHeaderPrefix) {
					t.Errorf("identity header %s sent with IdentityHeaders off", k)
				}
			}
		})
	})
	t.Run("identity headers on", func(t *testing.T) {
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.IdentityHeaders = true })
		tok := f.mint(record("EXECUTION_MANAGE", "USER_INFO"))
		f.do("GET", "/user", tok, http.Header{"X-Oidc-Sidecar-Subject": {"forged"}, "x-oidc-sidecar-scopes": {"ADMIN"}}, nil)
		h := f.up.requests()[0].Header
		want := map[string]string{
			HeaderProvider:   testProviderID,
			HeaderSubject:    "repo:octo-org/octo-repo:ref:refs/heads/main",
			HeaderRepository: "octo-org/octo-repo",
			HeaderScopes:     "EXECUTION_MANAGE,USER_INFO",
		}
		for k, v := range want {
			if got := h.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	})
	t.Run("upstream base path", func(t *testing.T) {
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) {
			u := *o.Upstream
			u.Path = "/api/"
			o.Upstream = &u
		})
		tok := f.mint(record("USER_INFO"))
		f.do("GET", "/user?x=%2F", tok, nil, nil)
		if got := f.up.requests()[0].RequestURI; got != "/api/user?x=%2F" {
			t.Fatalf("upstream URI = %q", got)
		}
	})
	t.Run("no upstream token: Authorization removed", func(t *testing.T) {
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.UpstreamToken = "" })
		tok := f.mint(record("USER_INFO"))
		f.do("GET", "/user", tok, nil, nil)
		if a, ok := f.up.requests()[0].Header["Authorization"]; ok {
			t.Fatalf("Authorization forwarded: %q", a)
		}
	})
	t.Run("X-Forwarded-For through a trusted proxy", func(t *testing.T) {
		clients, err := clientip.New([]string{"127.0.0.1/32"})
		if err != nil {
			t.Fatal(err)
		}
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.Clients = clients })
		rec := record("USER_INFO")
		rec.IPRestrictions = []string{"203.0.113.0/24"}
		tok := f.mint(rec)
		r := f.do("GET", "/user", tok, http.Header{"X-Forwarded-For": {"198.51.100.9, 203.0.113.7"}, "X-Forwarded-Proto": {"https"}}, nil)
		if r.status != 200 {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		h := f.up.requests()[0].Header
		if h.Get("X-Forwarded-For") != "198.51.100.9, 203.0.113.7, 127.0.0.1" || h.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("X-Forwarded-For %q, -Proto %q", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Proto"))
		}
	})
}

// assertTokenNowhere checks the token is in no upstream request (URI or
// header) and in no log line; the upstream credential in no log line.
func (f *rig) assertTokenNowhere(tok string) {
	f.t.Helper()
	for _, r := range f.up.requests() {
		if strings.Contains(r.RequestURI, tok) {
			f.t.Errorf("token forwarded in the URI %q", r.RequestURI)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, tok) {
					f.t.Errorf("token forwarded in header %s", k)
				}
			}
		}
	}
	f.waitAudit()
	for name, log := range map[string]string{"audit": f.audit.String(), "log": f.logs.String()} {
		if strings.Contains(log, tok) || strings.Contains(log, token.Hash(tok)) {
			f.t.Errorf("token (or its hash) in the %s log", name)
		}
		if strings.Contains(log, upstreamSecret) {
			f.t.Errorf("upstream credential in the %s log", name)
		}
	}
}

// waitAudit gives the handler goroutines a moment to write their audit
// lines (written after the response).
func (f *rig) waitAudit() {
	time.Sleep(20 * time.Millisecond)
}

func TestAudit(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("EXECUTION_INFO"))
	f.do("GET", runExecutions, tok, http.Header{"X-Request-Id": {"req-1"}}, nil)
	f.do("POST", runExecutions, tok, http.Header{"X-Request-Id": {"req-2"}}, nil)
	f.do("GET", "/workspaces/acme/../x", "", http.Header{"X-Request-Id": {"req-3"}}, nil)
	f.waitAudit()
	lines := f.auditLines()
	if len(lines) != 3 {
		t.Fatalf("%d audit lines, want 3:\n%s", len(lines), f.audit.String())
	}
	// Lines are found by the client's X-Request-Id, recorded beside the
	// sidecar's own request_id (a UUID, never the client's).
	byID := map[string]map[string]any{}
	for _, l := range lines {
		byID[l["client_request_id"].(string)] = l
		if id, _ := l["request_id"].(string); len(id) != 36 || strings.HasPrefix(id, "req-") {
			t.Errorf("request_id %q is not the sidecar's own UUID", id)
		}
	}
	tpl := "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions"
	checks := []struct {
		id   string
		want map[string]any
	}{
		{"req-1", map[string]any{"event": "proxy", "method": "GET", "route": tpl, "status": 200.0, "code": "allowed",
			"provider_id": testProviderID, "sub": "repo:octo-org/octo-repo:ref:refs/heads/main", "workspace": "acme", "client_ip": "127.0.0.1"}},
		{"req-2", map[string]any{"method": "POST", "route": tpl, "status": 403.0, "code": "insufficient_scopes", "workspace": "acme"}},
		{"req-3", map[string]any{"status": 400.0, "code": "invalid_path", "provider_id": "", "route": ""}},
	}
	for _, c := range checks {
		l := byID[c.id]
		if l == nil {
			t.Fatalf("no audit line for %s", c.id)
		}
		for k, v := range c.want {
			if l[k] != v {
				t.Errorf("%s: %s = %v, want %v", c.id, k, l[k], v)
			}
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("%s: duration_ms missing", c.id)
		}
		// OPA decision-log names: decision_id, timestamp, bundles.<name>.revision, result.
		if ts, _ := l["timestamp"].(string); l["decision_id"] != l["request_id"] || !strings.HasSuffix(ts, "Z") {
			t.Errorf("%s: decision_id %v, timestamp %v", c.id, l["decision_id"], l["timestamp"])
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("%s: timestamp: %v", c.id, err)
		}
		if rev, _ := l["bundles"].(map[string]any)["sidecar"].(map[string]any)["revision"].(string); rev == "" {
			t.Errorf("%s: bundles.sidecar.revision missing: %v", c.id, l["bundles"])
		}
	}
	if r := byID["req-1"]["result"]; fmt.Sprint(r) != "map[allow:true]" {
		t.Errorf("req-1: result %v", r)
	}
	if r := byID["req-2"]["result"]; fmt.Sprint(r) != "map[allow:false]" {
		t.Errorf("req-2: result %v", r)
	}
	if r, ok := byID["req-3"]["result"]; ok { // refused before any decision
		t.Errorf("req-3: result %v", r)
	}
	f.assertTokenNowhere(tok)
}

func TestStreaming(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("EXECUTION_MANAGE"))
	const size = 8 << 20

	t.Run("large request body through a pipe", func(t *testing.T) {
		gotMiB := make(chan struct{})
		f.up.handle(runExecutions, func(w http.ResponseWriter, r *http.Request) {
			hs := sha256.New()
			n, _ := io.CopyN(hs, r.Body, 1<<20)
			close(gotMiB) // the first MiB arrived while the client still holds the rest
			m, _ := io.Copy(hs, r.Body)
			f.up.record(r, n+m, hex.EncodeToString(hs.Sum(nil)))
			w.WriteHeader(201)
		})
		pr, pw := io.Pipe()
		want := sha256.New()
		go func() {
			rng := rand.New(rand.NewPCG(1, 2))
			buf := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(buf) {
				if sent == 2<<20 {
					select {
					case <-gotMiB:
					case <-time.After(10 * time.Second):
						pw.CloseWithError(errors.New("upstream did not receive the first MiB before the body was complete: the proxy buffers request bodies"))
						return
					}
				}
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
				want.Write(buf)
				if _, err := pw.Write(buf); err != nil {
					return
				}
			}
			pw.Close()
		}()
		r := f.do("POST", runExecutions, tok, nil, pr)
		if r.status != 201 {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		got := f.up.requests()
		last := got[len(got)-1]
		if last.BodyLen != size || last.BodySHA != hex.EncodeToString(want.Sum(nil)) {
			t.Fatalf("upstream got %d bytes, sha %s", last.BodyLen, last.BodySHA)
		}
	})

	t.Run("response flushed before the upstream finishes, large body", func(t *testing.T) {
		release := make(chan struct{})
		rng := rand.New(rand.NewPCG(3, 4))
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		const execution = runExecutions + "/9"
		f.up.handle(execution, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = io.WriteString(w, "first-chunk\n")
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = w.Write(payload)
		})
		req, _ := http.NewRequest("GET", f.srv.URL+execution, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := f.client.Do(req)
		if err != nil {
			close(release)
			t.Fatal(err)
		}
		defer res.Body.Close()
		expectFirst(t, res.Body, "first-chunk\n", release, "the proxy buffers responses")
		close(release)
		rest, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(rest) != sha256.Sum256(payload) {
			t.Fatalf("response body differs (%d bytes, want %d)", len(rest), len(payload))
		}
	})
}

// expectTimeout: GET /user through f answers 504 "upstream timed out" well
// within a second or two (the rigs here use a 150 ms upstream timeout).
func (f *rig) expectTimeout(t *testing.T, tok string) {
	t.Helper()
	start := time.Now()
	r := f.do("GET", "/user", tok, nil, nil)
	if r.status != 504 || r.body != `{"errors":[{"message":"upstream timed out"}]}`+"\n" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("timeout is 504", func(t *testing.T) {
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.Timeout = 150 * time.Millisecond })
		tok := f.mint(record("USER_INFO"))
		f.up.handle("/user", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		f.expectTimeout(t, tok)
		// Slow bodies are fine: the timeout is for the headers only.
		f.up.handle("/user", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(w, "late body")
		})
		if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 || r.body != "late body" {
			t.Fatalf("slow body: got %d %q", r.status, r.body)
		}
	})
	t.Run("TLS handshake past the timeout is 504", func(t *testing.T) {
		// An upstream that accepts connections and never answers the TLS
		// handshake: connecting counts against upstream.timeout.
		addr := testkit.BlackHole(t)
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) {
			o.Upstream = &url.URL{Scheme: "https", Host: addr}
			o.Timeout = 150 * time.Millisecond
		})
		tok := f.mint(record("USER_INFO"))
		f.expectTimeout(t, tok)
	})
	t.Run("a caller's transport brings its own timeout", func(t *testing.T) {
		up, _ := url.Parse("http://127.0.0.1:1")
		_, err := New(Options{Engine: engineWith(defaultSnapshot(t)), Store: token.NewMemory(time.Now), Upstream: up,
			Transport: NewTransport(), Timeout: time.Second})
		if err == nil || !strings.Contains(err.Error(), "ResponseHeaderTimeout") {
			t.Fatalf("err = %v, want a pointer to the transport's own timeout", err)
		}
	})
	t.Run("upstream down is 502", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.Upstream = &url.URL{Scheme: "http", Host: addr} })
		tok := f.mint(record("USER_INFO"))
		r := f.do("GET", "/user", tok, nil, nil)
		if r.status != 502 || r.body != `{"errors":[{"message":"upstream unreachable"}]}`+"\n" {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		f.assertTokenNowhere(tok)
		if strings.Contains(r.body, addr) {
			t.Fatal("internal address leaked")
		}
	})
}

func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	st, err := token.NewRedis(token.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newRig(t, st)
	tok, other := f.mint(record("USER_INFO")), f.mint(record("USER_INFO"))
	if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 {
		t.Fatalf("before: %d %q", r.status, r.body)
	}
	srv.Stop()
	start := time.Now()
	r := f.do("GET", "/user", other, nil, nil) // not in the proxy's token cache
	if r.status != 503 || r.body != errBody("The token store is temporarily unavailable") {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("503 took %s, want < 1s", d)
	}
	if len(f.up.requests()) != 1 {
		t.Fatal("forwarded while the store was down")
	}
	// Garbage still gets 401 without touching the store.
	if r := f.do("GET", "/user", "garbage", nil, nil); r.status != 401 {
		t.Fatalf("garbage while down: %d", r.status)
	}
	// A token looked up just before the outage works until its cache
	// entry lapses (at most DefaultTokenCacheTTL), then gets 503 too.
	time.Sleep(DefaultTokenCacheTTL)
	if r := f.do("GET", "/user", tok, nil, nil); r.status != 503 {
		t.Fatalf("cached token after the TTL: %d %q", r.status, r.body)
	}
}

func TestRedisHung(t *testing.T) {
	srv := redistest.Start(t)
	st, err := token.NewRedis(token.RedisOptions{URL: srv.URL()}) // default 250ms timeout
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newRig(t, st)
	tok := f.mint(record("USER_INFO"))
	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	r := f.do("GET", "/user", tok, nil, nil)
	if r.status != 503 || r.body != errBody("The token store is temporarily unavailable") {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("503 took %s with a hung Redis", d)
	}
	f.wantUpstreamUntouched()
}

func TestPolicyNotLoaded(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.Engine = &policy.Engine{} })
	tok := f.mint(record("USER_INFO"))
	r := f.do("GET", "/user", tok, nil, nil)
	if r.status != 503 || r.body != errBody("The sidecar has no authorization policy loaded") {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	f.wantUpstreamUntouched()
}

func TestPolicyEvaluationError(t *testing.T) {
	pols, err := policy.EmbeddedPolicies(false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pols {
		if pols[i].Path == "proxy.rego" {
			// An error only for /user: a revision whose decision fails for
			// the probe input does not load at all.
			pols[i].Src = []byte("package sidecar.proxy\n\ndecision := {\"allow\": true, \"status\": to_number(input.method), \"code\": \"x\", \"message\": \"\"} if input.path == \"/user\"\n" +
				"decision := {\"allow\": false, \"status\": 401, \"code\": \"x\", \"message\": \"x\"} if input.path != \"/user\"\n")
		}
	}
	f := newRig(t, token.NewMemory(time.Now), func(o *Options) {
		o.Engine = engineWith(snapshot(t, policy.Sources{Policies: pols}))
	})
	tok := f.mint(record("USER_INFO"))
	r := f.do("GET", "/user", tok, nil, nil)
	if r.status != 503 || r.body != errBody("Authorization is temporarily unavailable") {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	f.wantUpstreamUntouched()
}

func TestEngineSwap(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("WORKSPACE"))
	if r := f.do("GET", "/custom/acme/things", tok, nil, nil); r.status != 403 || !strings.Contains(r.body, "not in the sidecar's route table") {
		t.Fatalf("before swap: %d %q", r.status, r.body)
	}
	rts := append(routes.Default(), routes.Route{Method: "GET", Path: "/custom/{workspace}/things", Scopes: []string{"WORKSPACE"}})
	f.engine.Swap(snapshot(t, policy.Sources{Routes: rts}))
	if r := f.do("GET", "/custom/acme/things", tok, nil, nil); r.status != 200 {
		t.Fatalf("after swap: %d %q", r.status, r.body)
	}
	if r := f.do("GET", "/custom/globex/things", tok, nil, nil); r.status != 403 || !strings.Contains(r.body, "globex") {
		t.Fatalf("after swap, other workspace: %d %q", r.status, r.body)
	}
	// And back: the old table again.
	f.engine.Swap(snapshot(t, policy.Sources{}))
	if r := f.do("GET", "/custom/acme/things", tok, nil, nil); r.status != 403 {
		t.Fatalf("after swapping back: %d %q", r.status, r.body)
	}
}

func TestPathTricks(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("WORKSPACE", "EXECUTION_MANAGE"))
	auth := map[string]string{"Authorization": "Bearer " + tok}
	cases := []struct {
		target  string
		status  int
		forward string // what the upstream must receive; "" = nothing
		body    string // substring of the body
	}{
		{"/workspaces/acme/projects", 200, "/workspaces/acme/projects", ""},
		{"/workspaces/acme/projects/", 200, "/workspaces/acme/projects", ""},
		{"/workspaces/acme/projects?q=../../x&r=%2F", 200, "/workspaces/acme/projects?q=../../x&r=%2F", ""},
		{"/workspaces/globex/../acme/projects", 400, "", "dot segment"},
		{"/workspaces/acme/../globex/projects", 400, "", "dot segment"},
		{"/workspaces/acme/projects/..", 400, "", "dot segment"},
		{"/workspaces/./acme/projects", 400, "", "dot segment"},
		{"/./workspaces/acme/projects", 400, "", "dot segment"},
		{"/workspaces/acme%2F..%2Fglobex/projects", 400, "", "encoded slash"},
		{"/workspaces/acme%2f..%2fglobex/projects", 400, "", "encoded slash"},
		{"/workspaces/globex%2Fprojects", 400, "", "encoded slash"},
		{"//workspaces/acme/projects", 400, "", "empty segment"},
		{"/workspaces//acme/projects", 400, "", "empty segment"},
		{"/workspaces/acme/projects//", 400, "", "empty segment"},
		{"/workspaces/%2e%2e/projects", 400, "", "encoded dot"},
		{"/workspaces/acme/%2E%2E/%2E%2E/user", 400, "", "encoded dot"},
		{"/workspaces/acme%2e/projects", 400, "", "encoded dot"},
		{"/workspaces/acme\\..\\globex/projects", 400, "", ""},
		{"/workspaces/acme%5c..%5cglobex/projects", 400, "", "backslash"},
		{"/workspaces/acme%00/projects", 400, "", "control"},
		{"/workspaces/acme%252e%252e/projects", 400, "", "percent"},
		{"/workspaces/%61cme/projects", 400, "", "needs no encoding"},
		{"/w%6Frkspaces/acme/projects", 400, "", "needs no encoding"},
		{"/workspaces/acme/projects;jsessionid=1", 400, "", "';'"},
		{"/workspaces/acme;x/projects", 400, "", "';'"},
		{"/workspaces/acme%3Bx/projects", 400, "", "';'"},
		{"/workspaces/acme{x}/projects", 400, "", "percent-encoded"},
		{"/workspaces/acme/projects/" + strings.Repeat("a", MaxPathBytes), 414, "", "too long"},
		{"*", 400, "", "absolute"},
		// Trailing dots: authorized (and refused) as the workspace "acme.",
		// never as "acme".
		{"/workspaces/acme./projects", 403, "", `workspace \"acme.\"`},
		{"/workspaces/acme../projects", 403, "", `workspace \"acme..\"`},
		// Absolute-form targets: the path is what counts, the host is ours.
		{"http://evil.example/workspaces/globex/projects", 403, "", `workspace \"globex\"`},
		{"http://evil.example/workspaces/acme/projects", 200, "/workspaces/acme/projects", ""},
		// Encoded characters that are not path syntax pass unchanged.
		{"/workspaces/acme/projects/my%20project/members", 200, "/workspaces/acme/projects/my%20project/members", ""},
		{"/workspaces/acme%20/projects", 403, "", `workspace \"acme%20\"`},
	}
	for _, c := range cases {
		n := len(f.up.requests())
		r := f.raw("GET", c.target, auth)
		if r.status != c.status || !strings.Contains(r.body, c.body) {
			t.Errorf("%s: got %d %q, want %d containing %q", c.target, r.status, r.body, c.status, c.body)
			continue
		}
		got := f.up.requests()[n:]
		switch {
		case c.forward == "" && len(got) != 0:
			t.Errorf("%s: forwarded as %q", c.target, got[0].RequestURI)
		case c.forward != "" && (len(got) != 1 || got[0].RequestURI != c.forward):
			t.Errorf("%s: upstream got %+v, want %q", c.target, got, c.forward)
		}
	}
	// Unauthenticated path tricks are rejected before authentication.
	if r := f.raw("GET", "/workspaces/acme%2F..%2Fglobex/projects", nil); r.status != 400 {
		t.Errorf("unauthenticated %%2F: %d", r.status)
	}
}

func TestNewValidation(t *testing.T) {
	e := engineWith(nil)
	st := token.NewMemory(time.Now)
	up, _ := url.Parse("https://api.buddy.works")
	bad := []Options{
		{Store: st, Upstream: up},
		{Engine: e, Upstream: up},
		{Engine: e, Store: st},
		{Engine: e, Store: st, Upstream: &url.URL{Scheme: "ftp", Host: "x"}},
		{Engine: e, Store: st, Upstream: &url.URL{Scheme: "https"}},
		{Engine: e, Store: st, Upstream: &url.URL{Scheme: "https", Host: "x", User: url.UserPassword("a", "b")}},
		{Engine: e, Store: st, Upstream: &url.URL{Scheme: "https", Host: "x", RawQuery: "a=b"}},
		{Engine: e, Store: st, Upstream: up, UpstreamToken: "a\r\nX-Evil: 1"},
		{Engine: e, Store: st, Upstream: up, Timeout: -1},
		{Engine: e, Store: st, Upstream: up, TokenCacheTTL: 2 * time.Second},
	}
	for i, o := range bad {
		if _, err := New(o); err == nil {
			t.Errorf("case %d: New accepted %+v", i, o)
		}
	}
	if _, err := New(Options{Engine: e, Store: st, Upstream: up}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrent runs requests in parallel while the engine swaps
// snapshots, for the race detector: shared cached token values, the route
// table rebuilt per snapshot, the ReverseProxy hooks.
func TestConcurrent(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	toks := []string{f.mint(record("EXECUTION_MANAGE")), f.mint(record("USER_INFO"))}
	other := snapshot(t, policy.Sources{Routes: append(routes.Default(), routes.Route{Method: "GET", Path: "/extra", Scopes: nil})})
	snaps := []*policy.Snapshot{defaultSnapshot(t), other}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			f.engine.Swap(snaps[i%2])
			time.Sleep(5 * time.Millisecond)
		}
	}()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 40 {
				tok := toks[(g+i)%2]
				want := 200
				if tok == toks[1] {
					want = 403
				}
				req, _ := http.NewRequest("GET", f.srv.URL+runExecutions, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := f.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != want {
					errs <- fmt.Errorf("goroutine %d request %d: %d, want %d", g, i, res.StatusCode, want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	<-done
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRequestIDs: the sidecar's request ids are random (version 4) UUIDs in
// the canonical form, and do not repeat.
func TestRequestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := newRequestID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("%q: not a canonical version 4 UUID (%v)", id, err)
		}
		if seen[id] {
			t.Fatalf("%q repeated", id)
		}
		seen[id] = true
	}
}
