// Package proxy is the sidecar's proxy path: every request that is not one
// of the sidecar's own endpoints is authenticated with the sidecar token it
// carries, matched against the route table, authorized by the policy's
// proxy decision (data.sidecar.proxy.decision) and, when allowed, forwarded
// to the upstream API with the upstream credential in place of the token.
//
// Per request:
//
//  1. the path is checked (checkPath): rejected with 400/414, or accepted in
//     exactly the escaped form that will be matched, authorized and forwarded;
//  2. the bearer token (Authorization header or legacy ?access_token=) is
//     looked up in the token store — one round trip at most, none for a
//     string that is not a well-formed sidecar token;
//  3. the route is matched with a gorilla/mux router compiled once per
//     policy snapshot;
//  4. the policy decides, from an input built directly as an OPA value; Go
//     does not check scopes, workspaces or IP restrictions itself;
//  5. an allowed request goes through httputil.ReverseProxy, streamed both
//     ways; anything else is answered in Buddy's error shape.
//
// One audit line is written per request. The sidecar token and the
// upstream credential are never logged or forwarded. See docs/proxy.md.
package proxy

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/apierr"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/logline"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// DefaultTimeout is how long the proxy waits for the upstream's response
// headers when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Codes in audit lines for outcomes the policy does not decide. Policy
// denials carry the policy's own code (unauthenticated, insufficient_scopes,
// workspace_not_allowed, ip_not_allowed, route_not_allowed, ...); a request
// forwarded to the upstream has code "allowed" and the upstream's status.
const (
	CodeAllowed             = "allowed"
	CodeInvalidPath         = "invalid_path"
	CodeConflictingTokens   = "conflicting_tokens"
	CodePolicyUnavailable   = "policy_unavailable"
	CodePolicyError         = "policy_error"
	CodeStoreUnavailable    = "store_unavailable"
	CodeOverloaded          = "overloaded"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeCaseVariant         = "case_variant"
	CodeUpstreamTimeout     = "upstream_timeout"
	CodeUpstreamUnreachable = "upstream_unreachable"
	CodeClientClosed        = "client_closed"
	CodeInvalidBody         = "invalid_body"
)

// codeRouteNotAllowed is the policy's code for "no route matched and
// unknown routes are denied"; the proxy answers 405 or 400 instead when the
// path matches a route under another method or another letter case.
const codeRouteNotAllowed = "route_not_allowed"

// Options configures New.
type Options struct {
	// Engine serves the policy snapshot; required. Before the first load
	// every request gets 503.
	Engine *policy.Engine
	// Store holds issued tokens; required.
	Store token.Store
	// Clients resolves the caller's address (nil: the connection's peer).
	Clients *clientip.Resolver
	// Metrics records decisions and upstream timings (nil: none).
	Metrics *metrics.Metrics
	// Upstream is the API base URL, e.g. https://api.buddy.works; it may
	// have a base path (https://host/api), which is prefixed to every
	// forwarded path. Required; no user info, query or fragment.
	Upstream *url.URL
	// UpstreamToken replaces the client's Authorization header with
	// "Bearer <UpstreamToken>". Empty: the header is removed.
	UpstreamToken string
	// Timeout bounds the wait for the upstream's response headers once the
	// request is sent, and each of connecting and the TLS handshake (at most
	// 10 s each); past it the client gets 504. Default DefaultTimeout.
	// Response bodies are streamed without a time limit. It applies to the
	// default transport; a caller's Transport brings its own timeouts
	// (http.Transport.ResponseHeaderTimeout), so setting both is an error.
	Timeout time.Duration
	// IdentityHeaders adds X-OIDC-Sidecar-Provider, -Subject, -Repository
	// and -Scopes, describing the token, to forwarded requests. Headers with
	// that prefix sent by clients are always removed.
	IdentityHeaders bool
	// Transport sends requests upstream. Default: NewTransport().
	Transport http.RoundTripper
	// Audit receives one line per request (event=proxy); nil: none.
	Audit *slog.Logger
	// AuditLines, when set, writes the audit line instead of Audit: the
	// same JSON line as Audit's handler would write when that handler is
	// slog's JSONHandler on the same writer with the same level and With
	// attributes (the server sets both so), at a fraction of the CPU
	// (sidecar/logline). TestAuditLinesMatchSlog pins the equivalence.
	AuditLines *logline.Writer
	// Logger receives operational messages (store, policy, upstream errors).
	Logger *slog.Logger
	// Now is the clock for token expiry and the policy's input.time
	// (default time.Now).
	Now func() time.Time
	// TokenCacheTTL is how long a token record found in the store is reused
	// without asking the store again; it bounds how long a revoked token
	// keeps working. 0 means DefaultTokenCacheTTL (1s), the maximum;
	// negative disables the cache (every request with a well-formed token
	// makes one store round trip). Unknown tokens and store errors are never
	// cached.
	TokenCacheTTL time.Duration
	// NoDecisionCache turns off reusing decisions. By default a cached
	// token's decision for a method, path and client address is reused
	// while the token's cache entry lives, when the snapshot's proxy
	// decision is pure (see policy.Snapshot.ProxyDecisionPure): then the
	// policy would answer the same again.
	NoDecisionCache bool
	// Ended, when set, reports whether a record the store (or the cache)
	// returned has ended although it is still stored: its provider's
	// tokens were revoked in bulk after it was issued (sidecar/revocation).
	// It is asked on every request, cached record or not; it must not do
	// I/O.
	Ended func(*token.Record) bool

	// NoDirectPath sends every request through http.Transport. By default
	// (with Transport nil) bodiless GET and HEAD requests to a plain-HTTP
	// upstream go over the proxy's own HTTP/1.1 connections, on the
	// request's goroutine (directTransport, docs/proxy.md).
	NoDirectPath bool
}

