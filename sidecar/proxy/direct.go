package proxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// directTransport sends the proxy's bodiless GET and HEAD requests to a
// plain-HTTP upstream (the sidecar beside its API replica) over HTTP/1.1
// on the handler's own goroutine: it writes the request, reads the
// response and hands the connection back to its pool when the body has
// been read to the end. http.Transport gives every round trip to two
// goroutines of the connection (one writes the request, one reads the
// response and waits for the body's end), and their hand-offs were a
// measurable part of the proxy's cost per request (docs/benchmarks.md,
// issue #17). Everything else — requests with a body, other methods,
// https upstreams (HTTP/2), an upstream reached through HTTP_PROXY —
// goes to the fallback http.Transport, unchanged.
//
// The wire format is the standard library's on both sides
// (http.Request.Write, http.ReadResponse: the functions http.Transport
// uses), with http.Transport's checks: header names and values are
// validated before sending, response headers are limited to 10 MiB,
// informational (1xx) responses go to the request's client trace (which
// ReverseProxy uses to pass them on). At most 5 of them: a bound of the
// direct path's own (Go's http.Transport once had the same count; the
// Go 1.26 one passes any number to a Got1xxResponse hook, within the
// header timeout), so that a sixth is a 502 here (TestDirect1xx).
//
// A connection is reused only when it is certainly clean: the response
// said nothing against keep-alive, its body was read to its end, nothing
// followed it in the buffer, and, when the connection is taken from the
// pool, a non-blocking peek finds no unsolicited bytes and no end of
// stream from the upstream. A response can therefore never be read as the
// answer to another client's request — except bytes the upstream sends
// after the next request reached it, which no HTTP/1.1 client can tell
// from that request's answer (http.Transport cannot either). A reused connection that fails
// before a response arrives (the upstream closed it meanwhile) is retried
// once on a new connection: GET and HEAD are safe to repeat.
type directTransport struct {
	fallback *http.Transport
	host     string // the upstream URL's Host, as requests carry it
	addr     string // host:port to dial
	dialer   net.Dialer
	timeout  time.Duration // response headers, once the request is sent

	maxIdle     int
	idleTimeout time.Duration

	mu    sync.Mutex
	idle  []*directConn // oldest first; taken from the end
	sweep *time.Timer   // closes connections idle past idleTimeout
}

// maxResponseHeaderBytes is http.Transport's default limit.
const maxResponseHeaderBytes = 10 << 20

// max1xxResponses is the direct path's limit of informational responses
// before the final one (the count older http.Transports had).
const max1xxResponses = 5

// newDirectTransport returns a directTransport for upstream in front of
// fallback, or nil when the upstream is not one it serves: not plain
// HTTP, reached through a proxy from the environment, or a system where
// idle connections cannot be checked (directPeek).
func newDirectTransport(upstream *url.URL, fallback *http.Transport, timeout time.Duration) *directTransport {
	if !directSupported || upstream.Scheme != "http" || upstream.Host == "" {
		return nil
	}
	if fallback.Proxy != nil {
		if pu, err := fallback.Proxy(&http.Request{URL: upstream}); err != nil || pu != nil {
			return nil
		}
	}
	port := upstream.Port()
	if port == "" {
		port = "80"
	}
	return &directTransport{
		fallback:    fallback,
		host:        upstream.Host,
		addr:        net.JoinHostPort(upstream.Hostname(), port),
		dialer:      net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second},
		timeout:     timeout,
		maxIdle:     cmp.Or(max(fallback.MaxIdleConnsPerHost, 0), http.DefaultMaxIdleConnsPerHost),
		idleTimeout: cmp.Or(max(fallback.IdleConnTimeout, 0), 90*time.Second),
	}
}

// takes reports whether req is one the direct path sends.
func (t *directTransport) takes(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) &&
		req.URL.Scheme == "http" && req.URL.Host == t.host &&
		req.Header["Upgrade"] == nil
}

// RoundTrip implements http.RoundTripper.
func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.takes(req) {
		return t.fallback.RoundTrip(req)
	}
	if err := validHeader(req.Header); err != nil {
		return nil, err
	}
	ctx := req.Context()
	pc := t.get()
	reused := pc != nil
	for {
		if pc == nil {
			var err error
			if pc, err = t.dial(ctx); err != nil {
				return nil, err
			}
		}
		res, answered, err := t.send(ctx, pc, req)
		if err == nil {
			return res, nil
		}
		pc.close()
		if !reused || answered || ctx.Err() != nil || isTimeout(err) {
			return nil, err
		}
		// The upstream closed the reused connection as the request went
		// out (it sent not one byte of an answer): once more on a new
		// connection, as http.Transport does for requests it may repeat.
		pc, reused = nil, false
	}
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *directTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
	t.fallback.CloseIdleConnections()
}

var errHeaderTooLarge = fmt.Errorf("upstream response headers exceed %d bytes", maxResponseHeaderBytes)

