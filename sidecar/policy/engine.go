package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
)

// The two entry points every bundle must define.
const (
	ExchangeQuery = "data.sidecar.exchange.decision"
	ProxyQuery    = "data.sidecar.proxy.decision"
)

// unsafeBuiltins are refused in policies: a decision must not reach the
// network or depend on anything but its input and the bundle.
var unsafeBuiltins = map[string]struct{}{
	"http.send": {}, "net.lookup_ip_addr": {}, "opa.runtime": {}, "trace": {},
}

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

// ProxyDecisionPure reports whether the proxy decision depends only on
// method, path, route, variables, token and client address, and on this
// snapshot: no rule it can reach reads input.time (or the whole input) or
// calls a non-deterministic builtin (time.now_ns, rand.intn, ...). A
// caller may then reuse a decision for the same inputs; when it is false,
// why says which rule stops it.
func (s *Snapshot) ProxyDecisionPure() (pure bool, why string) {
	return s.proxyPure, s.proxyImpure
}

// pureOfTime walks every rule and function the rules at ref depend on,
// transitively, and reports whether none reads input.time, reads input as
// a whole or with a computed key, or calls a non-deterministic builtin.
func pureOfTime(c *ast.Compiler, ref ast.Ref) (bool, string) {
	seen := map[*ast.Rule]bool{}
	stack := slices.Clone(c.GetRulesExact(ref))
	for len(stack) > 0 {
		r := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[r] {
			continue
		}
		seen[r] = true
		where := fmt.Sprintf("%s (%s)", r.Path(), r.Location)
		why := ""
		ast.WalkRefs(r, func(x ast.Ref) bool {
			if why != "" || !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			switch {
			case len(x) == 1:
				why = "uses input as a whole"
			case !x[1].IsGround():
				why = "reads input with a computed key"
			case x[1].Equal(ast.StringTerm("time")):
				why = "reads input.time"
			}
			return false
		})
		ast.WalkExprs(r, func(e *ast.Expr) bool {
			if why == "" && e.IsCall() {
				if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.Nondeterministic {
					why = "calls " + b.Name + ", which is not deterministic"
				}
			}
			return false
		})
		if why != "" {
			return false, where + " " + why
		}
		for x := r; x != nil; x = x.Else {
			for dep := range c.Graph.Dependencies(x) {
				if d, ok := dep.(*ast.Rule); ok {
					stack = append(stack, d)
				}
			}
		}
		if r.Else != nil {
			stack = append(stack, r.Else)
		}
	}
	return true, ""
}