// Proxy is the http.Handler for every request that is not one of the
// sidecar's own endpoints. It is safe for concurrent use.
type Proxy struct {
	engine   *policy.Engine
	store    token.Store
	clients  *clientip.Resolver
	metrics  *metrics.Metrics
	audit    *slog.Logger
	lines    *logline.Writer // Options.AuditLines
	log      *slog.Logger
	bundles  atomic.Pointer[revisionValue] // the audit line's bundles value of the last revision
	now      func() time.Time
	identity bool

	upstream     *url.URL
	basePath     string // upstream base path, unescaped, without trailing "/"
	baseRawPath  string // the same, escaped
	upstreamAuth string // "Bearer <UpstreamToken>", or "" to drop Authorization
	rp           *httputil.ReverseProxy

	cache  *tokenCache // nil: disabled
	noMemo bool        // Options.NoDecisionCache
	ended  func(*token.Record) bool

	last401 atomic.Int64 // unix nanos of the last "upstream answered 401" warning

	buildMu sync.Mutex
	tbl     atomic.Pointer[table]

	// onDecision, when set (tests), sees every policy input and decision.
	onDecision func(policy.ProxyInput, *policy.ProxyDecision)
}

// New checks o and returns the proxy.
func New(o Options) (*Proxy, error) {
	if o.Engine == nil {
		return nil, errors.New("proxy: Options.Engine is required")
	}
	if o.Store == nil {
		return nil, errors.New("proxy: Options.Store is required")
	}
	up := o.Upstream
	switch {
	case up == nil:
		return nil, errors.New("proxy: Options.Upstream is required")
	case up.Scheme != "http" && up.Scheme != "https":
		return nil, fmt.Errorf("proxy: upstream %q: the scheme must be http or https", up.Redacted())
	case up.Host == "":
		return nil, fmt.Errorf("proxy: upstream %q has no host", up.Redacted())
	case up.User != nil:
		return nil, fmt.Errorf("proxy: upstream %q contains credentials; set the upstream token instead", up.Redacted())
	case up.RawQuery != "" || up.ForceQuery || up.Fragment != "" || up.Opaque != "":
		return nil, fmt.Errorf("proxy: upstream %q must not have a query or fragment", up.Redacted())
	}
	if strings.ContainsAny(o.UpstreamToken, "\r\n\x00") || strings.TrimSpace(o.UpstreamToken) != o.UpstreamToken {
		return nil, errors.New("proxy: the upstream token contains whitespace or control characters")
	}
	if o.TokenCacheTTL > DefaultTokenCacheTTL {
		return nil, fmt.Errorf("proxy: TokenCacheTTL is %s; at most %s, so that a revocation takes effect within it", o.TokenCacheTTL, DefaultTokenCacheTTL)
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("proxy: Timeout must not be negative, got %s", o.Timeout)
	}
	if o.Timeout != 0 && o.Transport != nil {
		return nil, errors.New("proxy: Timeout applies to the default transport; set the timeouts of Options.Transport instead (http.Transport.ResponseHeaderTimeout)")
	}
	p := &Proxy{
		engine: o.Engine, store: o.Store, clients: o.Clients, metrics: o.Metrics,
		audit: o.Audit, lines: o.AuditLines, log: o.Logger, now: o.Now, identity: o.IdentityHeaders, noMemo: o.NoDecisionCache,
		ended:       o.Ended,
		upstream:    &url.URL{Scheme: up.Scheme, Host: up.Host},
		basePath:    strings.TrimSuffix(up.Path, "/"),
		baseRawPath: strings.TrimSuffix(up.EscapedPath(), "/"),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if o.UpstreamToken != "" {
		p.upstreamAuth = "Bearer " + o.UpstreamToken
	}
	switch {
	case o.TokenCacheTTL == 0:
		p.cache = newTokenCache(DefaultTokenCacheTTL)
	case o.TokenCacheTTL > 0:
		p.cache = newTokenCache(o.TokenCacheTTL)
	}
	tr := o.Transport
	if tr == nil {
		d := cmp.Or(o.Timeout, DefaultTimeout)
		ht := newTransport(d)
		tr = ht
		if dt := newDirectTransport(p.upstream, ht, d); dt != nil && !o.NoDirectPath {
			tr = dt
		}
	}
	p.rp = p.reverseProxy(tr)
	return p, nil
}

// call is the state of one proxied request, shared with the ReverseProxy hooks
// through the request context.
type call struct {
	start     time.Time // monotonic, for durations
	wall      time.Time // when the request arrived, for the audit timestamp
	id        string    // the sidecar's own request id (audit, upstream, response)
	clientID  string    // the client's X-Request-Id, when well-formed (audit only)
	method    string
	path      string // the checked, escaped path: matched, authorized, forwarded
	rawPath   string // path unescaped
	route     string // the matched template, "" for none
	workspace string
	clientIP  netip.Addr
	rec       *token.Record
	status    int
	code      string
	allowed   bool
	decided   bool   // the policy's decision was made (evaluated or reused)
	revision  string // the policy snapshot's revision
	authDur   time.Duration
	upStart   time.Time
	// body is the client's request body as forwarded; it keeps its read
	// error, so that a malformed body is told from an upstream failure.
	body *clientBody
	// w is the client's response writer, for modifyResponse.
	w http.ResponseWriter
}

type callKey struct{}

// ServeHTTP authenticates, authorizes and forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	x := &call{start: time.Now(), method: req.Method, id: newRequestID(), clientID: clientRequestID(req.Header.Get("X-Request-Id"))}
	x.wall = x.start
	w.Header()["X-Request-Id"] = []string{x.id} // canonical already: Set's canonicalization is per request
	x.clientIP = p.clients.IP(req)
	defer p.finish(req.Context(), x)

	snap := p.engine.Current()
	if snap == nil {
		w.Header().Set("Retry-After", "1")
		p.reply(w, x, http.StatusServiceUnavailable, CodePolicyUnavailable, "The sidecar has no authorization policy loaded")
		return
	}
	x.revision = snap.Revision
	if req.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE")
		p.reply(w, x, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"Method CONNECT is not supported: the sidecar forwards API requests, it is not a forward proxy")
		return
	}
	esc, perr := checkPath(req)
	if perr != nil {
		p.reply(w, x, perr.status, CodeInvalidPath, "Invalid request path: "+perr.reason)
		return
	}
	x.path = esc
	x.rawPath, _ = url.PathUnescape(esc) // checkPath accepted only valid escapes
	// An encoded slash passes checkPath only to be placed here: inside a
	// variable that the matched route declares may hold one, or refused
	// like the other path problems, before anything else.
	if hasEncodedSlash(esc) && p.table(snap).match(req.Method, esc).slashRefused {
		p.reply(w, x, http.StatusBadRequest, CodeInvalidPath, "Invalid request path: "+encodedSlashReason)
		return
	}
	if where := tokenIn(req); where != "" {
		p.reply(w, x, http.StatusBadRequest, CodeTokenInRequest, "The request carries a sidecar token in "+where+
			"; send it only in the Authorization header (Authorization: Bearer <token>). The sidecar never forwards a token; treat this one as leaked and revoke it.")
		return
	}
	if methodOverrideParam(req.URL.RawQuery) {
		p.reply(w, x, http.StatusBadRequest, CodeMethodOverride, "The request has a _method query parameter, which some servers read as an override of the HTTP method; "+
			"the sidecar refuses it. Send the request with the method you mean instead.")
		return
	}

	tok, sent, err := bearerToken(req)
	if err != nil {
		p.reply(w, x, http.StatusBadRequest, CodeConflictingTokens, err.Error())
		return
	}
	now := p.now()
	var tv *policy.PreparedToken
	var memo *decisionMemo
	if sent && token.WellFormed(tok) {
		rec, val, dm, err := p.lookup(req.Context(), token.Hash(tok))
		if errors.Is(err, token.ErrOverloaded) {
			p.metrics.StoreOverload("get")
			p.log.Warn("sidecar overloaded: no free token store connection in time; refusing the request", "request_id", x.id, "error", err.Error())
			w.Header().Set("Retry-After", "1")
			p.reply(w, x, http.StatusServiceUnavailable, CodeOverloaded, "The sidecar is overloaded; retry in a second")
			return
		}
		if err != nil {
			p.metrics.StoreError("get")
			p.log.Error("token store lookup failed; refusing the request", "request_id", x.id, "error", err.Error())
			w.Header().Set("Retry-After", "1")
			p.reply(w, x, http.StatusServiceUnavailable, CodeStoreUnavailable, "The token store is temporarily unavailable")
			return
		}
		if rec != nil && !rec.Expired(now) {
			x.rec, tv, memo = rec, val, dm
		}
	}

	t := p.table(snap)
	client := addrString(x.clientIP)
	// A valid cached token may reuse the decision made for the same
	// method, path and client address under this snapshot, when the
	// snapshot's proxy decision depends on nothing else (no input.time, no
	// non-deterministic builtin): the route match and the OPA evaluation
	// would give the same answer again.
	if memo != nil {
		if pure, _ := snap.ProxyDecisionPure(); !pure || p.noMemo {
			memo = nil
		}
	}
	key := memoKey{snap: snap, method: req.Method, path: esc, client: client}
	v, reused := memo.getIf(key)
	m, d := v.m, v.d
	if reused {
		p.metrics.ProxyDecisionReused()
	} else {
		m = t.match(req.Method, esc)
	}
	in := policy.ProxyInput{
		Method: req.Method, Path: esc, Route: m.route, Vars: m.vars, Token: tv,
		ClientIP: client, Time: now,
	}
	if !reused {
		evalStart := time.Now()
		var err error
		d, err = snap.Authorize(req.Context(), in)
		p.metrics.PolicyEval("proxy", time.Since(evalStart))
		if err != nil {
			p.metrics.PolicyEvalError("proxy")
			x.authDur = time.Since(x.start)
			p.log.Error("proxy decision failed; refusing the request", "request_id", x.id, "revision", snap.Revision, "error", err.Error())
			w.Header().Set("Retry-After", "1")
			p.reply(w, x, http.StatusServiceUnavailable, CodePolicyError, "Authorization is temporarily unavailable")
			return
		}
		if memo != nil {
			memo.put(key, memoValue{m: m, d: d})
		}
	}
	x.authDur = time.Since(x.start)
	x.decided = true
	if p.onDecision != nil {
		p.onDecision(in, d)
	}
	if m.route != nil {
		x.route = m.route.Path
	}
	x.workspace = m.vars[routes.WorkspaceVar]

	// A path that matches routes only under other methods or another
	// letter case: once the caller is authenticated (the policy's checks
	// before the route come first), say so instead of "not in the table".
	if m.route == nil && (d.Allow || d.Code == codeRouteNotAllowed) {
		switch {
		case m.wrongMethod && !d.Allow:
			allow := strings.Join(t.allowed(esc), ", ")
			w.Header().Set("Allow", allow)
			p.reply(w, x, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				fmt.Sprintf("Method %s is not allowed for this path. Allowed methods: %s", req.Method, allow))
			return
		case m.caseVariant:
			p.reply(w, x, http.StatusBadRequest, CodeCaseVariant,
				"Invalid request path: it differs only in letter case from a route of the API")
			return
		}
	}
	if !d.Allow {
		if d.Status == http.StatusUnauthorized {
			apierr.Challenge(w.Header(), sent)
		}
		p.reply(w, x, d.Status, d.Code, d.Message)
		return
	}

	x.allowed, x.code, x.w = true, CodeAllowed, w
	// The forwarded request's context carries x to the ReverseProxy hooks.
	// The upstream timeout is the transport's (ResponseHeaderTimeout): no
	// cancelable context and timer of our own per request.
	out := req.WithContext(context.WithValue(req.Context(), callKey{}, x))
	if out.Body != nil && out.Body != http.NoBody {
		x.body = &clientBody{rc: out.Body}
		out.Body = x.body
	}
	p.rp.ServeHTTP(w, out)
	// The forwarded response is complete. When its length is declared, it
	// is sent now rather than when the handler returns, so that the client
	// does not wait for the audit line (finish, deferred): the same bytes in
	// the same one write. A response without a declared length waits: a
	// flush would switch it to chunked encoding.
	if x.code == CodeAllowed && w.Header().Get("Content-Length") != "" {
		_ = http.NewResponseController(w).Flush()
	}
}

