package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/admin"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/exchange"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/logline"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/proxy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/revocation"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/sameorigin"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Options are what the caller of New provides besides the configuration.
type Options struct {
	Logger *slog.Logger        // operational logs; default JSON on stderr at the config's level
	Audit  *slog.Logger        // audit events; default the same handler with event fields
	Getenv func(string) string // default os.Getenv
	Now    func() time.Time    // default time.Now
	// Store replaces the store the configuration describes (tests, demo).
	Store token.Store
}

// Server is a running oidc-sidecar.
type Server struct {
	cfg    *Config
	log    *slog.Logger
	logBuf *logBuffer // log_flush_interval's buffer (nil: lines written at once)
	audit  *slog.Logger
	// auditLines writes the proxy's audit line when audit is the server's
	// own logger (nil otherwise: the proxy uses audit).
	auditLines *logline.Writer
	metrics    *metrics.Metrics
	engine     *policy.Engine
	store      token.Store
	verifier   *oidc.Verifier
	source     source
	exchange   *exchange.Handler
	proxy      *proxy.Proxy
	admin      *admin.Handler // the admin API and console (sidecar/admin)

	mainSrv, adminSrv *http.Server
	mainLn, adminLn   net.Listener

	// bg bounds background work (issuer warm-ups); cancelled when Serve ends.
	bg     context.Context
	stopBg context.CancelFunc

	reloadMu sync.Mutex  // serializes Reload; requests never take it
	seen     seenContent // the content the last completed load processed (guarded by reloadMu)
	served   string      // the version of the content being served (guarded by reloadMu)
	lastErr  atomic.Pointer[string]

	adminDigest []byte // SHA-256 of the admin credential; nil: none configured

	// TLS (tls.go): nil when the listener serves plain HTTP. A verified
	// client certificate on the admin listener is an admin credential when
	// admin_tls.client_ca_file is set.
	mainCerts, adminCerts *certReloader
	// hub carries invalidations between replicas (replicas.go).
	hub *revocation.Hub
	// pendingRaise: removed providers whose epoch raise failed (guarded by reloadMu).
	pendingRaise map[string]bool
	bundleMu     sync.Mutex
	bundleCache  servedBundle
}

// seenContent is the source content a reload last processed: its version
// (content hash), its ETag, and why it was rejected (nil if it serves).
type seenContent struct {
	version, etag string
	err           error
}

