package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

const (
	testProviderID = "1c8f7b63-42a5-4d1f-8e66-3a9b8e2d0f51"
	upstreamSecret = "upstream-secret-credential-7f3a"

	runExecutions = "/workspaces/acme/projects/web/pipelines/7/executions"
)

const providersYAML = `providers:
  - id: 1c8f7b63-42a5-4d1f-8e66-3a9b8e2d0f51
    name: local test issuer
    type: other
    issuer: http://127.0.0.1:8080
    audience: sidecar-test
    trust_conditions: sub exists
    scopes: [WORKSPACE, EXECUTION_MANAGE, USER_INFO]
`

// testProviders parses the test providers file with the real parser.
func testProviders(t testing.TB) []*provider.Provider {
	t.Helper()
	f, err := provider.Parse("providers.yaml", []byte(providersYAML))
	if err != nil {
		t.Fatalf("providers.yaml: %v", err)
	}
	return f.Providers
}

// snapshot builds and compiles a real bundle: embedded policies/, Buddy's
// route table unless s.Routes says otherwise.
func snapshot(t testing.TB, s policy.Sources) *policy.Snapshot {
	t.Helper()
	ctx := context.Background()
	if s.Providers == nil {
		s.Providers = testProviders(t)
	}
	b, err := policy.Build(ctx, s)
	if err != nil {
		t.Fatalf("policy.Build: %v", err)
	}
	snap, err := policy.Compile(ctx, b)
	if err != nil {
		t.Fatalf("policy.Compile: %v", err)
	}
	return snap
}

var (
	defaultSnapMu sync.Mutex
	defaultSnap   *policy.Snapshot
)

// defaultSnapshot is the embedded policies with Buddy's table and the test
// providers, compiled once (snapshots are immutable, so tests share it).
func defaultSnapshot(t testing.TB) *policy.Snapshot {
	defaultSnapMu.Lock()
	defer defaultSnapMu.Unlock()
	if defaultSnap == nil {
		defaultSnap = snapshot(t, policy.Sources{})
	}
	return defaultSnap
}

func engineWith(snap *policy.Snapshot) *policy.Engine {
	e := &policy.Engine{}
	if snap != nil {
		e.Swap(snap)
	}
	return e
}

// countingStore counts Get calls, to prove garbage never reaches the store.
type countingStore struct {
	token.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, hash string) (*token.Record, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, hash)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct{ testkit.SyncBuffer }

// received is what the fake upstream saw.
type received struct {
	Method     string
	RequestURI string
	Host       string
	Header     http.Header
	BodyLen    int64
	BodySHA    string
}

// upstream is a fake API that records every request. Handlers can be
// installed per path; the default answers 200 {"ok":true} after reading
// the body.
type upstream struct {
	srv      *httptest.Server
	mu       sync.Mutex
	got      []received
	handlers map[string]http.HandlerFunc
	onConn   atomic.Pointer[func(net.Conn, http.ConnState)]
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{handlers: map[string]http.HandlerFunc{}}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		h := u.handlers[r.URL.Path]
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		hs := sha256.New()
		n, _ := io.Copy(hs, r.Body)
		u.record(r, n, hex.EncodeToString(hs.Sum(nil)))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "upstream-own-id")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	u.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if h := u.onConn.Load(); h != nil {
			(*h)(c, s)
		}
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

// watchConns calls fn on every change of an upstream connection's state.
func (u *upstream) watchConns(fn func(net.Conn, http.ConnState)) { u.onConn.Store(&fn) }

func (u *upstream) record(r *http.Request, n int64, sha string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.got = append(u.got, received{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), BodyLen: n, BodySHA: sha})
}

func (u *upstream) handle(path string, h http.HandlerFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handlers[path] = h
}

func (u *upstream) requests() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.got...)
}

func (u *upstream) url() *url.URL {
	v, _ := url.Parse(u.srv.URL)
	return v
}