// DirectPath reports whether bodiless GET and HEAD requests take the direct
// upstream path (Options.NoDirectPath).
func (p *Proxy) DirectPath() bool {
	_, ok := p.rp.Transport.(*directTransport)
	return ok
}

// lookup returns the record stored for a token hash and its policy input
// value: from the short-lived cache, or with one store round trip. A nil
// record means unknown, expired or revoked; an error means the store could
// not answer (the request must be refused, never forwarded).
func (p *Proxy) lookup(ctx context.Context, hash string) (*token.Record, *policy.PreparedToken, *decisionMemo, error) {
	start := time.Now()
	if p.cache == nil {
		return p.fetch(ctx, hash, start, 0)
	}
	e, gen, ok := p.cache.get(hash, start)
	if ok {
		if p.ended != nil && p.ended(e.rec) {
			return nil, nil, nil, nil
		}
		return e.rec, e.val, e.memo, nil
	}
	// One flight per token and shard generation: a lookup that starts
	// after a forget (revocation) never joins a flight that read the
	// store before it. The flight runs detached from this request's
	// cancellation (the store's own timeout bounds it), so a caller that
	// leaves does not fail the others; each caller still stops waiting
	// when its own request ends.
	key := hash + ":" + strconv.FormatUint(gen, 10)
	ch := p.cache.flights.DoChan(key, func() (any, error) {
		rec, val, memo, err := p.fetch(context.WithoutCancel(ctx), hash, start, gen)
		return lookupResult{rec, val, memo}, err
	})
	p.cache.waiting.Add(1)
	defer p.cache.waiting.Add(-1)
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, nil, nil, r.Err
		}
		lr := r.Val.(lookupResult)
		return lr.rec, lr.val, lr.memo, nil
	case <-ctx.Done():
		return nil, nil, nil, context.Cause(ctx)
	}
}

