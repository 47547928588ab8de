package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// unsafeBuiltins are refused in policies: a decision must not reach the
// network or depend on anything but its input and the bundle.
var unsafeBuiltins = map[string]struct{}{
	"http.send": {}, "net.lookup_ip_addr": {}, "opa.runtime": {}, "trace": {},
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

// canonicalJSON is encoding/json's output (maps sorted by key).
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bundle data is not JSON: %w", err)
	}
	return b, nil
}
