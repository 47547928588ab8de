package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestDecisionReuse: a cached token's decision for the same method, path and
// client address is reused under the same snapshot; anything else is
// decided again.
func TestDecisionReuse(t *testing.T) {
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	f := newRig(t, st)
	tok := f.mint(record("WORKSPACE", "EXECUTION_INFO"))

	reused := func() float64 { return counter(t, f, "oidc_sidecar_proxy_decisions_reused_total") }
	for i := range 3 {
		if r := f.do("GET", runExecutions, tok, nil, nil); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if got := reused(); got != 2 {
		t.Fatalf("after 3 identical requests, %v decisions reused, want 2", got)
	}
	// Another path of the same route: decided, not reused.
	other := strings.Replace(runExecutions, "/pipelines/7/", "/pipelines/8/", 1)
	if r := f.do("GET", other, tok, nil, nil); r.status != 200 {
		t.Fatalf("other path: %d %s", r.status, r.body)
	}
	// A request the policy denies is remembered as a denial, not an allow.
	for range 2 {
		if r := f.do("POST", runExecutions, tok, nil, bytes.NewReader([]byte("{}"))); r.status != 403 || !strings.Contains(r.body, "Insufficient scopes") {
			t.Fatalf("POST without EXECUTION_RUN: %d %s", r.status, r.body)
		}
	}
	if got := reused(); got != 3 {
		t.Fatalf("reused = %v, want 3 (the second POST)", got)
	}
	if n := len(f.up.requests()); n != 4 {
		t.Fatalf("upstream got %d requests, want 4 (the denied POSTs never reach it)", n)
	}

	// A new snapshot decides again: here its route table requires
	// EXECUTION_MANAGE for the same GET, which the token lacks.
	rts := []routes.Route{{Method: "GET", Path: "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions", Scopes: []string{"EXECUTION_MANAGE"}}}
	f.engine.Swap(snapshot(t, policy.Sources{Routes: rts}))
	if r := f.do("GET", runExecutions, tok, nil, nil); r.status != 403 {
		t.Fatalf("after the swap: %d %s, want 403 (a decision of the old snapshot was reused)", r.status, r.body)
	}

	// Revocation through the proxy evicts the token with its decisions.
	f.engine.Swap(defaultSnapshot(t))
	if r := f.do("GET", runExecutions, tok, nil, nil); r.status != 200 {
		t.Fatalf("back on the default snapshot: %d", r.status)
	}
	revoker := ForgetOnRevoke(f.store, f.proxy)
	if _, err := revoker.Revoke(t.Context(), token.Hash(tok)); err != nil {
		t.Fatal(err)
	}
	if r := f.do("GET", runExecutions, tok, nil, nil); r.status != 401 {
		t.Fatalf("after revocation: %d %s, want 401", r.status, r.body)
	}
}

// TestDecisionReuseOffForImpurePolicies: a proxy policy that reads
// input.time is evaluated for every request, and the reason is logged.
func TestDecisionReuseOffForImpurePolicies(t *testing.T) {
	pols, err := policy.EmbeddedPolicies(false)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pols {
		if p.Path == "proxy.rego" {
			pols[i].Src = append(bytes.Replace(p.Src, []byte("\tnot token\n} else := deny(401, \"unknown_provider\""), []byte("\tnot token\n\tnot after_hours\n} else := deny(401, \"unknown_provider\""), 1),
				[]byte("\nafter_hours if input.time < 0\n")...)
		}
	}
	snap := snapshot(t, policy.Sources{Policies: pols})
	if pure, _ := snap.ProxyDecisionPure(); pure {
		t.Fatal("a policy reading input.time is reported pure")
	}
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	f := newRig(t, st, func(o *Options) { o.Engine = engineWith(snap) })
	tok := f.mint(record("WORKSPACE", "EXECUTION_INFO"))
	for range 3 {
		if r := f.do("GET", runExecutions, tok, nil, nil); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if got := counter(t, f, "oidc_sidecar_proxy_decisions_reused_total"); got != 0 {
		t.Fatalf("reused %v decisions of a policy that reads input.time", got)
	}
	if !strings.Contains(f.logs.String(), "reads input.time") {
		t.Fatalf("no log saying why decisions are not reused:\n%s", f.logs.String())
	}
}

// TestDecisionReuseOff: Options.NoDecisionCache evaluates every request.
func TestDecisionReuseOff(t *testing.T) {
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	f := newRig(t, st, func(o *Options) { o.NoDecisionCache = true })
	tok := f.mint(record("WORKSPACE", "EXECUTION_INFO"))
	for range 3 {
		if r := f.do("GET", runExecutions, tok, nil, nil); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	if got := counter(t, f, "oidc_sidecar_proxy_decisions_reused_total"); got != 0 {
		t.Fatalf("reused %v decisions with NoDecisionCache", got)
	}
}

// counter is the value of a counter (without labels) in the rig's
// metrics registry; 0 when it was never incremented.
func counter(t *testing.T, f *rig, name string) float64 {
	t.Helper()
	mfs, err := f.proxy.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