type lookupResult struct {
	rec  *token.Record
	val  *policy.PreparedToken
	memo *decisionMemo
}

// fetch reads a token from the store and caches what it found.
func (p *Proxy) fetch(ctx context.Context, hash string, start time.Time, gen uint64) (*token.Record, *policy.PreparedToken, *decisionMemo, error) {
	rec, err := p.store.Get(ctx, hash)
	switch {
	case errors.Is(err, token.ErrNotFound):
		return nil, nil, nil, nil
	case err != nil:
		return nil, nil, nil, err
	}
	if p.ended != nil && p.ended(rec) {
		return nil, nil, nil, nil
	}
	val := preparedToken(rec)
	var memo *decisionMemo
	if p.cache != nil {
		// Expire relative to when the lookup started: the entry never
		// outlives a revocation by more than the TTL.
		memo = p.cache.put(hash, rec, val, start, gen)
	}
	return rec, val, memo, nil
}

// Forget evicts a token (by token.Hash) from the proxy's token cache, so
// that its next use asks the store again. Revocation through this process
// must call it — see ForgetOnRevoke — to take effect at once here; other
// replicas see it within the cache TTL. Safe for concurrent use; a no-op
// without a cache.
func (p *Proxy) Forget(hash string) {
	if p.cache != nil && hash != "" {
		p.cache.forget(hash)
	}
}

