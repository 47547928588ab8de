package oidc_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

func TestIssuerDownBeforeFirstFetch(t *testing.T) {
	clk := testkit.NewClock(time.Now())
	iss := oidctest.Start(t)
	iss.SetDown(true)
	v := newVerifier(t, oidc.Options{Now: clk.Now})
	ctx := context.Background()
	raw := oidctest.MustSign(t, iss, ghClaims(iss, clk.Now()))

	_, err := v.Verify(ctx, raw, expect(iss))
	e := wantCode(t, err, oidc.CodeIssuerUnavailable)
	if !e.Temporary || !strings.Contains(e.Message, "HTTP 503") || !strings.Contains(e.Message, "discovery") {
		t.Errorf("temporary=%v message %q", e.Temporary, e.Message)
	}
	wantFetches(t, iss, 1, 0)

	// Right after a failure, no new attempt: fail fast.
	_, err = v.Verify(ctx, raw, expect(iss))
	e = wantCode(t, err, oidc.CodeIssuerUnavailable)
	if !e.Temporary || !strings.Contains(e.Message, "next attempt allowed in 5s") {
		t.Errorf("temporary=%v message %q", e.Temporary, e.Message)
	}
	wantFetches(t, iss, 1, 0)

	// Warm always tries and reports the failure.
	err = v.Warm(ctx, iss.URL())
	wantCode(t, err, oidc.CodeIssuerUnavailable)
	wantFetches(t, iss, 2, 0)

	// Back up, retry window passed: works.
	iss.SetDown(false)
	clk.Advance(6 * time.Second)
	mustVerify(t, v, raw, expect(iss))
	wantFetches(t, iss, 3, 1)
}

func TestWarm(t *testing.T) {
	iss := oidctest.Start(t)
	var mu sync.Mutex
	var events []string
	v := newVerifier(t, oidc.Options{OnFetch: func(issuer, kind string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if issuer != iss.URL() {
			t.Errorf("OnFetch issuer %q", issuer)
		}
		events = append(events, kind+":"+errString(err))
	}})
	ctx := context.Background()
	if err := v.Warm(ctx, iss.URL()); err != nil {
		t.Fatal(err)
	}
	if err := v.Warm(ctx, iss.URL()); err != nil { // cached: no fetch
		t.Fatal(err)
	}
	wantFetches(t, iss, 1, 1)
	mu.Lock()
	if strings.Join(events, ",") != "discovery:,jwks:" {
		t.Errorf("OnFetch events %q", events)
	}
	mu.Unlock()

	// A configured issuer that is not a valid issuer URL is a permanent error.
	for _, bad := range []string{"", "http://example.com", "ftp://127.0.0.1/x", "https://user:pw@example.com", "https://example.com/?q=1", "https://example.com/#f", "not a url"} {
		err := v.Warm(ctx, bad)
		e := wantCode(t, err, oidc.CodeIssuerUnavailable)
		if e.Temporary {
			t.Errorf("%q: temporary", bad)
		}
		_, err = v.Verify(ctx, oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), oidc.Expect{Issuer: bad})
		wantCode(t, err, oidc.CodeIssuerUnavailable)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestDiscoveryAdvertisingAnotherIssuer(t *testing.T) {
	for _, c := range []struct {
		name     string
		override func(url string) string
	}{
		{"github", func(string) string { return "https://token.actions.githubusercontent.com" }},
		{"trailing slash", func(u string) string { return u + "/" }},
		{"case", func(u string) string { return strings.ToUpper(u[:4]) + u[4:] }},
		{"look-alike", func(u string) string { return strings.Replace(u, "1", "\u0661", 1) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			iss := oidctest.Start(t)
			iss.SetIssuerOverride(c.override(iss.URL()))
			v := newVerifier(t, oidc.Options{})
			err := v.Warm(context.Background(), iss.URL())
			e := wantCode(t, err, oidc.CodeIssuerUnavailable)
			if !strings.Contains(e.Message, "advertises issuer") {
				t.Errorf("message %q", e.Message)
			}
			_, err = v.Verify(context.Background(), oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), expect(iss))
			wantCode(t, err, oidc.CodeIssuerUnavailable)
			wantFetches(t, iss, 1, 0) // the JWKS is never fetched
		})
	}
	// WithIssuerOverride does the same from the start.
	iss := oidctest.Start(t, oidctest.WithIssuerOverride("https://token.actions.githubusercontent.com"))
	wantCode(t, newVerifier(t, oidc.Options{}).Warm(context.Background(), iss.URL()), oidc.CodeIssuerUnavailable)
}

