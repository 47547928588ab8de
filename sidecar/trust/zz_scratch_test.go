package trust

import (
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	x, err := Parse(`repository_owner is "octo-org" and ref matches "refs/heads/release/*" and environment is one of ["prod", "staging"]`)
	if err != nil {
		t.Fatal(err)
	}
	_, src, err := Generate(Module{ProviderID: "550e8400-e29b-41d4-a716-446655440000", ProviderName: "GHA - octo-repo:deploy", Source: "providers.yaml:12", Expr: x})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(string(src))
	fmt.Println(string(render(Module{ProviderID: "550e8400-e29b-41d4-a716-446655440000", ProviderName: "GHA - octo-repo:deploy", Source: "providers.yaml:12", Expr: x})) == string(src))
}