// FlushCache evicts every cached token record and the decisions reused
// for them: the next use of any token asks the store again. Called when
// invalidation messages may have been lost (a (re)subscription) and on a
// provider's bulk revocation. Safe for concurrent use.
func (p *Proxy) FlushCache() {
	if p.cache != nil {
		p.cache.flush()
	}
}

// ForgetOnRevoke returns a token.Store that is s except that every Revoke
// made through it also evicts the token from p's cache (after the store
// call, whatever its outcome). Give it to the component that revokes tokens
// in the same process (the exchange's RFC 7009 endpoint), so that a token
// revoked through this sidecar is refused by this sidecar's very next
// request.
func ForgetOnRevoke(s token.Store, p *Proxy) token.Store {
	return &forgettingStore{Store: s, p: p}
}

type forgettingStore struct {
	token.Store
	p *Proxy
}

func (f *forgettingStore) Revoke(ctx context.Context, hash string) (bool, error) {
	existed, err := f.Store.Revoke(ctx, hash)
	f.p.Forget(hash)
	return existed, err
}

// reply answers the request itself, in Buddy's error shape.
func (p *Proxy) reply(w http.ResponseWriter, x *call, status int, code, msg string) {
	x.status, x.code = status, code
	apierr.Write(w, status, msg)
}

