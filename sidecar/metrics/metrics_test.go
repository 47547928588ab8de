package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	m.Exchange("p", "issued", nil, time.Millisecond)
	m.ProxyDecision("GET /user", 200, true, time.Millisecond)
	m.Upstream(200, time.Millisecond)
	m.JWKSFetch("i", "jwks", nil)
	m.StoreError("get")
	m.Reload("r", nil)
	m.PolicyEval("exchange", time.Millisecond)
}

func TestRecording(t *testing.T) {
	m := New()
	m.Exchange("p1", "denied", []string{"condition_failed", "guardrail"}, time.Millisecond)
	m.ProxyDecision("GET /user", 403, false, time.Millisecond)
	m.Reload("rev-1", nil)
	m.Reload("rev-2", nil)
	m.Reload("", errors.New("bad"))
	if got := testutil.ToFloat64(m.exchanges.WithLabelValues("p1", "denied")); got != 1 {
		t.Fatalf("exchanges = %v", got)
	}
	if got := testutil.ToFloat64(m.denials.WithLabelValues("p1", "guardrail")); got != 1 {
		t.Fatalf("denials = %v", got)
	}
	if got := testutil.ToFloat64(m.proxyDecisions.WithLabelValues("GET /user", "403")); got != 1 {
		t.Fatalf("proxy decisions = %v", got)
	}
	want := `
# HELP oidc_sidecar_policy_revision_info The active bundle revision (value 1).
# TYPE oidc_sidecar_policy_revision_info gauge
oidc_sidecar_policy_revision_info{revision="rev-2"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "oidc_sidecar_policy_revision_info"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("error")); got != 1 {
		t.Fatalf("reload errors = %v", got)
	}
}
