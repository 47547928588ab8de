package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestResponseFlushing: a response of known length from a fast upstream
// reaches the client in one write with its headers (no flush after every
// write: issue #17), while one the upstream produces slowly still streams —
// its first bytes arrive while the upstream holds back the rest.
func TestResponseFlushing(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("EXECUTION_MANAGE"))

	// A second server for the same proxy whose connections count writes.
	var writes atomic.Int64
	srv := httptest.NewUnstartedServer(f.proxy)
	srv.Listener = &countingListener{Listener: srv.Listener, writes: &writes}
	srv.Start()
	t.Cleanup(srv.Close)

	t.Run("known length, fast upstream: one write per response", func(t *testing.T) {
		body := strings.Repeat("x", 600)
		f.up.handle(runExecutions+"/1", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = io.WriteString(w, body[:300]) // two writes upstream
			_, _ = io.WriteString(w, body[300:])
		})
		client := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
		t.Cleanup(client.CloseIdleConnections)
		const n = 20
		before := writes.Load()
		for range n {
			req, _ := http.NewRequest("GET", srv.URL+runExecutions+"/1", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(got) != body {
				t.Fatalf("HTTP %d, %d bytes", res.StatusCode, len(got))
			}
		}
		// One write each; a few more only if the machine stalls a request
		// for longer than the flush interval between two of its writes.
		if w := writes.Load() - before; w > n+n/4 {
			t.Errorf("%d responses took %d writes to the client, want about one each", n, w)
		}
	})

	t.Run("known length, slow upstream: the first bytes arrive early", func(t *testing.T) {
		release := make(chan struct{})
		const first, rest = "first-part\n", "the rest of the body\n"
		f.up.handle(runExecutions+"/2", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(rest)))
			_, _ = io.WriteString(w, first)
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, rest)
		})
		req, _ := http.NewRequest("GET", f.srv.URL+runExecutions+"/2", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := f.client.Do(req)
		if err != nil {
			close(release)
			t.Fatal(err)
		}
		defer res.Body.Close()
		expectFirst(t, res.Body, first, release, "the proxy buffers known-length responses")
		close(release)
		got, err := io.ReadAll(res.Body)
		if err != nil || string(got) != rest {
			t.Fatalf("rest %q, %v", got, err)
		}
	})
}

type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestAuditLineAttributesOnStack: finish builds an allowed request's audit
// line (every attribute it ever writes) in a stack array of auditAttrs
// entries. One attribute more than the array holds moves it to the heap
// (1.4 KiB per request: issue #17), so the line's attribute count is
// checked against the constant, and the allocations of the whole line are
// bounded: the record's attribute slice, the client address string, and
// what slog's JSON handler allocates (see BenchmarkParts/finish).
func TestAuditLineAttributesOnStack(t *testing.T) {
	var out syncBuffer
	p := &Proxy{audit: slog.New(slog.NewJSONHandler(&out, nil)), log: slog.New(slog.DiscardHandler), metrics: metrics.New()}
	rec := record("EXECUTION_INFO")
	x := &call{
		start: time.Now(), id: "req-123", clientID: "client-1", method: "GET", path: runExecutions,
		route: "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions", workspace: "acme",
		clientIP: netip.MustParseAddr("127.0.0.1"), rec: &rec, status: 200, code: CodeAllowed, allowed: true,
		decided: true, revision: "sha256-0123456789abcdef", wall: time.Now(),
	}
	ctx := context.Background()
	p.finish(ctx, x)
	var line map[string]any
	if err := json.Unmarshal([]byte(out.String()), &line); err != nil {
		t.Fatalf("audit line %q: %v", out.String(), err)
	}
	// time, level and msg are the handler's; the rest are finish's.
	if n := len(line) - 3; n != auditAttrs {
		t.Errorf("the audit line has %d attributes, auditAttrs is %d: make them equal", n, auditAttrs)
	}
	if raceEnabled {
		return // the race detector's instrumentation allocates too
	}
	p.audit = slog.New(slog.NewJSONHandler(io.Discard, nil))
	if n := testing.AllocsPerRun(200, func() { p.finish(ctx, x) }); n > 4 {
		t.Errorf("an audit line costs %.0f allocations, want at most 4", n)
	}
}

// TestResponseBeforeAuditLine: a forwarded response of declared length
// reaches the client before its audit line is written, so a slow log
// never delays an answer; the line is still written, once.
func TestResponseBeforeAuditLine(t *testing.T) {
	gate := &gatedWriter{open: make(chan struct{})}
	f := newRig(t, token.NewMemory(time.Now), func(o *Options) {
		o.Audit = slog.New(slog.NewJSONHandler(gate, nil))
	})
	tok := f.mint(record("EXECUTION_INFO"))
	const body = `{"executions":[]}`
	f.up.handle(runExecutions+"/3", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	})
	got := make(chan response, 1)
	go func() { got <- f.do("GET", runExecutions+"/3", tok, nil, nil) }()
	select {
	case r := <-got:
		if r.status != 200 || r.body != body {
			t.Fatalf("HTTP %d %q", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		close(gate.open)
		t.Fatal("the response waited for the audit line to be written")
	}
	close(gate.open)
	testkit.Await(t, 10*time.Second, "the audit line", func() bool {
		return strings.Count(gate.String(), `"event":"proxy"`) == 1
	})
}

// gatedWriter blocks every Write until open is closed.
type gatedWriter struct {
	open chan struct{}
	buf  testkit.SyncBuffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.open
	return g.buf.Write(p)
}

func (g *gatedWriter) String() string { return g.buf.String() }

// expectFirst reads want from body while the upstream still holds back the
// rest (until release is closed); it closes release and fails when want
// does not arrive in 5 s (why: what that would mean).
func expectFirst(t *testing.T, body io.Reader, want string, release chan struct{}, why string) {
	t.Helper()
	buf := make([]byte, len(want))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(body, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil || string(buf) != want {
			close(release)
			t.Fatalf("first part %q, %v, want %q", buf, err, want)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatalf("%q did not arrive while the upstream held back the rest: %s", want, why)
	}
}
