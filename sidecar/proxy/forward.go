package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/apierr"
)

// Identity headers (Options.IdentityHeaders). Any request header starting
// with IdentityHeaderPrefix is removed before forwarding, so a client cannot
// forge them.
const (
	IdentityHeaderPrefix = "X-Oidc-Sidecar-"
	HeaderProvider       = "X-Oidc-Sidecar-Provider"   // the token's provider ID
	HeaderSubject        = "X-Oidc-Sidecar-Subject"    // the OIDC token's sub
	HeaderRepository     = "X-Oidc-Sidecar-Repository" // the repository claim, when the token has one
	HeaderScopes         = "X-Oidc-Sidecar-Scopes"     // the token's scopes, comma-separated
)

// NewTransport returns the transport the proxy uses when Options.Transport
// is nil, with DefaultTimeout: keep-alive with up to 256 idle connections
// per host (Go's default of 2 makes a busy proxy open and close a
// connection for most requests), HTTP/2 when the upstream offers it, and no
// transparent compression, so Accept-Encoding and compressed bodies pass
// through untouched.
func NewTransport() *http.Transport { return newTransport(DefaultTimeout) }

// newTransport is NewTransport with the upstream timeout d: the wait for
// response headers once the request is sent (ResponseHeaderTimeout: the
// transport's own timer, so a request needs no cancelable context and
// timer of the proxy's), and connecting and the TLS handshake each bounded
// by d, at most 10 s.
func newTransport(d time.Duration) *http.Transport {
	connect := min(d, 10*time.Second)
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   connect,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: d,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// flushInterval bounds how long response bytes of known length wait in the
// connection's buffer before they are flushed to the client. Responses of
// unknown length (chunked) and event streams are flushed after every write
// (ReverseProxy does that whatever FlushInterval says). A response of known
// length goes out with the handler's final flush, in one write with its
// headers, unless the upstream is slower than this: flushing after every
// write (-1) cost every request a second write system call and a timer
// goroutine's hand-off (docs/benchmarks.md, issue #17).
const flushInterval = 100 * time.Millisecond

// reverseProxy builds the forwarding half: Rewrite sets the URL, headers
// and credential; bodies stream both ways (flushInterval) with pooled
// 32 KiB copy buffers; errors become Buddy-shaped 502/504.
func (p *Proxy) reverseProxy(tr http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      tr,
		FlushInterval:  flushInterval,
		BufferPool:     &bufferPool{},
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
	}
}

func callOf(ctx context.Context) *call {
	x, _ := ctx.Value(callKey{}).(*call)
	if x == nil {
		x = &call{} // not reached: ServeHTTP always sets it
	}
	return x
}

// rewrite turns the client's request into the upstream request.
// ReverseProxy has already removed hop-by-hop headers (Connection and what
// it lists, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade),
// Forwarded and X-Forwarded-*.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	x := callOf(pr.In.Context())
	out := pr.Out
	u := out.URL
	u.Scheme, u.Host, u.User, u.Opaque = p.upstream.Scheme, p.upstream.Host, nil, ""
	// Exactly the authorized path, after the upstream's base path.
	u.Path = p.basePath + x.rawPath
	u.RawPath = p.baseRawPath + x.path
	u.RawQuery = stripAccessToken(u.RawQuery)
	u.ForceQuery, u.Fragment, u.RawFragment = false, "", ""
	out.Host = p.upstream.Host

	h := out.Header
	// Every spelling of a reserved name (identity headers, method
	// overrides, the forwarding headers, framing and hop-by-hop fields:
	// hygiene.go), and no protocol upgrades: ReverseProxy would re-add
	// Upgrade and Connection after its hop-by-hop cleanup, and the API has
	// no use for them.
	stripReserved(h)
	// Request trailers are never forwarded (their values arrive after the
	// checks).
	out.Trailer = nil

	if p.upstreamAuth != "" {
		h["Authorization"] = []string{p.upstreamAuth}
	} else {
		delete(h, "Authorization")
	}
	h["X-Request-Id"] = []string{x.id}
	p.setForwarded(pr, x.clientIP)

	if p.identity && x.rec != nil {
		setIdentity(h, HeaderProvider, x.rec.ProviderID)
		setIdentity(h, HeaderSubject, x.rec.Subject)
		setIdentity(h, HeaderRepository, x.rec.Claims["repository"])
		setIdentity(h, HeaderScopes, strings.Join(x.rec.Scopes, ","))
	}
	x.upStart = time.Now()
}

// setForwarded sets X-Forwarded-For/-Host/-Proto. When the peer is a
// trusted proxy (the resolved client differs from the peer), the incoming
// chain is kept and the peer appended, as every proxy on the way does;
// otherwise whatever the client claimed is dropped and the chain starts at
// the client. -Host and -Proto come from a trusted proxy's headers when it
// sent them, else from this request.
func (p *Proxy) setForwarded(pr *httputil.ProxyRequest, client netip.Addr) {
	in, h := pr.In, pr.Out.Header
	peer := peerOf(in.RemoteAddr)
	viaTrusted := peer.IsValid() && client != peer
	xff := addrString(client)
	if viaTrusted {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + peer.String()
		}
	}
	if xff != "" {
		h["X-Forwarded-For"] = []string{xff}
	}
	host, proto := in.Host, "http"
	if in.TLS != nil {
		proto = "https"
	}
	if viaTrusted {
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			proto = v
		}
	}
	h["X-Forwarded-Host"] = []string{host}
	h["X-Forwarded-Proto"] = []string{proto}
}