// Compile compiles a bundle and prepares its queries. It fails — and the
// caller keeps whatever it was serving — when a module does not compile,
// an entry point is missing, or the data is not a valid deployment.
func Compile(ctx context.Context, b *bundle.Bundle) (*Snapshot, error) {
	s := &Snapshot{Revision: b.Manifest.Revision, LoadedAt: time.Now(), Bundle: b}
	root, _ := b.Data[Root].(map[string]any)
	if root == nil {
		return nil, fmt.Errorf("bundle has no data at %s: build it with `oidc-sidecar bundle build`", Root)
	}
	var err error
	if s.Providers, err = providersFromData(root["providers"]); err != nil {
		return nil, err
	}
	if s.Routes, err = routes.FromData(root["routes"]); err != nil {
		return nil, err
	}
	s.routeTerms = make(map[routeKey]routeTermEntry, len(s.Routes))
	for i := range s.Routes {
		r := &s.Routes[i]
		s.routeTerms[routeKey{r.Method, r.Path}] = routeTermEntry{scopes: slices.Clone(r.Scopes), term: newRouteTerm(r)}
	}
	if err := checkScopeGraph(root["scopes"]); err != nil {
		return nil, err
	}
	if st, ok := root["settings"].(map[string]any); ok {
		s.Settings.UnknownRoutes, _ = st["unknown_routes"].(string)
	}
	switch s.Settings.UnknownRoutes {
	case "", "deny", "authenticated":
	default:
		return nil, fmt.Errorf(`data.sidecar.settings.unknown_routes is %q; use "deny" or "authenticated"`, s.Settings.UnknownRoutes)
	}

	if err := parseModules(b.Modules); err != nil {
		return nil, errorList(err)
	}
	modules := make(map[string]*ast.Module, len(b.Modules))
	for _, m := range b.Modules {
		modules[m.Path] = m.Parsed
	}
	// Stored as OPA values: policies read provider metadata on every
	// decision, and a store of Go values converts what is read each time.
	store := inmem.NewFromObjectWithOpts(b.Data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	compiler := ast.NewCompiler().
		SetErrorLimit(0).
		WithUnsafeBuiltins(unsafeBuiltins).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	compiler.Compile(modules)
	store.Abort(ctx, txn)
	if compiler.Failed() {
		return nil, errorList(compiler.Errors)
	}
	for _, q := range []string{ExchangeQuery, ProxyQuery} {
		if len(compiler.GetRulesExact(ast.MustParseRef(q))) == 0 {
			return nil, fmt.Errorf("the policies define no %s: start from the shipped policies/ directory, which defines both entry points", q)
		}
	}
	for id, p := range s.Providers {
		if p.Conditions != nil && len(p.Conditions.Conditions) > 0 {
			ref := ast.Ref{ast.DefaultRootDocument, ast.InternedTerm("sidecar"), ast.InternedTerm("conditions"), ast.StringTerm(id), ast.InternedTerm("conditions")}
			if len(compiler.GetRulesExact(ref)) == 0 {
				return nil, fmt.Errorf("provider %s has trust conditions but the bundle has no module sidecar/conditions/%s.rego", id, id)
			}
		}
		if p.Policy != "" {
			ref := ast.MustParseRef(fmt.Sprintf("data.sidecar.custom[%q].allow", p.Policy))
			if len(compiler.GetRulesExact(ref)) == 0 {
				return nil, fmt.Errorf("provider %s (%s) names policy %q, but no module defines data.sidecar.custom.%s.allow", id, p.Source, p.Policy, p.Policy)
			}
		}
	}
	s.proxyPure, s.proxyImpure = pureOfTime(compiler, ast.MustParseRef(ProxyQuery))
	prep := func(q string) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.Query(q),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StrictBuiltinErrors(true),
			// Hand the decision back as OPA's value: decoding the few
			// fields read below costs less than converting the whole
			// document to Go maps on every request.
			rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }),
		).PrepareForEval(ctx)
	}
	if s.exchange, err = prep(ExchangeQuery); err != nil {
		return nil, errorList(err)
	}
	if s.proxy, err = prep(ProxyQuery); err != nil {
		return nil, errorList(err)
	}
	if err := s.probe(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// probeUnknownID is the provider id of the unknown-provider probe.
const probeUnknownID = "00000000-0000-4000-8000-00000000dead"

// ProbeClientIP is the client address of the probe inputs.
const ProbeClientIP = "192.0.2.1"

// probe evaluates both decisions for built-in inputs — an exchange for an
// unknown provider and for one provider of each shape with a token that
// has only the registered claims, a proxied request without a token — and refuses
// the revision when a decision is undefined or cannot be evaluated: such a
// revision would answer 503 to every request of that shape. The probes do
// not count in the snapshot's health.
func (s *Snapshot) probe(ctx context.Context) error {
	now := time.Now()
	claims := map[string]any{
		"iss": "https://issuer.invalid", "sub": "probe", "aud": "probe", "jti": "probe",
		"iat": json.Number(strconv.FormatInt(now.Unix()-5, 10)), "exp": json.Number(strconv.FormatInt(now.Unix()+300, 10)),
	}
	// One provider per type, hand-written policy and presence of
	// conditions (what decides which rules run): a few evaluations, not
	// one per provider, so 10,000 providers load as fast as before.
	all := make([]string, 0, len(s.Providers))
	for id := range s.Providers {
		all = append(all, id)
	}
	sort.Strings(all)
	type shape struct {
		t      provider.Type
		policy string
		conds  bool
	}
	seen := map[shape]bool{}
	var ids []string
	for _, id := range all {
		p := s.Providers[id]
		k := shape{p.Type, p.Policy, p.Conditions != nil && len(p.Conditions.Conditions) > 0}
		if !seen[k] {
			seen[k] = true
			ids = append(ids, id)
		}
	}
	if s.Providers[probeUnknownID] == nil {
		ids = append([]string{probeUnknownID}, ids...)
	}
	for _, id := range ids {
		if _, err := s.exchangeDecision(ctx, ExchangeInput{ProviderID: id, Claims: claims, ClientIP: ProbeClientIP, Time: now}); err != nil {
			what := "an unknown provider_id"
			if p := s.Providers[id]; p != nil {
				what = fmt.Sprintf("provider %s (%s)", id, p.Source)
			}
			return fmt.Errorf("the policies decide nothing for a probe exchange with %s and a token with only iss, sub, aud, jti, iat and exp: %w; every such exchange would be a 503 — the entry point %s must give a decision (allow, or a denial with reasons) for every input", what, err, ExchangeQuery)
		}
	}
	if _, err := s.authorize(ctx, ProxyInput{Method: "GET", Path: "/workspaces", ClientIP: ProbeClientIP, Time: now}); err != nil {
		return fmt.Errorf("the policies decide nothing for a probe proxy request without a token (GET /workspaces): %w; every such request would be a 503 — the entry point %s must give a decision for every input", err, ProxyQuery)
	}
	return nil
}

func providersFromData(v any) (map[string]*provider.Provider, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("data.sidecar.providers must be an object keyed by provider id, found %T", v)
	}
	out := make(map[string]*provider.Provider, len(m))
	for id, raw := range m {
		doc, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("data.sidecar.providers[%q] must be an object", id)
		}
		p, err := provider.FromMetadata(doc)
		if err != nil {
			return nil, fmt.Errorf("data.sidecar.providers[%q]: %w", id, err)
		}
		if string(p.ID) != id {
			return nil, fmt.Errorf("data.sidecar.providers[%q] has id %q", id, p.ID)
		}
		out[id] = p
	}
	return out, nil
}