func TestJWKSURIMustBeHTTPSOrLoopback(t *testing.T) {
	for _, uri := range []string{
		"http://example.com/.well-known/jwks",
		"http://10.0.0.1/jwks",
		"file:///etc/passwd",
		"/relative/jwks",
		"https://user:pass@example.com/jwks",
	} {
		t.Run(uri, func(t *testing.T) {
			iss := oidctest.Start(t)
			iss.SetJWKSURI(uri)
			v := newVerifier(t, oidc.Options{})
			err := v.Warm(context.Background(), iss.URL())
			e := wantCode(t, err, oidc.CodeIssuerUnavailable)
			if !strings.Contains(e.Message, "jwks_uri") {
				t.Errorf("message %q", e.Message)
			}
			wantFetches(t, iss, 1, 0)
		})
	}
	// http on "localhost" is loopback and allowed.
	iss := oidctest.Start(t)
	iss.SetJWKSURI(strings.Replace(iss.URL(), "127.0.0.1", "localhost", 1) + oidctest.JWKSPath)
	v := newVerifier(t, oidc.Options{})
	if err := v.Warm(context.Background(), iss.URL()); err != nil {
		t.Fatal(err)
	}
}

func TestOversizeBodies(t *testing.T) {
	cases := []struct {
		name          string
		max           int64
		padD, padJ    int
		wantD, wantJ  int
		wantInMessage string
	}{
		{"discovery, chunked", 0, 300 << 10, 0, 1, 0, "discovery: GET"},
		{"jwks, chunked", 0, 0, 300 << 10, 1, 1, "jwks: GET"},
		{"discovery, content-length", 1024, 1500, 0, 1, 0, "1024-byte limit"},
		{"jwks, content-length", 1024, 0, 1500, 1, 1, "1024-byte limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			iss := oidctest.Start(t, oidctest.WithECDSA())
			iss.SetPadding(c.padD, c.padJ)
			v := newVerifier(t, oidc.Options{MaxResponseBytes: c.max})
			err := v.Warm(context.Background(), iss.URL())
			e := wantCode(t, err, oidc.CodeIssuerUnavailable)
			if !strings.Contains(e.Message, c.wantInMessage) || !strings.Contains(e.Message, "limit") {
				t.Errorf("message %q", e.Message)
			}
			wantFetches(t, iss, c.wantD, c.wantJ)
			// Just under the limit works.
			iss.SetPadding(0, 0)
			if err := newVerifierWarm(t, oidc.Options{MaxResponseBytes: c.max}, iss); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func newVerifierWarm(t *testing.T, o oidc.Options, iss *oidctest.Issuer) error {
	return newVerifier(t, o).Warm(context.Background(), iss.URL())
}

func TestSlowIssuerTimesOut(t *testing.T) {
	iss := oidctest.Start(t)
	iss.SetLatency(time.Hour)
	const timeout = 300 * time.Millisecond
	v := newVerifier(t, oidc.Options{FetchTimeout: timeout})
	start := time.Now()
	_, err := v.Verify(context.Background(), oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), expect(iss))
	elapsed := time.Since(start)
	e := wantCode(t, err, oidc.CodeIssuerUnavailable)
	if !e.Temporary || !strings.Contains(e.Message, "timed out after 300ms") {
		t.Errorf("message %q", e.Message)
	}
	if elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Errorf("Verify returned after %v, want about %v", elapsed, timeout)
	}
}

func TestCallerContextBoundsTheWait(t *testing.T) {
	iss := oidctest.Start(t)
	iss.SetLatency(time.Hour)
	v := newVerifier(t, oidc.Options{FetchTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), expect(iss))
	e := wantCode(t, err, oidc.CodeIssuerUnavailable)
	if !e.Temporary || time.Since(start) > 2*time.Second {
		t.Errorf("temporary=%v after %v: %s", e.Temporary, time.Since(start), e.Message)
	}
}

func TestConcurrentFirstVerifyFetchesOnce(t *testing.T) {
	iss := oidctest.Start(t)
	iss.SetLatency(50 * time.Millisecond) // keep the first fetch in flight while the others arrive
	v := newVerifier(t, oidc.Options{})
	raw := oidctest.MustSign(t, iss, ghClaims(iss, time.Now()))
	start := make(chan struct{})
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 100 {
		wg.Go(func() {
			<-start
			if _, err := v.Verify(context.Background(), raw, expect(iss)); err != nil {
				t.Error(err)
				return
			}
			ok.Add(1)
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 100 {
		t.Fatalf("%d of 100 verified", ok.Load())
	}
	wantFetches(t, iss, 1, 1)
}

func TestRedirectsOnlyToHTTPSOrLoopback(t *testing.T) {
	// A loopback "issuer" that redirects discovery to a plain-http remote
	// host: the default client refuses to follow.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "http://203.0.113.7/.well-known/openid-configuration", http.StatusFound)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	v := newVerifier(t, oidc.Options{FetchTimeout: 2 * time.Second})
	err = v.Warm(context.Background(), "http://"+ln.Addr().String())
	e := wantCode(t, err, oidc.CodeIssuerUnavailable)
	if !strings.Contains(e.Message, "refusing redirect") {
		t.Errorf("message %q", e.Message)
	}
	if hits.Load() != 1 {
		t.Errorf("%d hits", hits.Load())
	}
}