func peerOf(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, _ := netip.ParseAddr(remote)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// setIdentity sets an identity header when the value is non-empty and
// legal in a header (no control characters); otherwise it leaves it out.
func setIdentity(h http.Header, k, v string) {
	if v == "" {
		return
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return
		}
	}
	h[k] = []string{v}
}

// modifyResponse records the upstream's status and timing and drops its
// X-Request-Id (the client gets the proxy's, set before forwarding). A
// status the proxy cannot pass on is an upstream failure (502): below 100
// (ReverseProxy would panic writing it) or 101, since the sidecar never
// asks for a protocol switch (an error here also makes ReverseProxy close
// the switched connection, which it would otherwise leave open).
func (p *Proxy) modifyResponse(res *http.Response) error {
	x := callOf(res.Request.Context())
	if res.StatusCode < 100 || res.StatusCode == http.StatusSwitchingProtocols {
		return fmt.Errorf("the upstream answered with status %d, which the proxy does not pass on", res.StatusCode)
	}
	x.status = res.StatusCode
	p.metrics.Upstream(res.StatusCode, time.Since(x.upStart))
	delete(res.Header, "X-Request-Id") // the transport canonicalizes received names
	if x.w != nil {
		h := x.w.Header()
		// After passing on a 1xx response ReverseProxy has cleared the
		// response headers: the request id again.
		if _, ok := h["X-Request-Id"]; !ok {
			h["X-Request-Id"] = []string{x.id}
		}
		// The upstream's response as it is: without a Content-Type of its
		// own, it must not get one sniffed by the server.
		if _, ok := res.Header["Content-Type"]; !ok {
			h["Content-Type"] = nil
		}
	}
	if res.StatusCode == http.StatusUnauthorized {
		p.warnUpstream401(x.id)
	}
	return nil
}

// warnUpstream401 logs, at most once a minute, that the upstream refused a
// request the policy allowed: the client sees a 401 it cannot fix, and the
// usual cause is a wrong or expired upstream credential.
func (p *Proxy) warnUpstream401(requestID string) {
	now := time.Now().UnixNano()
	last := p.last401.Load()
	if now-last < int64(time.Minute) || !p.last401.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("the upstream answered 401 to an authorized request; check the upstream credential (upstream.token_env)",
		"request_id", requestID)
}

// errorHandler answers when the upstream could not be reached or did not
// send response headers in time: 504 "upstream timed out" or 502 "upstream
// unreachable", in Buddy's shape. Details go to the log only. When the
// client's own body could not be read (the forwarded request failed
// because of it), the answer is 400 invalid_body instead.
func (p *Proxy) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	x := callOf(req.Context())
	status, code, msg := http.StatusBadGateway, CodeUpstreamUnreachable, "upstream unreachable"
	switch berr := x.body.readErr(); {
	case berr != nil && req.Context().Err() == nil:
		// The client's body could not be read (a malformed chunked
		// encoding, say): the client's fault, not the upstream's.
		p.log.Info("the client's request body could not be read", "request_id", x.id, "error", berr.Error())
		w.Header().Set("Connection", "close")
		p.reply(w, x, http.StatusBadRequest, CodeInvalidBody,
			"Invalid request body: it could not be read ("+berr.Error()+"); send a body with a correct Content-Length or a well-formed chunked encoding")
		return
	case req.Context().Err() == nil && isTimeout(err):
		// The transport's ResponseHeaderTimeout, or connecting or the TLS
		// handshake past upstream.timeout.
		status, code, msg = http.StatusGatewayTimeout, CodeUpstreamTimeout, "upstream timed out"
	case req.Context().Err() != nil:
		code = CodeClientClosed
	}
	if !x.upStart.IsZero() {
		p.metrics.Upstream(0, time.Since(x.upStart))
	}
	if code == CodeClientClosed {
		p.log.Debug("client went away before the upstream answered", "request_id", x.id)
		x.status, x.code = 499, code // nginx's "client closed request", for the audit line only
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	p.log.Warn("upstream request failed", "request_id", x.id, "code", code, "error", err.Error())
	x.status, x.code = status, code
	apierr.Write(w, status, msg)
}

// isTimeout reports whether the transport gave up waiting (headers,
// connecting, TLS handshake).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bufferPool recycles ReverseProxy's 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.p.Put(&buf)
}

// clientBody is the client's request body as the transport reads it; it
// records the first read error other than io.EOF.
type clientBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// readErr is the body's read error, or nil (also for no body).
func (b *clientBody) readErr() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
