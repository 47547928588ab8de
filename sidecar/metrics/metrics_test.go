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

// The per-request metrics, through their cached children: the same series
// as WithLabelValues, counted once per call, and created on first use only.
func TestProxyChildren(t *testing.T) {
	m := New()
	if n := testutil.CollectAndCount(m.proxyDecisions) + testutil.CollectAndCount(m.upstreamDuration); n != 0 {
		t.Fatalf("%d series before any request, want none", n)
	}
	for range 3 {
		m.ProxyDecision("/workspaces/{workspace}/projects", 200, true, time.Millisecond)
		m.Upstream(200, time.Millisecond)
	}
	m.ProxyDecision("/workspaces/{workspace}/projects", 403, false, time.Millisecond)
	m.ProxyDecision("unmatched", 404, false, time.Millisecond)
	m.Upstream(503, time.Millisecond)
	m.Upstream(0, time.Millisecond)
	for _, c := range []struct {
		route, status string
		want          float64
	}{{"/workspaces/{workspace}/projects", "200", 3}, {"/workspaces/{workspace}/projects", "403", 1}, {"unmatched", "404", 1}} {
		if got := testutil.ToFloat64(m.proxyDecisions.WithLabelValues(c.route, c.status)); got != c.want {
			t.Errorf("proxy_decisions_total{route=%q,status=%q} = %v, want %v", c.route, c.status, got, c.want)
		}
	}
	counts := map[string]uint64{}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			if h := mt.GetHistogram(); h != nil {
				counts[mf.GetName()+"/"+mt.GetLabel()[0].GetValue()] = h.GetSampleCount()
			}
		}
	}
	for k, want := range map[string]uint64{
		"oidc_sidecar_upstream_duration_seconds/2xx": 3, "oidc_sidecar_upstream_duration_seconds/5xx": 1,
		"oidc_sidecar_upstream_duration_seconds/error": 1, "oidc_sidecar_proxy_authorization_duration_seconds/allowed": 3,
		"oidc_sidecar_proxy_authorization_duration_seconds/denied": 2,
	} {
		if counts[k] != want {
			t.Errorf("%s: %d observations, want %d (all: %v)", k, counts[k], want, counts)
		}
	}
}