// checkScopeGraph rejects a hierarchy that names a scope with no key of its
// own: graph.reachable would silently not follow it.
func checkScopeGraph(v any) error {
	m, _ := v.(map[string]any)
	implies, ok := m["implies"].(map[string]any)
	if !ok {
		return fmt.Errorf("data.sidecar.scopes.implies must be an object")
	}
	for k, targets := range implies {
		list, ok := targets.([]any)
		if !ok {
			return fmt.Errorf("data.sidecar.scopes.implies[%q] must be an array", k)
		}
		for _, t := range list {
			ts, _ := t.(string)
			if _, ok := implies[ts]; !ok {
				return fmt.Errorf("data.sidecar.scopes.implies[%q] names %q, which has no key of its own (add \"%s\": [])", k, ts, ts)
			}
		}
	}
	// grants is optional (without it the proxy walks implies on every
	// request), but when present it must be exactly what implies says: a
	// stale copy would grant what the hierarchy does not.
	if g, ok := m["grants"]; ok {
		want, _ := json.Marshal(grantsOf(implies))
		got, _ := json.Marshal(normalizeGrants(g))
		if string(got) != string(want) {
			return fmt.Errorf("data.sidecar.scopes.grants does not match data.sidecar.scopes.implies: remove grants or rebuild the bundle with `oidc-sidecar bundle build`, which computes it")
		}
	}
	return nil
}

// normalizeGrants sorts each list of a grants document, so that it compares
// equal to grantsOf whatever the order it was written in.
func normalizeGrants(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, l := range m {
		list, ok := l.([]any)
		if !ok {
			out[k] = l
			continue
		}
		ss := make([]string, 0, len(list))
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return v
			}
			ss = append(ss, s)
		}
		sort.Strings(ss)
		out[k] = ss
	}
	return out
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

// ExchangeInput is the input document of the exchange decision.
type ExchangeInput struct {
	ProviderID      string
	Claims          map[string]any // verified claims; numbers as json.Number
	ClientIP        string
	Time            time.Time
	RequestedScopes []string // nil = not requested
}

// Reason is one reason for a denial.
type Reason struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Condition string `json:"condition,omitempty"`
	Claim     string `json:"claim,omitempty"`
	Operator  string `json:"operator,omitempty"`
	Expected  any    `json:"expected,omitempty"`
	Actual    any    `json:"actual,omitempty"`
	Missing   bool   `json:"missing,omitempty"`
	Clause    int    `json:"clause,omitempty"` // a failed condition's position in its provider's conditions, from 1
}

