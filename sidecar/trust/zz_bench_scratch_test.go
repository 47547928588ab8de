package trust

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

func compileN(t *testing.T, name string, gen func(i int) string) {
	const n = 10000
	srcs := make(map[string]string, n)
	for i := range n {
		srcs[fmt.Sprintf("m%d.rego", i)] = gen(i)
	}
	lp, lsrc := Library()
	srcs[lp] = string(lsrc)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	mods := make(map[string]*ast.Module, len(srcs))
	for p, s := range srcs {
		m, err := ast.ParseModuleWithOpts(p, s, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		mods[p] = m
	}
	parsed := time.Since(start)
	c := ast.NewCompiler()
	c.Compile(mods)
	if c.Failed() {
		t.Fatal(c.Errors)
	}
	total := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("%-12s parse %v total %v heap kept %.1f MiB, total alloc %.1f MiB", name, parsed.Round(time.Millisecond), total.Round(time.Millisecond), float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20))
	runtime.KeepAlive(c)
}

func gen3(i int) string {
	x, _ := Parse(fmt.Sprintf(`repository_owner is "octo-org-%d" and ref matches "refs/heads/release/*" and environment is one of ["prod", "staging"]`, i))
	_, src, _ := Generate(Module{ProviderID: fmt.Sprintf("550e8400-e29b-41d4-a716-%012d", i), ProviderName: "x", Source: "providers.yaml:12", Expr: x})
	return string(src)
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestScratchCompile(t *testing.T) {
	v := os.Getenv("V")
	switch v {
	case "base":
		compileN(t, v, func(i int) string {
			return fmt.Sprintf("package providers.p%d\n\ndefault allow := false\n\nallow if {\n\tinput.claims.repository_owner == \"o%d\"\n\tinput.claims.ref == \"refs/heads/main\"\n}\n", i, i)
		})
	case "full":
		compileN(t, v, gen3)
	case "nocomment":
		compileN(t, v, func(i int) string { return stripComments(gen3(i)) })
	case "allowonly":
		compileN(t, v, func(i int) string { s := stripComments(gen3(i)); return s[:strings.Index(s, "deny contains")] })
	case "allowonlycomments":
		compileN(t, v, func(i int) string { s := gen3(i); return s[:strings.Index(s, "# deny holds")] })
	}
}