// rig is a sidecar proxy on a real loopback server in front of a fake
// upstream, with a real policy engine and a real token store.
type rig struct {
	t      testing.TB
	engine *policy.Engine
	store  *countingStore
	up     *upstream
	proxy  *Proxy
	srv    *httptest.Server
	audit  *syncBuffer
	logs   *syncBuffer
	client *http.Client
}

type rigOption func(*Options)

func newRig(t testing.TB, store token.Store, opts ...rigOption) *rig {
	t.Helper()
	f := &rig{
		t:      t,
		engine: engineWith(defaultSnapshot(t)),
		store:  &countingStore{Store: store},
		up:     newUpstream(t),
		audit:  &syncBuffer{},
		logs:   &syncBuffer{},
	}
	o := Options{
		Engine: f.engine, Store: f.store, Upstream: f.up.url(), UpstreamToken: upstreamSecret,
		Metrics: metrics.New(),
		Audit:   slog.New(slog.NewJSONHandler(f.audit, nil)),
		Logger:  slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	o.NoDirectPath = rigNoDirect
	for _, fn := range opts {
		fn(&o)
	}
	if o.Engine != f.engine {
		f.engine = o.Engine
	}
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.proxy = p
	f.srv = httptest.NewServer(p)
	t.Cleanup(f.srv.Close)
	f.client = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 20 * time.Second}
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// stores runs fn once with the memory store and once with a real Redis.
func stores(t *testing.T, fn func(t *testing.T, store token.Store)) {
	t.Run("memory", func(t *testing.T) {
		st := token.NewMemory(time.Now)
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		// A generous timeout: -race on a small shared machine can stall a
		// round trip past the 250ms default (TestRedisDown keeps the default).
		st, err := token.NewRedis(token.RedisOptions{URL: srv.URL(), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
}

// record is a token record for the test provider, valid for an hour,
// limited to workspace acme.
func record(scopes ...string) token.Record {
	now := time.Now().Unix()
	return token.Record{
		ProviderID: testProviderID, ProviderName: "local test issuer",
		Subject: "repo:octo-org/octo-repo:ref:refs/heads/main", Issuer: "http://127.0.0.1:8080",
		Claims:     map[string]string{"repository": "octo-org/octo-repo", "ref": "refs/heads/main"},
		Scopes:     scopes,
		Workspaces: []string{"acme"},
		IssuedAt:   now, ExpiresAt: now + 3600,
		DecisionID: "dec-1",
	}
}

// mint stores rec under a new token and returns the token.
func (f *rig) mint(rec token.Record) string {
	f.t.Helper()
	tok, hash, err := token.New()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.Save(context.Background(), hash, &rec, time.Hour); err != nil {
		f.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request through the sidecar. tok, when not "", goes in the
// Authorization header.
func (f *rig) do(method, target, tok string, hdr http.Header, body io.Reader) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+target, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// raw sends a request line and headers exactly as given (no client-side
// path normalisation) and returns the response.
func (f *rig) raw(method, target string, hdr map[string]string) response {
	f.t.Helper()
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: sidecar.test\r\nConnection: close\r\n")
	for k, v := range hdr {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		f.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		f.t.Fatalf("%s %s: reading response: %v", method, target, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: string(body)}
}

// errBody is Buddy's error body as apierr writes it.
func errBody(msg string) string {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"message": msg}}})
	return string(b) + "\n"
}

func (f *rig) wantUpstreamUntouched() {
	f.t.Helper()
	if got := f.up.requests(); len(got) != 0 {
		f.t.Fatalf("upstream received %d requests, want none: %+v", len(got), got)
	}
}

// auditLines parses the audit log.
func (f *rig) auditLines() []map[string]any {
	f.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(f.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			f.t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func policyInput(m match, tv *policy.PreparedToken) policy.ProxyInput {
	return policy.ProxyInput{Method: "GET", Path: runExecutions, Route: m.route, Vars: m.vars, Token: tv, ClientIP: "127.0.0.1", Time: time.Now()}
}