// finish records the request's metrics and writes its audit line.
func (p *Proxy) finish(ctx context.Context, x *call) {
	route := x.route
	switch {
	case route != "":
	case x.code == CodeInvalidPath:
		route = "invalid"
	default:
		route = "unmatched"
	}
	if x.authDur == 0 {
		x.authDur = time.Since(x.start)
	}
	p.metrics.ProxyDecision(route, x.status, x.allowed, x.authDur)
	if p.lines != nil {
		p.writeAuditLine(x)
		return
	}
	if p.audit == nil {
		return
	}
	var provider, sub string
	if x.rec != nil {
		provider, sub = x.rec.ProviderID, x.rec.Subject
	}
	h := p.audit.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	// A record without a source PC: Logger.LogAttrs would capture the
	// caller's stack on every request for a field the audit line omits.
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "proxy", 0)
	// One AddAttrs call, so that the record grows its attribute slice once;
	// buf holds every attribute below (17), so that it stays on the stack.
	var buf [auditAttrs]slog.Attr
	attrs := append(buf[:0],
		slog.String("event", "proxy"),
		slog.String("request_id", x.id),
		slog.String("client_request_id", x.clientID), // never a token: clientRequestID
		slog.String("method", x.method),
		slog.String("route", x.route),
		slog.String("path", loggablePath(x.path)),
		slog.Int("status", x.status),
		slog.String("code", x.code),
		slog.String("provider_id", provider),
		slog.String("sub", sub),
		slog.String("workspace", x.workspace),
		slog.String("client_ip", addrString(x.clientIP)),
		slog.Float64("duration_ms", float64(time.Since(x.start).Microseconds())/1000),
		// OPA decision-log names for what means the same (docs/proxy.md).
		slog.String("decision_id", x.id),
		slog.Time("timestamp", x.wall.UTC()),
	)
	if x.revision != "" {
		attrs = append(attrs, slog.Attr{Key: "bundles", Value: p.bundlesValue(x.revision)})
	}
	if x.decided {
		attrs = append(attrs, slog.Attr{Key: "result", Value: resultValue[x.allowed]})
	}
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r)
}

