package policy

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

// manyProviders makes n GitHub Actions providers, each pinning its own
// owner and the main branch, like a large real deployment. Provider 0 pins
// octo-org, so the push fixture is allowed by it.
func manyProviders(tb testing.TB, n int) []*provider.Provider {
	tb.Helper()
	out := make([]*provider.Provider, n)
	for i := range out {
		owner := "octo-org"
		if i > 0 {
			owner = fmt.Sprintf("org-%d", i)
		}
		src := fmt.Sprintf(`repository_owner is %q and ref is "refs/heads/main"`, owner)
		x, err := trust.Parse(src)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = &provider.Provider{
			ID:   provider.ID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
			Name: fmt.Sprintf("GHA %d", i), Type: provider.GitHubActions,
			Lifetime: 10 * time.Minute, Audience: "Buddy", Issuer: "https://token.actions.githubusercontent.com",
			TrustConditions: src, Conditions: x, Scopes: []string{"WORKSPACE", "EXECUTION_RUN"},
			DenialDetail: provider.DenialConditions, Source: provider.Pos{File: "bench.yaml", Line: i + 1},
		}
	}
	return out
}

// BenchmarkDecision is the exchange decision (generated module + entry
// point + guardrails + IP check) with 1, 1,000 and 10,000 providers loaded,
// next to the floor: one prepared query over one minimal module, the same
// 29-claim input converted on every eval (performance-floors.md B.2).
//
//	go test ./sidecar/policy -run XXX -bench Decision -benchmem -count 5
func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	claims := fixture(b, "github_push_main")

	b.Run("floor", func(b *testing.B) {
		pq, err := testkit.FloorQuery(ctx)
		if err != nil {
			b.Fatal(err)
		}
		in := map[string]any{"claims": claims, "provider": "p0"}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			rs, err := pq.Eval(ctx, rego.EvalInput(in))
			if err != nil || !rs.Allowed() {
				b.Fatal(rs, err)
			}
		}
	})
	for _, n := range []int{1, 1000, 10000} {
		s := snapshot(b, manyProviders(b, n))
		id := "00000000-0000-4000-8000-000000000000"
		b.Run(fmt.Sprintf("providers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := s.Exchange(ctx, ExchangeInput{ProviderID: id, Claims: claims, ClientIP: "203.0.113.7", Time: time.Unix(1795000001, 0)})
				if err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
	}
}

// BenchmarkBuild10k builds and compiles a bundle of 10,000 providers and
// reports the heap it keeps (the compiled engine) as MB-retained.
//
//	go test ./sidecar/policy -run XXX -bench Build10k -benchtime 3x
func BenchmarkBuild10k(b *testing.B) {
	ctx := context.Background()
	ps := manyProviders(b, 10000)
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		bd, err := Build(ctx, Sources{Providers: ps})
		if err != nil {
			b.Fatal(err)
		}
		s, err := Compile(ctx, bd)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MB-retained")
		runtime.KeepAlive(s)
	}
}

// TestUndefinedDecisionFailsClosed: a policy whose entry point is undefined
// for an input is an error, never an allow.
func TestUndefinedDecisionFailsClosed(t *testing.T) {
	ctx := context.Background()
	pols, _ := EmbeddedPolicies(false)
	for i, f := range pols {
		if f.Path == "exchange.rego" {
			// Undefined only for tokens with a "trigger" claim: a decision
			// undefined for the probe input is refused at Compile
			// (TestProbeRefusesUndefinedRevision).
			pols[i].Src = []byte("package sidecar.exchange\n\ndecision := {\"allow\": false, \"reasons\": [{\"code\": \"x\", \"message\": \"x\"}]} if not input.claims.trigger\n")
		}
	}
	b, err := Build(ctx, Sources{Providers: manyProviders(t, 1), Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Exchange(ctx, ExchangeInput{ProviderID: "x", Claims: map[string]any{"trigger": true}, Time: time.Now()})
	if err == nil || d != nil {
		t.Fatalf("undefined decision: %+v, %v", d, err)
	}
	// An allow without a lifetime is refused too.
	for i, f := range pols {
		if f.Path == "exchange.rego" {
			pols[i].Src = []byte("package sidecar.exchange\n\ndecision := {\"allow\": true, \"reasons\": []} if {\n\tinput.claims.trigger\n} else := {\"allow\": false, \"reasons\": [{\"code\": \"x\", \"message\": \"x\"}]}\n")
		}
	}
	b, _ = Build(ctx, Sources{Providers: manyProviders(t, 1), Policies: pols})
	if s, err = Compile(ctx, b); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Exchange(ctx, ExchangeInput{ProviderID: "x", Claims: map[string]any{"trigger": true}, Time: time.Now()}); err == nil {
		t.Fatalf("allow without lifetime accepted: %+v", d)
	}
}

// TestEvaluationCancelled: ending the request's context stops an
// evaluation in progress (evalOne cancels through context.AfterFunc, not
// rego's goroutine) and the decision is an error, never an allow or a deny.
func TestEvaluationCancelled(t *testing.T) {
	pols, _ := EmbeddedPolicies(false)
	for i, f := range pols {
		if f.Path == "exchange.rego" {
			// 25 million iterations for a token with a "slow" claim.
			pols[i].Src = []byte("package sidecar.exchange\n\n" +
				"spin if {\n\tinput.claims.slow\n\tsome i in numbers.range(1, 5000)\n\tsome j in numbers.range(1, 5000)\n\ti * j == -1\n}\n\n" +
				"decision := {\"allow\": false, \"reasons\": [{\"code\": \"x\", \"message\": \"x\"}]} if not spin\n")
		}
	}
	b, err := Build(context.Background(), Sources{Providers: manyProviders(t, 1), Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	go func() {
		<-started
		cancel()
	}()
	close(started)
	d, err := s.Exchange(ctx, ExchangeInput{ProviderID: "x", Claims: map[string]any{"slow": true}, Time: time.Now()})
	if err == nil || d != nil {
		t.Fatalf("cancelled evaluation: %+v, %v", d, err)
	}
	if !strings.Contains(err.Error(), "cancel") {
		t.Fatalf("error %q does not say the evaluation was cancelled", err)
	}
	// The same snapshot still decides for a live context.
	d, err = s.Exchange(context.Background(), ExchangeInput{ProviderID: "x", Claims: map[string]any{}, Time: time.Now()})
	if err != nil || d.Allow {
		t.Fatalf("after a cancelled evaluation: %+v, %v", d, err)
	}
}
