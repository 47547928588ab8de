package trust

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/providerid"
	"github.com/open-policy-agent/opa/v1/rego"
)

// benchConditions are typical conditions with one, two and three clauses.
var benchConditions = []string{
	`repository_owner is "octo-org-%d"`,
	`repository_owner is "octo-org-%d" and ref is "refs/heads/main"`,
	`repository_owner is "octo-org-%d" and ref matches "refs/heads/release/*" and environment is one of ["prod", "staging"]`,
}

func BenchmarkParse(b *testing.B) {
	src := fmt.Sprintf(benchConditions[2], 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	x := mustParse(b, fmt.Sprintf(benchConditions[2], 1))
	m := Module{ProviderID: testID, ProviderName: "GHA - octo-repo:deploy", Source: "providers.yaml:12", Expr: x}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Generate(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompile10k parses and compiles 10,000 generated provider modules
// plus the library, the way the policy engine loads a bundle, and reports
// the time of that and the heap it keeps (heap-MB: live heap after a GC,
// with the compiler still referenced, minus the live heap before) and the
// bytes allocated on the way (alloc-MB).
//
//	go test ./sidecar/trust -run XXX -bench Compile10k -benchtime 3x
func BenchmarkCompile10k(b *testing.B) {
	const n = 10000
	for clauses := 0; clauses <= len(benchConditions); clauses++ {
		name := fmt.Sprintf("clauses=%d", clauses)
		if clauses == 0 {
			// The reference point: the smallest useful module, as measured
			// in docs (one allow rule with two equality checks, no library).
			name = "baseline"
		}
		b.Run(name, func(b *testing.B) {
			srcs := make(map[string]string, n+1)
			for i := range n {
				if clauses == 0 {
					srcs[fmt.Sprintf("p%d.rego", i)] = fmt.Sprintf("package providers.p%d\n\ndefault allow := false\n\nallow if {\n\tinput.claims.repository_owner == \"o%d\"\n\tinput.claims.ref == \"refs/heads/main\"\n}\n", i, i)
					continue
				}
				x := mustParse(b, fmt.Sprintf(benchConditions[clauses-1], i))
				path, src, err := Generate(Module{ProviderID: providerid.ID(fmt.Sprintf("550e8400-e29b-41d4-a716-%012d", i)), ProviderName: "provider", Source: "providers.yaml:1", Expr: x})
				if err != nil {
					b.Fatal(err)
				}
				srcs[path] = string(src)
			}
			if clauses > 0 {
				libPath, lib := Library()
				srcs[libPath] = string(lib)
			}

			var parse, total time.Duration
			var heap, alloc float64
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()

				start := time.Now()
				mods := make(map[string]*ast.Module, len(srcs))
				for path, src := range srcs {
					m, err := ast.ParseModuleWithOpts(path, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
					if err != nil {
						b.Fatal(err)
					}
					mods[path] = m
				}
				parse += time.Since(start)
				c := ast.NewCompiler()
				if c.Compile(mods); c.Failed() {
					b.Fatal(c.Errors)
				}
				total += time.Since(start)

				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap += float64(after.HeapAlloc-before.HeapAlloc) / 1e6
				alloc += float64(after.TotalAlloc-before.TotalAlloc) / 1e6
				runtime.KeepAlive(c)
				b.StartTimer()
			}
			runs := float64(b.N)
			b.ReportMetric(float64(parse.Milliseconds())/runs, "parse-ms")
			b.ReportMetric(float64(total.Milliseconds())/runs, "total-ms")
			b.ReportMetric(heap/runs, "heap-MB")
			b.ReportMetric(alloc/runs, "alloc-MB")
		})
	}
}

// BenchmarkEval evaluates one provider's module (three clauses) with a
// prepared query, as the exchange path does: allow and deny, for a token
// that passes and one that fails.
func BenchmarkEval(b *testing.B) {
	x := mustParse(b, fmt.Sprintf(benchConditions[2], 1))
	path, src := mustGenerate(b, x)
	libPath, lib := Library()
	pq, err := rego.New(
		rego.Query(`data.sidecar.conditions[input.provider]`),
		rego.Module(libPath, string(lib)),
		rego.Module(path, string(src)),
	).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
	}{
		{"pass", map[string]any{"repository_owner": "octo-org-1", "ref": "refs/heads/release/v1", "environment": "prod", "run_number": "7", "sub": "repo:octo-org-1/x:ref:refs/heads/release/v1"}},
		{"fail", map[string]any{"repository_owner": "evil", "ref": "refs/heads/main", "environment": []any{"dev"}, "run_number": "7"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			input, err := ast.InterfaceToValue(map[string]any{"provider": testID, "claims": tc.claims})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(input))
				if err != nil || len(rs) != 1 {
					b.Fatal(rs, err)
				}
			}
		})
	}
}