// New builds a server from a validated configuration and loads the policy
// once; it fails when the first load fails (nothing to serve). It does not
// listen yet: see Listen and Serve.
func New(ctx context.Context, cfg *Config, o Options) (_ *Server, err error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var logBuf *logBuffer
	var logOut io.Writer // the log's writer, when the server makes the logger
	if o.Logger == nil {
		logOut = os.Stderr
		if d := cfg.LogFlushInterval.D(); d > 0 {
			logBuf = newLogBuffer(os.Stderr, d) // closed by Serve, or below on an error
			defer func() {
				if err != nil {
					_ = logBuf.Close()
				}
			}()
			logOut = logBuf
		}
		o.Logger = NewLogger(logOut, cfg.LogLevel)
	}
	// The proxy's audit line (one per request) is written by logline, the
	// same bytes as the audit logger's JSONHandler at a fraction of the CPU,
	// when that logger is the server's own.
	var auditLines *logline.Writer
	if o.Audit == nil {
		o.Audit = o.Logger.With("log", "audit")
		if logOut != nil {
			auditLines = logline.New(logOut, parseLevel(cfg.LogLevel)).With("log", "audit")
		}
	}
	s := &Server{cfg: cfg, log: o.Logger, logBuf: logBuf, audit: o.Audit, auditLines: auditLines, metrics: metrics.New(), engine: &policy.Engine{}}
	for _, w := range cfg.Warnings {
		s.log.Warn(w)
	}
	if logBuf != nil {
		s.log.Info("log lines are buffered and written out together (log_flush_interval); a crash without a graceful stop loses at most the last interval's lines",
			"log_flush_interval", cfg.LogFlushInterval.D().String())
	}

	upstreamToken := o.Getenv(cfg.Upstream.TokenEnv)
	if upstreamToken == "" {
		return nil, fmt.Errorf("upstream credential: the variable %s is empty; set it to the API token the sidecar forwards with (upstream.token_env names it)", cfg.Upstream.TokenEnv)
	}
	tm := newTLSMetrics(s.metrics.Registry)
	if cfg.TLS.Enabled() {
		if s.mainCerts, err = newCertReloader("main", cfg.TLS.CertFile, cfg.TLS.KeyFile, "", s.log, tm); err != nil {
			return nil, err
		}
	}
	if cfg.AdminTLS.Enabled() {
		if s.adminCerts, err = newCertReloader("admin", cfg.AdminTLS.CertFile, cfg.AdminTLS.KeyFile, cfg.AdminTLS.ClientCAFile, s.log, tm); err != nil {
			return nil, err
		}
	}
	adminCert := cfg.AdminTLS.ClientCAFile != ""
	adminToken := o.Getenv(cfg.AdminTokenEnv)
	if adminToken == "" && adminCert {
		s.log.Info("the admin credential is a client certificate signed by admin_tls.client_ca_file (" + cfg.AdminTokenEnv + " is empty)")
	} else if adminToken == "" {
		s.log.Warn("introspection and " + ReloadPath + " are disabled: " + cfg.AdminTokenEnv + " is empty (admin_token_env names the variable holding the admin credential)")
	}
	if cfg.Pprof {
		s.log.Warn("pprof is on: " + PprofPath + " on admin_listen serves profiles (admin credential required); they reveal internals, keep it off unless profiling")
	}
	if adminToken != "" {
		d := sha256.Sum256([]byte(adminToken))
		s.adminDigest = d[:]
	}

	if s.store = o.Store; s.store == nil {
		if cfg.Redis != nil {
			routeRedisLogs(s.log)
		}
		if s.store, err = newStore(cfg, o.Getenv, o.Now); err != nil {
			return nil, err
		}
		if rs, ok := s.store.(*token.RedisStore); ok {
			rs.Client().AddHook(s.metrics.RedisHook()) // oidc_sidecar_store_command_duration_seconds
		}
		// A store New made is closed again if New fails.
		defer func() {
			if err != nil {
				_ = s.store.Close()
			}
		}()
	}
	if s.hub, err = newHub(s.store, s, o.Now); err != nil {
		return nil, err
	}
	{
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.hub.Load(lctx); err != nil {
			s.log.Warn("could not read the providers' revocation epochs at start-up; retrying every second", "error", err.Error())
		}
		cancel()
	}
	if s.store.Kind() == "memory" {
		s.log.Warn("no redis configured: tokens live in this process's memory; they are neither shared with other instances nor kept across restarts")
	}

	// oidc.leeway: 0s means none; the oidc and exchange packages read 0 as
	// "the default" and a negative value as none.
	leeway := cfg.OIDC.Leeway.D()
	if leeway == 0 {
		leeway = -1
	}
	s.verifier, err = oidc.NewVerifier(oidc.Options{
		Leeway:          leeway,
		RefreshCooldown: cfg.OIDC.RefreshCooldown.D(),
		RefreshInterval: cfg.OIDC.RefreshInterval.D(),
		FetchTimeout:    cfg.OIDC.FetchTimeout.D(),
		Now:             o.Now,
		OnFetch:         s.metrics.JWKSFetch,
	})
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	s.bg, s.stopBg = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.stopBg()
		}
	}()
	decisions := s.newDecisions()
	s.audit = tapAudit(s.audit, decisions) // the console's recent decisions
	var clients *clientip.Resolver
	if clients, err = clientip.New(cfg.Trusted); err != nil {
		return nil, err
	}
	up, _ := url.Parse(cfg.Upstream.URL)
	s.proxy, err = proxy.New(proxy.Options{
		Engine: s.engine, Store: s.store, Clients: clients, Metrics: s.metrics,
		Upstream: up, UpstreamToken: upstreamToken, Timeout: cfg.Upstream.Timeout.D(),
		IdentityHeaders: cfg.Upstream.IdentityHeaders, NoDirectPath: !cfg.DirectEnabled(), Audit: s.audit, AuditLines: s.auditLines, Logger: s.log, Now: o.Now,
		Ended: s.hub.Ended,
	})
	if err != nil {
		return nil, err
	}

	s.hub.OnInvalidate(s.proxy.Forget, s.proxy.FlushCache)

	s.exchange, err = exchange.New(exchange.Options{
		Engine: s.engine, Verifier: s.verifier, Clients: clients,
		// A revocation here drops the token from this proxy's cache at once
		// and is published to every replica (sidecar/revocation); records
		// are stamped with their provider's revocation epoch.
		Store:   s.hub.Store(s.store),
		Metrics: s.metrics, Audit: s.audit, Logger: s.log, Leeway: leeway,
		RateLimits: exchange.RateLimits{PerIP: cfg.RateLimits.PerIP, PerProvider: cfg.RateLimits.PerProvider, Window: cfg.RateLimits.Window.D(), IPv6Prefix: cfg.RateLimits.IPv6Prefix},
		AdminToken: adminToken, Now: o.Now, MaxBodyBytes: cfg.Limits.MaxExchangeBytes,
		BuddyResponse: cfg.BuddyResponse, AdminClientCert: adminCert,
		BodyTimeout: cfg.Timeouts.ExchangeBody.D(),
	})
	if err != nil {
		return nil, err
	}
	s.source = newSource(cfg, newBundleClient())
	s.admin = s.newAdmin(decisions)
	if cfg.BundleTokenEnv != "" {
		cred := o.Getenv(cfg.BundleTokenEnv)
		if cred == "" {
			s.stopBg()
			return nil, fmt.Errorf("bundle credential: bundle_token_env names %s, which is empty; set it to the bearer credential of the bundle URL", cfg.BundleTokenEnv)
		}
		if us, ok := s.source.(*urlSource); ok {
			us.bearer = cred
		}
	}
	if err = s.Reload(ctx); err != nil {
		s.stopBg()
		err = fmt.Errorf("loading policy from %s: %w", s.source.Describe(), err)
		return nil, err
	}
	s.mainSrv = &http.Server{
		// guardFraming needs the framingConn that Serve's listener wrapper
		// puts under each connection (framing.go).
		Handler:           s.guardFraming(s.MainHandler()),
		ConnContext:       framingConnContext,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		ReadTimeout:       cfg.Timeouts.Read.D(),
		WriteTimeout:      cfg.Timeouts.Write.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.adminSrv = &http.Server{
		Handler:           s.AdminHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.metrics.SetStatus(s.status)
	return s, nil
}

// status is what every /metrics scrape reports as oidc_sidecar_ready,
// oidc_sidecar_token_store_up and oidc_sidecar_policy_last_reload_successful:
// the checks /readyz makes, and whether the latest load was accepted.
func (s *Server) status() metrics.Status {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.store.Ping(ctx)
	if err != nil {
		s.metrics.StoreError("ping")
	}
	return metrics.Status{PolicyLoaded: s.engine.Current() != nil, StoreUp: err == nil, LastReloadOK: s.lastErr.Load() == nil}
}

func newStore(cfg *Config, getenv func(string) string, now func() time.Time) (token.Store, error) {
	r := cfg.Redis
	if r == nil {
		return token.NewMemory(now), nil
	}
	o := token.RedisOptions{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Username: r.Username,
		TLS: r.TLS, KeyPrefix: r.KeyPrefix, Timeout: r.Timeout.D(), PoolSize: r.PoolSize,
		MinReplicasAck: r.MinReplicasAck,
	}
	if r.PasswordEnv != "" {
		o.Password = getenv(r.PasswordEnv)
		if o.Password == "" {
			return nil, fmt.Errorf("redis.password_env names %s, which is empty", r.PasswordEnv)
		}
	}
	st, err := token.NewRedis(o)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	return st, nil
}

// Reload loads the policy source and, if its content changed and
// compiles, swaps it in atomically: a request in flight keeps the snapshot
// it started with, and no request ever sees a half-loaded policy. On any
// error the serving policy is unchanged and the error is reported (log,
// policy_reloads_total{result="error"}, /readyz last_reload_error).
//
// Content that was already processed is not compiled again: an ETag
// answered 304, or identical bytes. Reload is safe to call concurrently;
// calls are serialized.
func (s *Server) Reload(ctx context.Context) error {
	_, err := s.reload(ctx)
	return err
}

// reload is Reload, also telling whether a new snapshot was swapped in.
func (s *Server) reload(ctx context.Context) (changed bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	start := time.Now()
	cur := s.engine.Current()
	res, err := s.source.Load(ctx, s.seen.etag)
	if err != nil && ctx.Err() != nil { // shutdown or a caller's deadline: nothing learnt
		return false, fmt.Errorf("reload interrupted: %w", err)
	}
	if err != nil && res.version == "" {
		s.reject(cur, "policy source could not be loaded", err)
		return false, err
	}
	unchanged := res.notModified || res.version == s.seen.version
	if !unchanged && err == nil && cur != nil && res.version == s.served {
		// Back to the content being served (e.g. a bad edit reverted).
		s.seen = seenContent{version: res.version, etag: res.etag}
		unchanged = true
	}
	if unchanged {
		if s.seen.err != nil { // still the content rejected last time; reported then
			msg := s.seen.err.Error()
			s.lastErr.Store(&msg)
			return false, s.seen.err
		}
		if s.lastErr.Load() != nil && cur != nil {
			s.log.Info("policy source is healthy again; the serving revision is current", "source", s.source.Describe(), "revision", cur.Revision)
		}
		s.lastErr.Store(nil)
		return false, nil
	}
	for _, w := range res.warnings {
		s.log.Warn("providers file warning", "warning", w)
	}
	var snap *policy.Snapshot
	if err == nil {
		snap, err = policy.Compile(ctx, res.bundle)
	}
	if err != nil {
		if ctx.Err() != nil { // a cancelled compile says nothing about the content
			return false, fmt.Errorf("reload interrupted: %w", err)
		}
		s.seen = seenContent{version: res.version, etag: res.etag, err: err}
		s.reject(cur, "policy rejected", err)
		return false, err
	}
	if err = s.checkReadded(ctx, snap); err != nil {
		s.seen = seenContent{version: res.version, etag: res.etag, err: err}
		s.reject(cur, "policy rejected", err)
		return false, err
	}
	s.seen = seenContent{version: res.version, etag: res.etag}
	s.served = res.version
	prev := s.engine.Swap(snap)
	if prev != nil {
		s.raiseRemoved(ctx, removedProviders(prev, snap))
	}
	s.lastErr.Store(nil)
	s.metrics.Reload(snap.Revision, nil)
	prevRev := ""
	var prevProviders map[string]*provider.Provider
	if prev != nil {
		prevRev, prevProviders = prev.Revision, prev.Providers
	}
	s.log.Info("policy loaded", "source", s.source.Describe(), "revision", snap.Revision, "previous", prevRev,
		"providers", len(snap.Providers), "routes", len(snap.Routes), "took_ms", time.Since(start).Milliseconds())

	// Fetch the keys of new providers' issuers now rather than on their
	// first exchange. Known issuers are left alone: their keys are cached
	// (or their last failure is being retried by exchanges).
	issuers := map[string]bool{}
	for id, p := range snap.Providers {
		if old, ok := prevProviders[id]; ok && old.Issuer == p.Issuer {
			continue
		}
		issuers[p.Issuer] = true
	}
	for iss := range issuers {
		go s.warm(iss)
	}
	return true, nil
}

// reject reports a failed load. The serving snapshot (cur) is untouched.
func (s *Server) reject(cur *policy.Snapshot, what string, err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
	s.metrics.Reload("", err)
	if cur == nil { // the first load: New returns the error
		return
	}
	s.log.Error(what+"; still serving the previous revision", "source", s.source.Describe(),
		"revision", cur.Revision, "error", msg)
}

// warm prefetches an issuer's discovery document and keys.
func (s *Server) warm(issuer string) {
	ctx, cancel := context.WithTimeout(s.bg, 2*s.cfg.OIDC.FetchTimeout.D()+time.Second)
	defer cancel()
	if err := s.verifier.Warm(ctx, issuer); err != nil && s.bg.Err() == nil {
		s.log.Warn("could not prefetch the issuer's keys; exchanges will retry", "issuer", issuer, "error", err.Error())
	}
}

// MainHandler serves the exchange endpoints and proxies everything else.
func (s *Server) MainHandler() http.Handler {
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	s.exchange.Register(r)
	r.PathPrefix("/").Handler(s.proxy)
	// A target that is no path (CONNECT host:443, an absolute URL without
	// one) matches no route: the proxy refuses it in Buddy's error shape,
	// with an audit line, instead of mux's plain-text 404.
	r.NotFoundHandler = s.proxy
	own := make(map[string]bool, len(exchange.Paths))
	for _, p := range exchange.Paths {
		own[p] = true
	}
	return &mainRouter{r: r, own: own, proxy: s.proxy}
}

// mainRouter hands a request whose path is not one of the exchange's
// (exchange.Paths, compared as mux compares them: the escaped path, exactly)
// straight to the proxy; the others go through mux. mux would match the
// proxied request against each exchange route's regular expression and
// then copy the request twice to put the match in its context, which the
// proxy never reads (issue #17). TestMainRouterRoutesAsMux pins that both
// choose the same handler.
type mainRouter struct {
	r     *mux.Router
	own   map[string]bool
	proxy http.Handler
}

func (m *mainRouter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !m.own[req.URL.EscapedPath()] {
		m.proxy.ServeHTTP(w, req)
		return
	}
	m.r.ServeHTTP(w, req)
}

// Admin listener limits: a reload (a bundle download and a compile) must
// fit in the write timeout.
const (
	reloadTimeout     = 60 * time.Second
	adminWriteTimeout = reloadTimeout + 10*time.Second
)

// Admin endpoint paths (deployment files' probes reference them).
const (
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	MetricsPath = "/metrics"
	ReloadPath  = "/_sidecar/reload"
)

// AdminHandler serves /healthz, /readyz, /metrics, introspection, the
// admin API and the provider console; /debug/pprof/ with pprof: true.
func (s *Server) AdminHandler() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc(HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(ReadyPath, s.readyz).Methods(http.MethodGet, http.MethodHead)
	r.Handle(MetricsPath, promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	r.HandleFunc(ReloadPath, s.reloadHandler).Methods(http.MethodPost)
	r.HandleFunc(BundlePath, s.serveBundle).Methods(http.MethodGet, http.MethodHead)
	if s.cfg.Pprof {
		s.registerPprof(r)
	}
	s.exchange.RegisterAdmin(r)
	s.admin.Register(r) // /_sidecar/admin/v1/… and the console at /
	return r
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"store": s.store.Kind(), "source": s.source.Describe()}
	status := http.StatusOK
	var problems []string
	if snap := s.engine.Current(); snap == nil {
		problems = append(problems, "no policy loaded")
	} else {
		body["revision"] = snap.Revision
		body["providers"] = len(snap.Providers)
		body["loaded_at"] = snap.LoadedAt.UTC().Format(time.RFC3339)
		if failing, n, lastErr := snap.Failing(); failing {
			problems = append(problems, fmt.Sprintf("revision %s has failed its last %d policy evaluations, with no success since (every exchange or proxied request is a 503); last error: %s", snap.Revision, n, lastErr))
		}
	}
	if e := s.lastErr.Load(); e != nil {
		body["last_reload_error"] = *e // informational: the previous revision still serves
	}
	body["invalidation"] = s.hub.Status() // informational: while down, the 1 s cache bound holds
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.metrics.StoreError("ping")
		problems = append(problems, "token store unreachable: "+err.Error())
	}
	if len(problems) > 0 {
		status = http.StatusServiceUnavailable
		body["status"] = "not ready"
		body["problems"] = problems
	} else {
		body["status"] = "ready"
	}
	writeJSON(w, status, body)
}

