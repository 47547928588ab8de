package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// rigNoDirect makes newRig's proxies send every request through
// http.Transport (TestHTTPTransportPath).
var rigNoDirect bool

// TestHTTPTransportPath runs the forwarding tests again with every request
// on http.Transport, the path of https upstreams and of requests with a
// body: the direct path must not be the only one they prove.
func TestHTTPTransportPath(t *testing.T) {
	rigNoDirect = true
	t.Cleanup(func() { rigNoDirect = false })
	for name, fn := range map[string]func(*testing.T){
		"Forwarding": TestForwarding, "Streaming": TestStreaming, "UpstreamFailures": TestUpstreamFailures,
		"Audit": TestAudit, "Concurrent": TestConcurrent, "ResponseFlushing": TestResponseFlushing,
		"ResponseBeforeAuditLine": TestResponseBeforeAuditLine, "TokenNeverForwarded": TestTokenNeverForwarded,
		"ReservedHeaderSpellings": TestReservedHeaderSpellings,
	} {
		t.Run(name, fn)
	}
}

// countConns counts the connections the rig's upstream accepts.
func countConns(f *rig) *atomic.Int64 {
	var n atomic.Int64
	f.up.watchConns(func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	})
	return &n
}

func TestDirectTransportChosen(t *testing.T) {
	up, _ := url.Parse("http://127.0.0.1:8080/api")
	f := newRig(t, token.NewMemory(time.Now), func(o *Options) { o.Upstream = up })
	dt, ok := f.proxy.rp.Transport.(*directTransport)
	if !ok {
		t.Fatalf("transport for %s is %T, want the direct path", up, f.proxy.rp.Transport)
	}
	if dt.addr != "127.0.0.1:8080" || dt.host != "127.0.0.1:8080" || dt.maxIdle != 256 || dt.timeout != DefaultTimeout {
		t.Fatalf("direct transport = %+v", dt)
	}
	for _, tc := range []struct {
		name string
		o    func(*Options)
	}{
		{"https upstream (HTTP/2 with http.Transport)", func(o *Options) { o.Upstream = &url.URL{Scheme: "https", Host: "api.example"} }},
		{"a caller's transport", func(o *Options) { o.Transport = NewTransport() }},
	} {
		f := newRig(t, token.NewMemory(time.Now), tc.o)
		if _, ok := f.proxy.rp.Transport.(*directTransport); ok {
			t.Errorf("%s: got the direct path", tc.name)
		}
	}
	// An upstream reached through a proxy from the environment.
	ht := newTransport(time.Second)
	ht.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.internal:3128") }
	if dt := newDirectTransport(&url.URL{Scheme: "http", Host: "api.internal"}, ht, time.Second); dt != nil {
		t.Error("direct path chosen for an upstream behind HTTP_PROXY")
	}
	ht.Proxy = http.ProxyFromEnvironment
	dt = newDirectTransport(&url.URL{Scheme: "http", Host: "[::1]"}, ht, time.Second)
	if dt == nil || dt.addr != "[::1]:80" {
		t.Fatalf("IPv6 upstream without port: %+v", dt)
	}
}

