package policy

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
)

// The two entry points every bundle must define.
const (
	ExchangeQuery = "data.sidecar.exchange.decision"
	ProxyQuery    = "data.sidecar.proxy.decision"
)

// Snapshot is one compiled bundle: the prepared queries, the providers and
// the route table it describes. It is immutable; a reload makes a new one.
type Snapshot struct {
	Revision  string
	LoadedAt  time.Time
	Providers map[string]*provider.Provider
	Routes    []routes.Route
	Settings  Settings
	Bundle    *bundle.Bundle

	exchange   rego.PreparedEvalQuery
	proxy      rego.PreparedEvalQuery
	routeTerms map[routeKey]routeTermEntry // input.route of each route, made once

	proxyPure   bool   // see ProxyDecisionPure
	proxyImpure string // why not

	health evalHealth
}

// FailingAfter is the number of consecutive failed evaluations (errors or
// undefined decisions, with no success between them) after which a
// snapshot reports itself failing (Snapshot.Failing; /readyz).
const FailingAfter = 20

// evalHealth counts a snapshot's evaluations that failed in a row.
type evalHealth struct {
	failures atomic.Int64 // since the last success
	lastErr  atomic.Pointer[string]
}

func (h *evalHealth) record(err error) {
	if err == nil {
		if h.failures.Load() != 0 { // read first: no shared write per success
			h.failures.Store(0)
		}
		return
	}
	msg := err.Error()
	h.lastErr.Store(&msg)
	h.failures.Add(1)
}

// Failing reports whether the snapshot's last FailingAfter evaluations or
// more all failed (none succeeded since), with how many and the last
// error. A revision that decides nothing is then visible in /readyz.
func (s *Snapshot) Failing() (failing bool, n int64, lastErr string) {
	n = s.health.failures.Load()
	if p := s.health.lastErr.Load(); p != nil {
		lastErr = *p
	}
	return n >= FailingAfter, n, lastErr
}

// Engine serves decisions from the current snapshot and swaps in new ones
// atomically. The zero value serves nothing: every decision fails closed.
type Engine struct {
	cur atomic.Pointer[Snapshot]
}

// Current returns the snapshot being served, or nil before the first load.
// A request should take it once and use it throughout, so its route match
// and its decision come from the same bundle.
func (e *Engine) Current() *Snapshot { return e.cur.Load() }

// Swap makes s the served snapshot and returns the previous one.
func (e *Engine) Swap(s *Snapshot) *Snapshot { return e.cur.Swap(s) }

// Exchange evaluates the exchange decision. An evaluation error or an
// undefined result is an error: the caller must deny.
func (s *Snapshot) Exchange(ctx context.Context, in ExchangeInput) (*ExchangeDecision, error) {
	d, err := s.exchangeDecision(ctx, in)
	s.health.record(err)
	return d, err
}

func (s *Snapshot) exchangeDecision(ctx context.Context, in ExchangeInput) (*ExchangeDecision, error) {
	input, err := exchangeInputValue(in)
	if err != nil {
		return nil, err
	}
	m, err := evalOne(ctx, s.exchange, input)
	if err != nil {
		return nil, err
	}
	return decodeExchange(m, s.Revision)
}

// Authorize evaluates the proxy decision. An evaluation error or an
// undefined result is an error: the caller must deny.
func (s *Snapshot) Authorize(ctx context.Context, in ProxyInput) (*ProxyDecision, error) {
	d, err := s.authorize(ctx, in)
	s.health.record(err)
	return d, err
}

func (s *Snapshot) authorize(ctx context.Context, in ProxyInput) (*ProxyDecision, error) {
	m, err := evalOne(ctx, s.proxy, s.proxyInputValue(in))
	if err != nil {
		return nil, err
	}
	return decodeProxy(m)
}

// noMetrics: the engine reads no per-query OPA metrics, and making a fresh
// metrics registry per decision costs allocations on every request.
var noMetrics = metrics.NoOp()

// evalOne evaluates a prepared entry point and returns its decision
// object. An error, an undefined decision or one that is not an object is an
// error: the caller must deny.
//
// Cancellation: left to itself, rego starts a goroutine per evaluation that
// waits for ctx to end or the evaluation to return, and cancels the query in
// the first case. context.AfterFunc gives the same cancellation without a
// goroutine (its function runs only if ctx ends first), so a decision costs
// no goroutine start, channel or scheduler hand-off.
func evalOne(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (ast.Object, error) {
	c := topdown.NewCancel()
	stop := context.AfterFunc(ctx, c.Cancel)
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalMetrics(noMetrics), rego.EvalExternalCancel(c))
	stop()
	if err != nil {
		return nil, fmt.Errorf("policy evaluation failed: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("policy decision is undefined (%d results): the entry point did not produce a decision for this input", len(rs))
	}
	m, ok := rs[0].Expressions[0].Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s is %v, want an object", rs[0].Expressions[0].Text, rs[0].Expressions[0].Value)
	}
	return m, nil
}
