package metrics

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

func TestOpsNilIsSafe(t *testing.T) {
	var m *Metrics
	m.PolicyEvalError("proxy")
	m.SetStatus(func() Status { return Status{} })
	if h := m.RedisHook(); h == nil {
		t.Fatal("nil hook")
	}
}

// The dashboard and alerts rate() these counters: they exist at 0 from the
// start, so the first error counts.
func TestOpsSeriesExistAtZero(t *testing.T) {
	m := New()
	want := `
# HELP oidc_sidecar_policy_eval_errors_total OPA evaluations that failed (an error or no decision; the request was refused), by query (exchange, proxy).
# TYPE oidc_sidecar_policy_eval_errors_total counter
oidc_sidecar_policy_eval_errors_total{query="exchange"} 0
oidc_sidecar_policy_eval_errors_total{query="proxy"} 1
# HELP oidc_sidecar_policy_reloads_total Policy loads by result (ok, error).
# TYPE oidc_sidecar_policy_reloads_total counter
oidc_sidecar_policy_reloads_total{result="error"} 0
oidc_sidecar_policy_reloads_total{result="ok"} 0
`
	m.PolicyEvalError("proxy")
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"oidc_sidecar_policy_eval_errors_total", "oidc_sidecar_policy_reloads_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.redisErrors); n != len(storeOps) {
		t.Fatalf("%d store error series, want %d (one per op)", n, len(storeOps))
	}
}

func TestStatusGauges(t *testing.T) {
	m := New()
	names := []string{"oidc_sidecar_ready", "oidc_sidecar_token_store_up", "oidc_sidecar_policy_last_reload_successful"}
	if n, err := testutil.GatherAndCount(m.Registry, names...); err != nil || n != 0 {
		t.Fatalf("before SetStatus: %d series (%v), want none", n, err)
	}
	for _, c := range []struct {
		st                     Status
		ready, storeUp, lastOK string
	}{
		{Status{PolicyLoaded: true, StoreUp: true, LastReloadOK: true}, "1", "1", "1"},
		{Status{PolicyLoaded: true, StoreUp: false, LastReloadOK: true}, "0", "0", "1"},
		{Status{PolicyLoaded: false, StoreUp: true, LastReloadOK: false}, "0", "1", "0"},
	} {
		calls := 0
		m.SetStatus(func() Status { calls++; return c.st })
		want := `
# HELP oidc_sidecar_policy_last_reload_successful 1 when the latest policy load was accepted, 0 when it was rejected (an older revision still serves).
# TYPE oidc_sidecar_policy_last_reload_successful gauge
oidc_sidecar_policy_last_reload_successful ` + c.lastOK + `
# HELP oidc_sidecar_ready 1 when the admin listener's /readyz answers 200 (a policy serves and the token store answers a ping), else 0; computed at each scrape.
# TYPE oidc_sidecar_ready gauge
oidc_sidecar_ready ` + c.ready + `
# HELP oidc_sidecar_token_store_up 1 when the token store answered a ping at this scrape, else 0.
# TYPE oidc_sidecar_token_store_up gauge
oidc_sidecar_token_store_up ` + c.storeUp + `
`
		if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), names...); err != nil {
			t.Fatalf("%+v: %v", c.st, err)
		}
		if calls != 1 {
			t.Fatalf("status func called %d times per scrape, want 1", calls)
		}
	}
}

// TestRedisHook times commands and pipelines against a real Redis.
func TestRedisHook(t *testing.T) {
	srv := redistest.Start(t)
	m := New()
	c := srv.Client()
	c.AddHook(m.RedisHook())
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, "missing").Err(); err != redis.Nil {
		t.Fatalf("GET missing: %v", err)
	}
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "n")
		p.Expire(ctx, "n", 60e9)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidc_sidecar_store_command_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			counts[s.GetLabel()[0].GetValue()] = s.GetHistogram().GetSampleCount()
		}
	}
	for cmd, want := range map[string]uint64{"set": 1, "get": 1, "pipeline": 1} {
		if counts[cmd] != want {
			t.Errorf("store_command_duration_seconds{command=%q} count %d, want %d (all: %v)", cmd, counts[cmd], want, counts)
		}
	}
}
