package metrics

// Series the shipped Grafana dashboard and Prometheus alert rules (deploy/)
// rely on besides the request metrics: readiness as /readyz computes it,
// whether the latest policy load was accepted, policy evaluation errors and
// the token store's Redis round-trip time.

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

type opsMetrics struct {
	evalErrors    *prometheus.CounterVec
	storeDuration *prometheus.HistogramVec
	status        *statusCollector
}

// Label values created at start, so that the series exist (at 0) before the
// first event: rate() and increase() then see the first error too, and
// dashboards show 0 rather than "no data".
var (
	storeOps     = []string{"get", "save", "claim", "unclaim", "revoke", "rate_limit", "ping"}
	evalQueries  = []string{"exchange", "proxy"}
	reloadResult = []string{"ok", "error"}
)

func (m *Metrics) initOps() {
	m.ops.evalErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "policy_eval_errors_total",
		Help: "OPA evaluations that failed (an error or no decision; the request was refused), by query (exchange, proxy)."}, []string{"query"})
	m.ops.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "store_command_duration_seconds",
		Help: "Token store (Redis) round-trip time by command (\"pipeline\" for a pipelined batch), errors included.", Buckets: buckets}, []string{"command"})
	m.ops.status = &statusCollector{}
	for _, q := range evalQueries {
		m.ops.evalErrors.WithLabelValues(q)
	}
	for _, op := range storeOps {
		m.redisErrors.WithLabelValues(op)
	}
	for _, r := range reloadResult {
		m.reloads.WithLabelValues(r)
	}
	m.Registry.MustRegister(m.ops.evalErrors, m.ops.storeDuration, m.ops.status)
}

// PolicyEvalError counts an OPA evaluation that failed.
func (m *Metrics) PolicyEvalError(query string) {
	if m == nil {
		return
	}
	m.ops.evalErrors.WithLabelValues(query).Inc()
}

// Status is the sidecar's health, computed at each scrape.
type Status struct {
	PolicyLoaded bool // a policy snapshot serves
	StoreUp      bool // the token store answered a ping
	LastReloadOK bool // the latest policy load was accepted (or the source is back to the serving content)
}

// SetStatus makes every scrape call f and export oidc_sidecar_ready (what
// /readyz answers: 1 for 200), oidc_sidecar_token_store_up and
// oidc_sidecar_policy_last_reload_successful. Before it is called, those
// series are absent.
func (m *Metrics) SetStatus(f func() Status) {
	if m == nil {
		return
	}
	m.ops.status.f.Store(&f)
}

var (
	readyDesc = prometheus.NewDesc(ns+"_ready",
		"1 when the admin listener's /readyz answers 200 (a policy serves and the token store answers a ping), else 0; computed at each scrape.", nil, nil)
	storeUpDesc = prometheus.NewDesc(ns+"_token_store_up",
		"1 when the token store answered a ping at this scrape, else 0.", nil, nil)
	reloadOKDesc = prometheus.NewDesc(ns+"_policy_last_reload_successful",
		"1 when the latest policy load was accepted, 0 when it was rejected (an older revision still serves).", nil, nil)
)

type statusCollector struct {
	f atomic.Pointer[func() Status]
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- readyDesc
	ch <- storeUpDesc
	ch <- reloadOKDesc
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.f.Load()
	if f == nil {
		return
	}
	st := (*f)()
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, b2f(st.PolicyLoaded && st.StoreUp))
	ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, b2f(st.StoreUp))
	ch <- prometheus.MustNewConstMetric(reloadOKDesc, prometheus.GaugeValue, b2f(st.LastReloadOK))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// RedisHook returns a go-redis hook that times every command the token
// store sends (oidc_sidecar_store_command_duration_seconds).
func (m *Metrics) RedisHook() redis.Hook {
	if m == nil {
		return redisHook{}
	}
	return redisHook{m.ops.storeDuration}
}

type redisHook struct{ h *prometheus.HistogramVec }

func (redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	if r.h == nil {
		return next
	}
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		r.h.WithLabelValues(cmd.Name()).Observe(time.Since(start).Seconds())
		return err
	}
}

func (r redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if r.h == nil {
		return next
	}
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		r.h.WithLabelValues("pipeline").Observe(time.Since(start).Seconds())
		return err
	}
}
