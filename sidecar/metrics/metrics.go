// Package metrics defines oidc-sidecar's Prometheus metrics. Every
// recording method is safe on a nil *Metrics, so components can be used
// without metrics (tests, the CLI).
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the collectors, registered on their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	exchanges        *prometheus.CounterVec
	denials          *prometheus.CounterVec
	exchangeDuration *prometheus.HistogramVec
	proxyDecisions   *prometheus.CounterVec
	proxyDuration    *prometheus.HistogramVec
	upstreamDuration *prometheus.HistogramVec
	jwksFetches      *prometheus.CounterVec
	redisErrors      *prometheus.CounterVec
	overloads        *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	revision         *prometheus.GaugeVec
	policyEval       *prometheus.HistogramVec
	proxyReused      prometheus.Counter
	proxyKids        proxyChildren // children.go
	ops              opsMetrics    // ops.go
	invPublished     prometheus.Counter
	invReceived      prometheus.Counter
	invUp            prometheus.Gauge

	mu             sync.Mutex // guards activeRevision
	activeRevision string
}

const ns = "oidc_sidecar"

// latency buckets from 50µs to 5s.
var buckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// New creates the metrics and registers them, with the Go runtime and
// process collectors, on a new registry.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.initProxyChildren()
	m.exchanges = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "exchanges_total",
		Help: "Token exchanges by provider and outcome (issued, denied, invalid_token, bad_request, rate_limited, unavailable, replayed)."}, []string{"provider", "outcome"})
	m.denials = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "exchange_denials_total",
		Help: "Exchange denials by provider and reason code."}, []string{"provider", "reason"})
	m.exchangeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "exchange_duration_seconds",
		Help: "Time to answer an exchange request.", Buckets: buckets}, []string{"outcome"})
	m.proxyDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "proxy_decisions_total",
		Help: "Proxy decisions by route template and response status."}, []string{"route", "status"})
	m.proxyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "proxy_authorization_duration_seconds",
		Help: "Time to authorize a proxied request (token lookup and policy), by result.", Buckets: buckets}, []string{"result"})
	m.upstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_duration_seconds",
		Help: "Time until the upstream's response headers, by status class.", Buckets: buckets}, []string{"class"})
	m.jwksFetches = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jwks_fetches_total",
		Help: "OIDC discovery and JWKS fetches by issuer, kind and result."}, []string{"issuer", "kind", "result"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_errors_total",
		Help: "Token store (Redis) errors by operation."}, []string{"op"})
	m.overloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_overloads_total",
		Help: "Token store operations refused because this process had more concurrent operations than store connections (not counted in store_errors_total), by operation."}, []string{"op"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "policy_reloads_total",
		Help: "Policy loads by result (ok, error)."}, []string{"result"})
	m.revision = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "policy_revision_info",
		Help: "The active bundle revision (value 1)."}, []string{"revision"})
	m.policyEval = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "policy_eval_duration_seconds",
		Help: "OPA evaluation time by query (exchange, proxy).", Buckets: buckets}, []string{"query"})
	m.proxyReused = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "proxy_decisions_reused_total",
		Help: "Proxy decisions reused for a cached token's repeated method, path and client address (no OPA evaluation)."})
	m.invPublished = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "invalidations_published_total",
		Help: "Invalidation events (token revoked, provider tokens revoked or provider removed) this replica published."})
	m.invReceived = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "invalidations_received_total",
		Help: "Invalidation events this replica received (its own included)."})
	m.invUp = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "invalidation_subscription_up",
		Help: "1 while the invalidation subscription is established, 0 while it is down (revocations elsewhere then take effect here within the 1s token cache TTL)."})
	m.Registry.MustRegister(m.invPublished, m.invReceived, m.invUp, m.proxyReused, m.exchanges, m.denials, m.exchangeDuration, m.proxyDecisions, m.proxyDuration,
		m.upstreamDuration, m.jwksFetches, m.redisErrors, m.overloads, m.reloads, m.revision, m.policyEval,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.initOps()
	return m
}

// Exchange records one exchange: its provider ("" for unknown), outcome,
// denial reason codes and duration.
func (m *Metrics) Exchange(provider, outcome string, reasons []string, d time.Duration) {
	if m == nil {
		return
	}
	m.exchanges.WithLabelValues(provider, outcome).Inc()
	for _, r := range reasons {
		m.denials.WithLabelValues(provider, r).Inc()
	}
	m.exchangeDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// ProxyDecision records a proxied request's decision.
func (m *Metrics) ProxyDecision(route string, status int, allowed bool, d time.Duration) {
	if m == nil {
		return
	}
	m.proxyKids.decisions.get(routeStatus{route, status}).Inc()
	m.proxyKids.duration.get(allowed).Observe(d.Seconds())
}

// Upstream records the upstream's time to response headers.
func (m *Metrics) Upstream(status int, d time.Duration) {
	if m == nil {
		return
	}
	class := 0 // "error"
	if status >= 100 && status <= 999 {
		class = status / 100
	}
	m.proxyKids.upstream.get(class).Observe(d.Seconds())
}

// JWKSFetch records a discovery or JWKS fetch (kind "discovery" or "jwks").
func (m *Metrics) JWKSFetch(issuer, kind string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.jwksFetches.WithLabelValues(issuer, kind, result).Inc()
}

// StoreError records a token store failure.
func (m *Metrics) StoreError(op string) {
	if m == nil {
		return
	}
	m.redisErrors.WithLabelValues(op).Inc()
}

// StoreOverload records a token store operation that failed for want of a
// free connection (token.ErrOverloaded).
func (m *Metrics) StoreOverload(op string) {
	if m == nil {
		return
	}
	m.overloads.WithLabelValues(op).Inc()
}

// Reload records a policy load; on success the revision gauge moves to rev.
func (m *Metrics) Reload(rev string, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Set the new series before deleting the old one, so that a scrape in
	// between never sees no revision at all.
	m.revision.WithLabelValues(rev).Set(1)
	if m.activeRevision != "" && m.activeRevision != rev {
		m.revision.DeleteLabelValues(m.activeRevision)
	}
	m.activeRevision = rev
}

// ProxyDecisionReused counts a proxy decision reused without evaluation.
func (m *Metrics) ProxyDecisionReused() {
	if m == nil {
		return
	}
	m.proxyReused.Inc()
}

// InvalidationPublished counts an invalidation event published.
func (m *Metrics) InvalidationPublished() {
	if m != nil {
		m.invPublished.Inc()
	}
}

// InvalidationReceived counts an invalidation event received.
func (m *Metrics) InvalidationReceived() {
	if m != nil {
		m.invReceived.Inc()
	}
}

// InvalidationSubscription sets the subscription gauge.
func (m *Metrics) InvalidationSubscription(up bool) {
	if m == nil {
		return
	}
	if up {
		m.invUp.Set(1)
	} else {
		m.invUp.Set(0)
	}
}

// PolicyEval records an OPA evaluation's duration.
func (m *Metrics) PolicyEval(query string, d time.Duration) {
	if m == nil {
		return
	}
	m.policyEval.WithLabelValues(query).Observe(d.Seconds())
}

func statusLabel(s int) string {
	const digits = "0123456789"
	if s < 100 || s > 999 {
		return "other"
	}
	return string([]byte{digits[s/100], digits[s/10%10], digits[s%10]})
}