// reloadHandler triggers a reload (admin bearer credential required):
// 200 {"revision", "changed"} when the source's current content serves,
// 422 {"error", "revision"} when it was rejected (the revision still serving).
func (s *Server) reloadHandler(w http.ResponseWriter, r *http.Request) {
	// A browser holding the admin client certificate presents it on a
	// cross-site form post too: such a request is refused whatever the
	// credential.
	if msg := sameorigin.Check(r); msg != "" {
		writeJSON(w, http.StatusForbidden, map[string]any{"error": msg})
		return
	}
	if !s.adminAuthorized(r) {
		s.unauthorized(w)
		return
	}
	// A client that gives up must not abort a compile half-way (that would
	// count as a failed reload); bound it instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), reloadTimeout)
	defer cancel()
	changed, err := s.reload(ctx)
	rev := ""
	if cur := s.engine.Current(); cur != nil {
		rev = cur.Revision
	}
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "revision": rev})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revision": rev, "changed": changed})
}

// adminAuthorized checks Authorization: Bearer <admin credential>, or a
// client certificate the admin listener verified (admin_tls.client_ca_file).
func (s *Server) adminAuthorized(r *http.Request) bool {
	if s.cfg.AdminTLS.ClientCAFile != "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if s.adminDigest == nil {
		return false
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	return subtle.ConstantTimeCompare(d[:], s.adminDigest) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Listen opens both listeners (so that ":0" ports are known before Serve).
func (s *Server) Listen() error {
	var err error
	if s.mainLn, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	if s.adminLn, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
		s.mainLn.Close()
		return fmt.Errorf("admin_listen %s: %w", s.cfg.AdminListen, err)
	}
	return nil
}