// writeAuditLine writes the audit line of finish's slog path, the same
// attributes in the same order, with p.lines.
func (p *Proxy) writeAuditLine(x *call) {
	if !p.lines.Enabled(slog.LevelInfo) {
		return
	}
	var provider, sub string
	if x.rec != nil {
		provider, sub = x.rec.ProviderID, x.rec.Subject
	}
	l := p.lines.Start(time.Now(), slog.LevelInfo, "proxy")
	l.String("event", "proxy")
	l.String("request_id", x.id)
	l.String("client_request_id", x.clientID)
	l.String("method", x.method)
	l.String("route", x.route)
	l.String("path", loggablePath(x.path))
	l.Int("status", int64(x.status))
	l.String("code", x.code)
	l.String("provider_id", provider)
	l.String("sub", sub)
	l.String("workspace", x.workspace)
	l.String("client_ip", addrString(x.clientIP))
	l.Float("duration_ms", float64(time.Since(x.start).Microseconds())/1000)
	l.String("decision_id", x.id)
	l.Time("timestamp", x.wall.UTC())
	if x.revision != "" {
		l.Group("bundles")
		l.Group(policy.Root)
		l.String("revision", x.revision)
		l.End()
		l.End()
	}
	if x.decided {
		l.Group("result")
		l.Bool("allow", x.allowed)
		l.End()
	}
	_ = p.lines.Write(l)
}

// auditAttrs is the most attributes finish puts in an audit line.
const auditAttrs = 17

// resultValue is the audit line's result, as OPA's decision logs name it.
var resultValue = map[bool]slog.Value{
	true:  slog.GroupValue(slog.Bool("allow", true)),
	false: slog.GroupValue(slog.Bool("allow", false)),
}

// bundlesValue is {"sidecar": {"revision": rev}} (OPA's decision-log
// bundles), built once per revision rather than per request.
func (p *Proxy) bundlesValue(rev string) slog.Value {
	if b := p.bundles.Load(); b != nil && b.rev == rev {
		return b.val
	}
	b := &revisionValue{rev: rev, val: slog.GroupValue(slog.Group(policy.Root, slog.String("revision", rev)))}
	p.bundles.Store(b)
	return b.val
}

type revisionValue struct {
	rev string
	val slog.Value
}

// table returns the compiled route table of snap, building it on the first
// request that sees a new snapshot. Concurrent requests wait for one build.
func (p *Proxy) table(snap *policy.Snapshot) *table {
	if t := p.tbl.Load(); t != nil && t.snap == snap {
		return t
	}
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	if t := p.tbl.Load(); t != nil && t.snap == snap {
		return t
	}
	t := newTable(snap)
	p.tbl.Store(t)
	if pure, why := snap.ProxyDecisionPure(); !pure && p.cache != nil && !p.noMemo {
		p.log.Info("proxy decisions are evaluated for every request under this policy (none is reused)", "revision", snap.Revision, "because", why)
	}
	return t
}

// clientRequestID returns a well-formed incoming X-Request-Id (1-128
// characters of A-Z a-z 0-9 - _ . :), or "". It is recorded in the audit
// line beside the sidecar's own id, never used as it: a client choosing
// the audit's request_id could make its requests look like others'.
func clientRequestID(in string) string {
	n := len(in)
	if n == 0 || n > 128 || hasToken(in) {
		return "" // a token sent there is refused (token_in_request), never logged
	}
	for i := range n {
		c := in[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return ""
		}
	}
	return in
}

// newRequestID makes the sidecar's own request id, a random UUID.
// Its 122 random bits come from math/rand/v2's generator (the runtime's
// ChaCha8, seeded by the system): an id must be unique, not secret, and
// reading crypto/rand on every request showed in the cross-process
// profile (docs/benchmarks.md, issue #17).
func newRequestID() string {
	var u uuid.UUID
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