func TestDirectTakes(t *testing.T) {
	dt := newDirectTransport(&url.URL{Scheme: "http", Host: "api.internal:8080"}, newTransport(time.Second), time.Second)
	req := func(method, target string, body io.Reader, hdr ...string) *http.Request {
		r := httptest.NewRequest(method, target, body)
		if body == nil {
			r.Body = nil
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		r    *http.Request
		want bool
	}{
		{req("GET", "http://api.internal:8080/user", nil), true},
		{req("HEAD", "http://api.internal:8080/user", nil), true},
		{req("GET", "http://api.internal:8080/user", http.NoBody), true},
		{req("GET", "http://api.internal:8080/user", strings.NewReader("x")), false},
		{req("POST", "http://api.internal:8080/user", nil), false},
		{req("DELETE", "http://api.internal:8080/user", nil), false},
		{req("OPTIONS", "http://api.internal:8080/user", nil), false},
		{req("GET", "https://api.internal:8080/user", nil), false},
		{req("GET", "http://other:8080/user", nil), false},
		{req("GET", "http://api.internal:8080/user", nil, "Upgrade", "websocket"), false},
	} {
		if got := dt.takes(tc.r); got != tc.want {
			t.Errorf("takes(%s %s, body %v, %v) = %v", tc.r.Method, tc.r.URL, tc.r.Body != nil, tc.r.Header, got)
		}
	}
}

// TestDirectKeepAlive: sequential GETs and HEADs reuse one upstream
// connection; requests with a body go through http.Transport and work.
func TestDirectKeepAlive(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	conns := countConns(f)
	tok := f.mint(record("EXECUTION_MANAGE", "USER_INFO"))
	for i := range 20 {
		method := []string{"GET", "HEAD"}[i%2]
		r := f.do(method, "/user", tok, nil, nil)
		wantBody := `{"ok":true}`
		if method == "HEAD" {
			wantBody = ""
		}
		if r.status != 200 || r.body != wantBody {
			t.Fatalf("%s %d: got %d %q", method, i, r.status, r.body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential GET/HEAD requests used %d upstream connections, want 1", n)
	}
	r := f.do("POST", runExecutions, tok, nil, strings.NewReader(`{"x":1}`))
	if got := f.up.requests(); r.status != 200 || got[len(got)-1].BodyLen != 7 {
		t.Fatalf("POST: %d %q, upstream got %+v", r.status, r.body, got[len(got)-1])
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("upstream connections after a POST: %d, want 2 (one per transport)", n)
	}
}

// TestDirectNoCrossTalk: many clients at once, each request's answer must
// be its own (the upstream echoes the query) — with responses of every
// framing, some closing their connection.
func TestDirectNoCrossTalk(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("USER_INFO"))
	f.up.handle("/user", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		id := q.Get("id")
		switch q.Get("kind") {
		case "chunked":
			_, _ = io.WriteString(w, id[:1])
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, id[1:])
		case "close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, id)
		case "empty":
			w.Header().Set("X-Id", id)
			w.WriteHeader(204)
		default:
			_, _ = io.WriteString(w, id)
		}
	})
	kinds := []string{"length", "chunked", "close", "empty"}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("g%di%d", g, i)
				kind := kinds[(g+i)%len(kinds)]
				method := "GET"
				if i%7 == 0 {
					method = "HEAD"
				}
				req, _ := http.NewRequest(method, f.srv.URL+"/user?kind="+kind+"&id="+id, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := f.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(res.Body)
				res.Body.Close()
				want, got := id, string(b)
				switch {
				case kind == "empty":
					want, got = id, res.Header.Get("X-Id")
				case method == "HEAD":
					want = ""
				}
				if err != nil || got != want {
					errs <- fmt.Errorf("%s %s %s: status %d, got %q (%v), want %q", method, kind, id, res.StatusCode, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDirectIdlePool: at most maxIdle connections wait, and those idle
// past idleTimeout are closed.
func TestDirectIdlePool(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("USER_INFO"))
	dt := f.proxy.rp.Transport.(*directTransport)
	dt.maxIdle = 2
	dt.idleTimeout = 50 * time.Millisecond
	release := make(chan struct{})
	var inFlight sync.WaitGroup
	f.up.handle("/user", func(w http.ResponseWriter, r *http.Request) {
		inFlight.Done()
		<-release
		_, _ = io.WriteString(w, "ok")
	})
	var closed atomic.Int64
	f.up.watchConns(func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	})
	inFlight.Add(4)
	var wg sync.WaitGroup
	for range 4 { // four connections at once
		wg.Go(func() {
			if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 || r.body != "ok" {
				t.Errorf("got %d %q", r.status, r.body)
			}
		})
	}
	inFlight.Wait()
	close(release)
	wg.Wait()
	dt.mu.Lock()
	idle := len(dt.idle)
	dt.mu.Unlock()
	if idle != 2 {
		t.Fatalf("%d idle connections, want maxIdle (2)", idle)
	}
	// The two over the limit are closed at once, the two idle ones after
	// idleTimeout.
	deadline := time.Now().Add(10 * time.Second)
	for closed.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := closed.Load(); n != 4 {
		t.Fatalf("%d upstream connections closed, want 4", n)
	}
	dt.mu.Lock()
	idle, sweep := len(dt.idle), dt.sweep
	dt.mu.Unlock()
	if idle != 0 || sweep != nil {
		t.Fatalf("after the sweep: %d idle, timer %v", idle, sweep)
	}
}

// TestDirectUpstreamClosedIdle: an upstream that closes idle connections
// (a short IdleTimeout, a restart) costs nothing: the closed connection
// is seen before it is used.
func TestDirectUpstreamClosedIdle(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("USER_INFO"))
	var closed atomic.Int64
	f.up.watchConns(func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	})
	for i := range 3 {
		if r := f.do("GET", "/user", tok, nil, nil); r.status != 200 {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
		f.up.srv.CloseClientConnections()
		deadline := time.Now().Add(10 * time.Second)
		for closed.Load() < int64(i+1) && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if got := len(f.up.requests()); got != 3 {
		t.Fatalf("upstream saw %d requests, want 3 (none repeated)", got)
	}
}

func TestValidHeader(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{"X-Ok": {"a b\tc"}}, ""},
		{http.Header{"X-Bad": {"a\r\nInjected: 1"}}, `invalid header field value for "X-Bad"`},
		{http.Header{"X Bad": {"v"}}, `invalid header field name "X Bad"`},
		{http.Header{"X-Nul": {"a\x00b"}}, `invalid header field value for "X-Nul"`},
	} {
		err := validHeader(tc.h)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validHeader(%q) = %v, want %q", tc.h, err, tc.want)
		}
	}
}