// send writes req on pc and reads the response headers. On success the
// response's body owns pc. answered reports whether the upstream sent
// any byte of a response.
func (t *directTransport) send(ctx context.Context, pc *directConn, req *http.Request) (res *http.Response, answered bool, err error) {
	pc.lc.total = 0
	stop := context.AfterFunc(ctx, pc.abortFn)
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, pc.lc.total > 0, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	if t.timeout > 0 {
		_ = pc.c.SetReadDeadline(time.Now().Add(t.timeout))
		if ctx.Err() != nil {
			pc.abort() // the cancellation's past deadline may have been the one just replaced
		}
	}
	for n1xx := 0; ; n1xx++ {
		pc.lc.left = maxResponseHeaderBytes // for each response, as http.Transport
		if res, err = http.ReadResponse(pc.br, req); err != nil {
			if pc.lc.left <= 0 {
				err = errHeaderTooLarge
			}
			return fail(err)
		}
		code := res.StatusCode
		if code >= 200 || code < 100 {
			break
		}
		if code == http.StatusSwitchingProtocols {
			return fail(errors.New("upstream switched protocols on a request that did not ask for it"))
		}
		if n1xx == max1xxResponses {
			return fail(errors.New("upstream sent too many 1xx responses"))
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(res.Header)); err != nil {
				return fail(err)
			}
		}
	}
	pc.lc.left = math.MaxInt64
	if t.timeout > 0 {
		_ = pc.c.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			pc.abort() // the cancellation's deadline may have been the one just cleared
		}
	}
	res.Body = &directBody{
		rc: res.Body, t: t, pc: pc, ctx: ctx, stop: stop,
		keep: !res.Close && !req.Close,
	}
	return res, true, nil
}

// dial opens a new connection to the upstream.
func (t *directTransport) dial(ctx context.Context) (*directConn, error) {
	c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	return newDirectConn(c), nil
}

// newDirectConn wraps a new connection to the upstream.
func newDirectConn(c net.Conn) *directConn {
	pc := &directConn{c: c}
	pc.abortFn = pc.abort // one method value per connection, not one per request
	if sc, ok := c.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
	pc.lc = limitedConn{Conn: c, left: math.MaxInt64}
	pc.br = bufio.NewReader(&pc.lc)
	pc.bw = bufio.NewWriter(c)
	return pc
}

// get takes the most recently used idle connection that is still clean,
// or returns nil.
func (t *directTransport) get() *directConn {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			return nil
		}
		pc := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if time.Since(pc.idleAt) < t.idleTimeout && pc.clean() {
			return pc
		}
		pc.close()
	}
}

// put returns a connection whose response was read to its end to the pool.
func (t *directTransport) put(pc *directConn) {
	if pc.br.Buffered() > 0 {
		// Bytes after the end of the response: never read them as the
		// next request's answer.
		pc.close()
		return
	}
	pc.idleAt = time.Now()
	t.mu.Lock()
	if len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		pc.close()
		return
	}
	t.idle = append(t.idle, pc)
	if t.sweep == nil {
		t.sweep = time.AfterFunc(t.idleTimeout, t.closeStale)
	}
	t.mu.Unlock()
}

// closeStale closes the connections idle for idleTimeout or longer, and
// comes back for the next one to reach it.
func (t *directTransport) closeStale() {
	now := time.Now()
	t.mu.Lock()
	i := 0
	for i < len(t.idle) && now.Sub(t.idle[i].idleAt) >= t.idleTimeout {
		i++
	}
	stale := append([]*directConn(nil), t.idle[:i]...)
	t.idle = slices.Delete(t.idle, 0, i) // clears the tail: no reference to a closed connection stays
	if len(t.idle) > 0 {
		t.sweep.Reset(t.idleTimeout - now.Sub(t.idle[0].idleAt))
	} else {
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, pc := range stale {
		pc.close()
	}
}

// directConn is one upstream connection of the direct path.
type directConn struct {
	c      net.Conn
	raw    syscall.RawConn
	lc     limitedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// abortFn is pc.abort, for context.AfterFunc.
	abortFn func()
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read or write.
var aLongTimeAgo = time.Unix(1, 0)

// abort makes the connection's pending and future reads and writes fail:
// the client went away.
func (pc *directConn) abort() { _ = pc.c.SetDeadline(aLongTimeAgo) }

func (pc *directConn) close() { _ = pc.c.Close() }

// clean reports whether an idle connection can carry a request: nothing
// buffered, and the socket has neither unread bytes nor the end of
// stream waiting (directPeek).
func (pc *directConn) clean() bool {
	return pc.raw != nil && pc.br.Buffered() == 0 && directPeek(pc.raw)
}

// limitedConn bounds how much a response's headers may read, and counts
// what the connection read since send's request went out.
type limitedConn struct {
	net.Conn
	left  int64
	total int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.Conn.Read(p)
	l.left -= int64(n)
	l.total += int64(n)
	return n, err
}

// directBody is a response body of the direct path. When it has been read
// to its end the connection goes back to the pool; when it is closed
// before that, or a read fails, the connection is closed. ReverseProxy
// reads and closes it from one goroutine.
type directBody struct {
	rc   io.ReadCloser
	t    *directTransport
	pc   *directConn
	ctx  context.Context
	stop func() bool
	keep bool
	done bool
}

func (b *directBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release(true)
	case err != nil:
		b.release(false)
		if b.ctx.Err() != nil {
			// The client went away (abort's deadline): say so, as
			// http.Transport does, so ReverseProxy does not log it.
			err = b.ctx.Err()
		}
	}
	return n, err
}

func (b *directBody) Close() error {
	if !b.done {
		// An empty body (HEAD, 204, 304, Content-Length: 0) is complete
		// without a read.
		b.release(b.rc == http.NoBody)
	}
	return nil
}

// release ends the body's hold on the connection. After it, the body
// never touches the connection again: another request may be using it.
func (b *directBody) release(complete bool) {
	b.done = true
	if b.stop() && complete && b.keep {
		b.t.put(b.pc)
	} else {
		b.pc.close()
	}
	b.pc = nil
}

// validHeader applies http.Transport's check of outgoing header fields.
func validHeader(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}