// Addr and AdminAddr are the listeners' addresses after Listen.
func (s *Server) Addr() string      { return s.mainLn.Addr().String() }
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Engine exposes the policy engine (demo, tests).
func (s *Server) Engine() *policy.Engine { return s.engine }

// Store exposes the token store (demo, tests).
func (s *Server) Store() token.Store { return s.store }

// Serve serves until ctx ends, watching the policy source for changes, then
// shuts down gracefully: it stops the watch, closes the listeners (new
// connections are refused), lets in-flight requests finish (up to
// timeouts.shutdown, after which the remaining connections are closed), and
// closes the store. It returns nil after a shutdown asked for by ctx.
func (s *Server) Serve(ctx context.Context) error {
	if s.logBuf != nil {
		defer s.logBuf.Close() // last: every line logged, "stopped" included, is written
	}
	defer s.stopBg()
	if s.mainLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	serving := []any{"listen", s.Addr(), "tls", s.mainCerts != nil, "admin_listen", s.AdminAddr(), "admin_tls", s.adminCerts != nil, "upstream", redactURL(s.cfg.Upstream.URL),
		"upstream_direct", s.proxy.DirectPath(), "store", s.store.Kind(), "policy", s.source.Describe()}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := s.store.Ping(pctx); err != nil {
		s.log.Warn("serving, but the token store does not answer: exchanges and proxied requests get 503 and /readyz says not ready until it does",
			append(serving, "error", err.Error())...)
	} else {
		s.log.Info("serving", serving...)
	}
	cancel()
	// With TLS the framing guard wraps the TLS connection, so it reads the
	// decrypted HTTP bytes.
	mainLn, adminLn := s.mainLn, s.adminLn
	if s.mainCerts != nil {
		mainLn = tlsListener{mainLn, s.mainCerts.config()}
		go s.mainCerts.watch(s.bg)
	}
	if s.adminCerts != nil {
		adminLn = tls.NewListener(adminLn, s.adminCerts.config())
		go s.adminCerts.watch(s.bg)
	}
	go paceGC(s.bg, s.log) // gcpace.go
	errc := make(chan error, 2)
	go func() {
		errc <- s.mainSrv.Serve(framingListener{Listener: mainLn, maxHeaderBytes: s.mainSrv.MaxHeaderBytes})
	}()
	go func() { errc <- s.adminSrv.Serve(adminLn) }()

	hctx, stopHub := context.WithCancel(context.Background())
	hubDone := s.runHub(hctx)

	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		// Reload logs and counts its own failures.
		err := s.source.Watch(wctx, func() { _ = s.Reload(wctx) }, s.log)
		if err != nil && wctx.Err() == nil {
			s.log.Error("policy source watch stopped; changes will not be picked up until a restart or "+ReloadPath, "source", s.source.Describe(), "error", err.Error())
		}
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		s.log.Error("listener failed; shutting down", "error", serveErr.Error())
	}
	stopWatch()
	<-watchDone

	drain := s.cfg.Timeouts.Shutdown.D()
	s.log.Info("shutting down: refusing new connections, draining in-flight requests", "drain_timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	var wg sync.WaitGroup
	shutdown := func(srv *http.Server, name string) {
		defer wg.Done()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("in-flight requests did not finish in time; closing their connections", "listener", name,
				"drain_timeout", drain.String(), "error", err.Error())
			_ = srv.Close()
		}
	}
	wg.Add(2)
	go shutdown(s.mainSrv, "listen")
	go shutdown(s.adminSrv, "admin_listen")
	wg.Wait()
	stopHub()
	<-hubDone
	closeErr := s.store.Close()
	if closeErr != nil {
		closeErr = fmt.Errorf("closing the token store: %w", closeErr)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return errors.Join(serveErr, closeErr)
	}
	s.log.Info("stopped")
	return closeErr
}

// NewLogger returns a JSON slog logger at level (debug, info, warn, error).
func NewLogger(w interface{ Write([]byte) (int, error) }, level string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: parseLevel(level)}))
}

// parseLevel is the slog level of a log_level value (validated by config).
func parseLevel(level string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return l
}
