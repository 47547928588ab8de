package trust

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/rego"
)

// testID is the provider id the tests generate modules for.
const testID = "550e8400-e29b-41d4-a716-446655440000"

// mustParse parses src or fails the test.
func mustParse(t testing.TB, src string) *Expr {
	t.Helper()
	x, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return x
}

// mustGenerate generates the module for x under testID or fails the test.
func mustGenerate(t testing.TB, x *Expr) (string, []byte) {
	t.Helper()
	path, src, err := Generate(Module{ProviderID: testID, ProviderName: "test provider", Source: "providers.yaml:1", Expr: x})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return path, src
}

// checkModule asserts that src is formatted, parses as Rego v1 and compiles
// together with the library (strict mode, so unused variables and imports
// are errors too).
func checkModule(t testing.TB, path string, src []byte) {
	t.Helper()
	formatted, err := format.SourceWithOpts(path, src, format.Opts{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatalf("format %s: %v\n%s", path, err, src)
	}
	if !bytes.Equal(formatted, src) {
		t.Fatalf("generated module is not in the formatter's layout:\n--- generated\n%s\n--- formatted\n%s", src, formatted)
	}
	mod, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, src)
	}
	libPath, lib := Library()
	libMod, err := ast.ParseModuleWithOpts(libPath, string(lib), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatalf("parse library: %v", err)
	}
	c := ast.NewCompiler().WithStrict(true)
	if c.Compile(map[string]*ast.Module{path: mod, libPath: libMod}); c.Failed() {
		t.Fatalf("compile %s: %v\n%s", path, c.Errors, src)
	}
}

// evalResult is a generated module's document.
type evalResult struct {
	Allow bool
	Deny  []any
}

// evalModule evaluates the generated module src (for provider testID) the
// way policies/exchange.rego does, trust.allow and trust.deny on its table
// (a hand-written test module's own allow and deny take precedence),
// against input, with strict builtin errors so that a builtin error fails
// the test instead of being swallowed.
func evalModule(t testing.TB, path string, src []byte, input any) evalResult {
	t.Helper()
	libPath, lib := Library()
	rs, err := rego.New(
		rego.Query(`m := data.sidecar.conditions["`+testID+`"]
			x := object.union({"allow": data.sidecar.trust.allow(m.conditions), "deny": data.sidecar.trust.deny(m.conditions)}, m)`),
		rego.Module(libPath, string(lib)),
		rego.Module(path, string(src)),
		rego.Input(input),
		rego.StrictBuiltinErrors(true),
	).Eval(context.Background())
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, src)
	}
	if len(rs) != 1 {
		t.Fatalf("eval: want one result, got %v", rs)
	}
	doc, ok := rs[0].Bindings["x"].(map[string]any)
	if !ok {
		t.Fatalf("eval: result is %T, not an object", rs[0].Bindings["x"])
	}
	var r evalResult
	allow, ok := doc["allow"].(bool)
	if !ok {
		t.Fatalf("eval: allow is %#v, not a boolean", doc["allow"])
	}
	r.Allow = allow
	deny, ok := doc["deny"].([]any)
	if !ok {
		t.Fatalf("eval: deny is %#v, not a set", doc["deny"])
	}
	// trust.deny numbers each reason with its row ("clause", from 1);
	// the semantic tests compare the rest, so check it here and drop it.
	for _, x := range deny {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		if c, ok := m["clause"]; ok {
			n, err := c.(json.Number).Int64()
			if err != nil || n < 1 || n > MaxClauses {
				t.Fatalf("eval: reason %v has clause %v", m, c)
			}
			delete(m, "clause")
		}
	}
	r.Deny = deny
	return r
}
