package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/exchange"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/proxy"
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
	cfg      *Config
	log      *slog.Logger
	audit    *slog.Logger
	metrics  *metrics.Metrics
	engine   *policy.Engine
	store    token.Store
	verifier *oidc.Verifier
	source   source
	exchange *exchange.Handler
	proxy    *proxy.Proxy

	mainSrv, adminSrv *http.Server
	mainLn, adminLn   net.Listener

	reloadMu   sync.Mutex
	lastErr    atomic.Pointer[string]
	adminToken string
}

// New builds a server from a validated configuration and loads the policy
// once; it fails when the first load fails (nothing to serve). It does not
// listen yet: see Listen and Serve.
func New(ctx context.Context, cfg *Config, o Options) (*Server, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = NewLogger(os.Stderr, cfg.LogLevel)
	}
	if o.Audit == nil {
		o.Audit = o.Logger.With("log", "audit")
	}
	s := &Server{cfg: cfg, log: o.Logger, audit: o.Audit, metrics: metrics.New(), engine: &policy.Engine{}}

	upstreamToken := o.Getenv(cfg.Upstream.TokenEnv)
	if upstreamToken == "" {
		return nil, fmt.Errorf("upstream credential: the variable %s is empty; set it to the API token the sidecar forwards with (upstream.token_env names it)", cfg.Upstream.TokenEnv)
	}
	s.adminToken = o.Getenv(cfg.AdminTokenEnv)
	if s.adminToken == "" {
		s.log.Warn("introspection is disabled: " + cfg.AdminTokenEnv + " is empty (admin_token_env names the variable holding the admin credential)")
	}

	var err error
	if s.store = o.Store; s.store == nil {
		if s.store, err = newStore(cfg, o.Getenv); err != nil {
			return nil, err
		}
	}
	if s.store.Kind() == "memory" {
		s.log.Warn("no redis configured: tokens live in this process's memory; they are neither shared with other instances nor kept across restarts")
	}

	s.verifier, err = oidc.NewVerifier(oidc.Options{
		Leeway:          cfg.OIDC.Leeway.D(),
		RefreshCooldown: cfg.OIDC.RefreshCooldown.D(),
		RefreshInterval: cfg.OIDC.RefreshInterval.D(),
		FetchTimeout:    cfg.OIDC.FetchTimeout.D(),
		Now:             o.Now,
		OnFetch:         s.metrics.JWKSFetch,
	})
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	clients, err := clientip.New(cfg.Trusted)
	if err != nil {
		return nil, err
	}
	s.exchange, err = exchange.New(exchange.Options{
		Engine: s.engine, Verifier: s.verifier, Store: s.store, Clients: clients,
		Metrics: s.metrics, Audit: s.audit, Logger: s.log, Leeway: cfg.OIDC.Leeway.D(),
		RateLimits: exchange.RateLimits{PerIP: cfg.RateLimits.PerIP, PerProvider: cfg.RateLimits.PerProvider, Window: cfg.RateLimits.Window.D()},
		AdminToken: s.adminToken, Now: o.Now, MaxBodyBytes: cfg.Limits.MaxExchangeBytes,
	})
	if err != nil {
		return nil, err
	}
	up, _ := url.Parse(cfg.Upstream.URL)
	s.proxy, err = proxy.New(proxy.Options{
		Engine: s.engine, Store: s.store, Clients: clients, Metrics: s.metrics,
		Upstream: up, UpstreamToken: upstreamToken, Timeout: cfg.Upstream.Timeout.D(),
		IdentityHeaders: cfg.Upstream.IdentityHeaders, Audit: s.audit, Logger: s.log, Now: o.Now,
	})
	if err != nil {
		return nil, err
	}

	s.source = newSource(cfg, &http.Client{Timeout: 30 * time.Second})
	if err := s.Reload(ctx); err != nil {
		return nil, fmt.Errorf("loading policy from %s: %w", s.source.Describe(), err)
	}
	s.mainSrv = &http.Server{
		Handler:           s.MainHandler(),
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
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func newStore(cfg *Config, getenv func(string) string) (token.Store, error) {
	r := cfg.Redis
	if r == nil {
		return token.NewMemory(time.Now), nil
	}
	o := token.RedisOptions{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Username: r.Username,
		TLS: r.TLS, KeyPrefix: r.KeyPrefix, Timeout: r.Timeout.D(), PoolSize: r.PoolSize,
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

// Reload loads the policy source and, if it changed and compiles, swaps it
// in. On any error the serving policy is unchanged and the error is
// reported (log, metric, /readyz detail).
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	start := time.Now()
	b, unchanged, err := s.source.Load(ctx)
	if err == nil && unchanged {
		return nil
	}
	var snap *policy.Snapshot
	if err == nil {
		snap, err = policy.Compile(ctx, b)
	}
	if err != nil {
		msg := err.Error()
		s.lastErr.Store(&msg)
		s.metrics.Reload("", err)
		if cur := s.engine.Current(); cur != nil {
			s.log.Error("policy reload rejected; still serving the previous revision", "source", s.source.Describe(), "revision", cur.Revision, "error", msg)
		}
		return err
	}
	prev := s.engine.Swap(snap)
	s.lastErr.Store(nil)
	s.metrics.Reload(snap.Revision, nil)
	prevRev := ""
	if prev != nil {
		prevRev = prev.Revision
	}
	s.log.Info("policy loaded", "source", s.source.Describe(), "revision", snap.Revision, "previous", prevRev,
		"providers", len(snap.Providers), "routes", len(snap.Routes), "took_ms", time.Since(start).Milliseconds())
	// Fetch the issuers' keys now rather than on the first exchange.
	issuers := map[string]bool{}
	for _, p := range snap.Providers {
		issuers[p.Issuer] = true
	}
	for iss := range issuers {
		go func(iss string) {
			wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.verifier.Warm(wctx, iss); err != nil {
				s.log.Warn("could not prefetch the issuer's keys; exchanges will retry", "issuer", iss, "error", err.Error())
			}
		}(iss)
	}
	return nil
}

// MainHandler serves the exchange endpoints and proxies everything else.
func (s *Server) MainHandler() http.Handler {
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	s.exchange.Register(r)
	r.PathPrefix("/").Handler(s.proxy)
	return r
}

// Admin endpoint paths (deployment files' probes reference them).
const (
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	MetricsPath = "/metrics"
	ReloadPath  = "/_sidecar/reload"
)

// AdminHandler serves /healthz, /readyz, /metrics and introspection.
func (s *Server) AdminHandler() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc(HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(ReadyPath, s.readyz).Methods(http.MethodGet, http.MethodHead)
	r.Handle(MetricsPath, promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	r.HandleFunc(ReloadPath, s.reloadHandler).Methods(http.MethodPost)
	s.exchange.RegisterAdmin(r)
	return r
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"store": s.store.Kind()}
	status := http.StatusOK
	var problems []string
	if snap := s.engine.Current(); snap == nil {
		problems = append(problems, "no policy loaded")
	} else {
		body["revision"] = snap.Revision
		body["providers"] = len(snap.Providers)
		body["loaded_at"] = snap.LoadedAt.UTC().Format(time.RFC3339)
	}
	if e := s.lastErr.Load(); e != nil {
		body["last_reload_error"] = *e // informational: the previous revision still serves
	}
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

// reloadHandler triggers a reload (admin credential required).
func (s *Server) reloadHandler(w http.ResponseWriter, r *http.Request) {
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if s.adminToken == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.adminToken)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "an admin bearer credential is required"})
		return
	}
	if err := s.Reload(r.Context()); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "revision": s.engine.Current().Revision})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revision": s.engine.Current().Revision})
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
// shuts down gracefully: it stops accepting, lets in-flight requests finish
// (up to timeouts.shutdown), and closes the store.
func (s *Server) Serve(ctx context.Context) error {
	if s.mainLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.log.Info("serving", "listen", s.Addr(), "admin_listen", s.AdminAddr(), "upstream", s.cfg.Upstream.URL,
		"store", s.store.Kind(), "policy", s.source.Describe())
	errc := make(chan error, 2)
	go func() { errc <- s.mainSrv.Serve(s.mainLn) }()
	go func() { errc <- s.adminSrv.Serve(s.adminLn) }()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		err := s.source.Watch(wctx, func() {
			if err := s.Reload(wctx); err != nil && wctx.Err() == nil {
				s.log.Warn("reload failed", "error", err.Error())
			}
		})
		if err != nil {
			s.log.Error("policy source watch stopped; changes will not be picked up until restart", "error", err.Error())
		}
	}()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down", "drain_timeout", s.cfg.Timeouts.Shutdown.D().String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeouts.Shutdown.D())
	defer cancel()
	err1 := s.mainSrv.Shutdown(sctx)
	err2 := s.adminSrv.Shutdown(sctx)
	err3 := s.store.Close()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return errors.Join(err1, err2, err3)
}

// NewLogger returns a JSON slog logger at level (debug, info, warn, error).
func NewLogger(w interface{ Write([]byte) (int, error) }, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