// ExchangeDecision is the result of the exchange decision.
type ExchangeDecision struct {
	Allow           bool     `json:"allow"`
	Reasons         []Reason `json:"reasons"`
	Scopes          []string `json:"scopes"`
	InvalidScopes   []string `json:"invalid_scopes"`
	Workspaces      []string `json:"workspaces"` // nil = all
	IPRestrictions  []string `json:"ip_restrictions"`
	LifetimeSeconds int64    `json:"lifetime_seconds"`
	ProviderName    string   `json:"provider_name"`
	Revision        string   `json:"revision"`

	doc ast.Object // the decision document as the policy returned it
}

// Document returns the decision document exactly as the policy returned it
// (data.sidecar.exchange.decision): what `opa eval` prints for the same
// input, e.g. "reasons": [] for an allow and every field of each reason.
func (d *ExchangeDecision) Document() (any, error) {
	if d.doc == nil {
		return nil, fmt.Errorf("no decision document")
	}
	return ast.JSON(d.doc)
}

// Exchange evaluates the exchange decision. An evaluation error or an
// undefined result is an error: the caller must deny.
func (s *Snapshot) Exchange(ctx context.Context, in ExchangeInput) (*ExchangeDecision, error) {
	d, err := s.exchangeDecision(ctx, in)
	s.health.record(err)
	return d, err
}

func (s *Snapshot) exchangeDecision(ctx context.Context, in ExchangeInput) (*ExchangeDecision, error) {
	// The claims reach the policy as a lazy object: a claim is converted to
	// an OPA value when a rule reads it, and policies read a handful of a
	// token's 20-30 claims. checkJSON first makes sure every value is one
	// the conversion accepts, so it cannot fail half-way through a decision.
	if err := checkJSON(in.Claims, 0); err != nil {
		return nil, fmt.Errorf("claims cannot be converted for the policy: %w", err)
	}
	// The whole input is lazy too: building an ordinary object would hash,
	// and so convert, every claim.
	input := map[string]any{
		"provider_id": in.ProviderID,
		"claims":      in.Claims,
		"client_ip":   in.ClientIP,
		"time":        json.Number(strconv.FormatInt(in.Time.Unix(), 10)),
	}
	if in.RequestedScopes != nil {
		rs := make([]any, len(in.RequestedScopes))
		for i, x := range in.RequestedScopes {
			rs[i] = x
		}
		input["requested_scopes"] = rs
	}
	m, err := evalOne(ctx, s.exchange, ast.LazyObject(input))
	if err != nil {
		return nil, err
	}
	d := &ExchangeDecision{Revision: s.Revision, doc: m}
	d.Allow = boolField(m, "allow")
	d.Scopes = stringsField(m, "scopes")
	d.InvalidScopes = stringsField(m, "invalid_scopes")
	if ws := field(m, "workspaces"); ws != nil && ws.Compare(ast.Null{}) != 0 {
		d.Workspaces = stringsField(m, "workspaces")
		if d.Workspaces == nil {
			d.Workspaces = []string{}
		}
	}
	d.IPRestrictions = stringsField(m, "ip_restrictions")
	d.LifetimeSeconds = intField(m, "lifetime_seconds")
	d.ProviderName = stringField(m, "provider_name")
	if rs, ok := field(m, "reasons").(*ast.Array); ok && rs.Len() > 0 {
		v, err := ast.JSON(rs)
		if err != nil {
			return nil, fmt.Errorf("%s: reasons: %w", ExchangeQuery, err)
		}
		for _, r := range v.([]any) {
			d.Reasons = append(d.Reasons, reasonOf(r))
		}
	}
	// Failed conditions first, in the order they were written (their
	// clause number); every other reason after them, by message.
	sort.SliceStable(d.Reasons, func(i, j int) bool {
		a, b := d.Reasons[i], d.Reasons[j]
		if (a.Clause > 0) != (b.Clause > 0) {
			return a.Clause > 0
		}
		if a.Clause != b.Clause {
			return a.Clause < b.Clause
		}
		return a.Message < b.Message
	})
	// Fail closed: an allow must carry a positive lifetime and no reasons;
	// a denial always has at least one reason.
	if d.Allow && (d.LifetimeSeconds <= 0 || len(d.Reasons) > 0) {
		return nil, fmt.Errorf("%s allowed with lifetime %d and %d reasons: refusing an inconsistent decision", ExchangeQuery, d.LifetimeSeconds, len(d.Reasons))
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []Reason{{Code: "denied", Message: "the policy denied this token without giving a reason"}}
	}
	return d, nil
}

