package provider

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse10k reads a providers file of 10,000 GitHub Actions
// providers (two conditions each), the first step of a reload from a file.
//
//	go test -run '^$' -bench Parse10k -benchmem ./sidecar/provider
func BenchmarkParse10k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("providers:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  - id: 00000000-0000-4000-8000-%012d\n    name: GHA %d\n    type: github_actions\n"+
			"    trust_conditions: 'repository_owner is \"org-%d\" and ref is \"refs/heads/main\"'\n"+
			"    scopes: [WORKSPACE, EXECUTION_RUN]\n", i+1, i, i)
	}
	src := []byte(sb.String())
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := Parse("providers.yaml", src)
		if err != nil {
			b.Fatal(err)
		}
		if len(f.Providers) != 10000 {
			b.Fatalf("%d providers", len(f.Providers))
		}
	}
}