// maxClaimDepth bounds the nesting of claim values (decoded JSON is
// bounded by the token's size; this guards hand-built inputs).
const maxClaimDepth = 32

// checkJSON reports the first value of v that is not JSON-shaped: nil,
// bool, string, json.Number, float64, int, int64, []any or map[string]any.
func checkJSON(v any, depth int) error {
	if depth > maxClaimDepth {
		return fmt.Errorf("values nested more than %d deep", maxClaimDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, json.Number, float64, int, int64:
		return nil
	case []any:
		for _, e := range x {
			if err := checkJSON(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for k, e := range x {
			if err := checkJSON(e, depth+1); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	}
	return fmt.Errorf("a value of Go type %T (decode the claims from JSON)", v)
}

// ProxyInput is the input document of the proxy decision.
type ProxyInput struct {
	Method   string
	Path     string
	Route    *routes.Route     // nil = no route matched
	Vars     map[string]string // path variables
	Token    ast.Value         // the token record as an OPA value (see TokenValue); nil = no valid token
	ClientIP string
	Time     time.Time
}

// ProxyDecision is the result of the proxy decision.
type ProxyDecision struct {
	Allow   bool
	Status  int
	Code    string
	Message string
}

// Authorize evaluates the proxy decision. An evaluation error or an
// undefined result is an error: the caller must deny.
func (s *Snapshot) Authorize(ctx context.Context, in ProxyInput) (*ProxyDecision, error) {
	d, err := s.authorize(ctx, in)
	s.health.record(err)
	return d, err
}

func (s *Snapshot) authorize(ctx context.Context, in ProxyInput) (*ProxyDecision, error) {
	route := ast.NullTerm()
	if in.Route != nil {
		route = s.routeTerm(in.Route)
	}
	vars := make([][2]*ast.Term, 0, len(in.Vars))
	for k, v := range in.Vars {
		vars = append(vars, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
	}
	token := ast.NullTerm()
	if in.Token != nil {
		token = ast.NewTerm(in.Token)
	}
	input := ast.NewObject(
		[2]*ast.Term{keyMethod, ast.StringTerm(in.Method)},
		[2]*ast.Term{keyPath, ast.StringTerm(in.Path)},
		[2]*ast.Term{keyRoute, route},
		[2]*ast.Term{keyVars, ast.ObjectTerm(vars...)},
		[2]*ast.Term{keyToken, token},
		[2]*ast.Term{keyClientIP, ast.StringTerm(in.ClientIP)},
		[2]*ast.Term{keyTime, ast.IntNumberTerm(int(in.Time.Unix()))},
	)
	m, err := evalOne(ctx, s.proxy, input)
	if err != nil {
		return nil, err
	}
	d := &ProxyDecision{
		Allow:   boolField(m, "allow"),
		Status:  int(intField(m, "status")),
		Code:    stringField(m, "code"),
		Message: stringField(m, "message"),
	}
	if d.Allow && d.Status != 200 {
		return nil, fmt.Errorf("%s allowed with status %d: refusing an inconsistent decision", ProxyQuery, d.Status)
	}
	if !d.Allow && (d.Status < 400 || d.Status > 599) {
		return nil, fmt.Errorf("%s denied with status %d: want a 4xx or 5xx status", ProxyQuery, d.Status)
	}
	return d, nil
}

// Keys of the proxy input, made once (ast.InternedTerm allocates for
// strings OPA has not interned).
var (
	keyMethod   = ast.StringTerm("method")
	keyPath     = ast.StringTerm("path")
	keyRoute    = ast.StringTerm("route")
	keyVars     = ast.StringTerm("vars")
	keyToken    = ast.StringTerm("token")
	keyClientIP = ast.StringTerm("client_ip")
	keyTime     = ast.StringTerm("time")
	keyScopes   = ast.StringTerm("scopes")
)

type routeKey struct{ method, path string }

// routeTerm is input.route for r: the term made when the snapshot was
// compiled for the same route of its table, or a new one.
func (s *Snapshot) routeTerm(r *routes.Route) *ast.Term {
	if t, ok := s.routeTerms[routeKey{r.Method, r.Path}]; ok && slices.Equal(t.scopes, r.Scopes) {
		return t.term
	}
	return newRouteTerm(r)
}

type routeTermEntry struct {
	scopes []string
	term   *ast.Term
}

func newRouteTerm(r *routes.Route) *ast.Term {
	return ast.ObjectTerm(
		[2]*ast.Term{keyMethod, ast.StringTerm(r.Method)},
		[2]*ast.Term{keyPath, ast.StringTerm(r.Path)},
		[2]*ast.Term{keyScopes, stringArray(r.Scopes)},
	)
}

// TokenValue converts a token record (any JSON-shaped Go value) into the
// OPA value the proxy decision receives as input.token.
func TokenValue(record any) (ast.Value, error) {
	return ast.InterfaceToValue(record)
}

// noMetrics: the engine reads no per-query OPA metrics, and making a fresh
// metrics registry per decision costs allocations on every request.
var noMetrics = metrics.NoOp()

// evalOne evaluates a prepared entry point and returns its decision
// object. An error, an undefined decision or one that is not an object is an
// error: the caller must deny.
func evalOne(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (ast.Object, error) {
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalMetrics(noMetrics))
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

// field is the value of key in m, or nil.
func field(m ast.Object, key string) ast.Value {
	k, ok := fieldKeys[key]
	if !ok {
		k = ast.StringTerm(key)
	}
	if t := m.Get(k); t != nil {
		return t.Value
	}
	return nil
}

// fieldKeys are the decision keys the engine reads, made once.
var fieldKeys = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"allow", "reasons", "scopes", "invalid_scopes", "workspaces", "ip_restrictions", "lifetime_seconds", "provider_name", "status", "code", "message"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func boolField(m ast.Object, key string) bool {
	b, _ := field(m, key).(ast.Boolean)
	return bool(b)
}

func stringField(m ast.Object, key string) string {
	s, _ := field(m, key).(ast.String)
	return string(s)
}

func intField(m ast.Object, key string) int64 {
	n, _ := field(m, key).(ast.Number)
	i, _ := n.Int64()
	return i
}

// stringsField is the strings of the array (or set) at key; nil when there
// is none.
func stringsField(m ast.Object, key string) []string {
	var out []string
	add := func(t *ast.Term) {
		if s, ok := t.Value.(ast.String); ok {
			out = append(out, string(s))
		}
	}
	switch v := field(m, key).(type) {
	case *ast.Array:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	case ast.Set:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	}
	return out
}

func stringArray(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func reasonOf(v any) Reason {
	if s, ok := v.(string); ok {
		return Reason{Code: "denied", Message: s}
	}
	m, _ := v.(map[string]any)
	r := Reason{Expected: m["expected"], Actual: m["actual"]}
	r.Code, _ = m["code"].(string)
	r.Message, _ = m["message"].(string)
	r.Condition, _ = m["condition"].(string)
	r.Claim, _ = m["claim"].(string)
	r.Operator, _ = m["operator"].(string)
	r.Missing, _ = m["missing"].(bool)
	if n, ok := m["clause"].(json.Number); ok {
		c, _ := n.Int64()
		r.Clause = int(c)
	}
	if r.Message == "" {
		b, _ := json.Marshal(m)
		r.Message = string(b)
	}
	if r.Code == "" {
		r.Code = "denied"
	}
	return r
}

// canonicalJSON is encoding/json's output (maps sorted by key).
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bundle data is not JSON: %w", err)
	}
	return b, nil
}

// ReasonSummary renders reasons as one line: "a; b; c".
func ReasonSummary(rs []Reason) string {
	msgs := make([]string, len(rs))
	for i, r := range rs {
		msgs[i] = r.Message
	}
	return strings.Join(msgs, "; ")
}
