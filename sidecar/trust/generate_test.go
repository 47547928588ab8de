package trust

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/providerid"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldens are the providers whose generated modules are kept in testdata.
var goldens = []struct {
	file string
	mod  Module
	src  string
}{
	{"github.rego", Module{ProviderID: "550e8400-e29b-41d4-a716-446655440000", ProviderName: "GHA - octo-repo:deploy", Source: "providers.yaml:12"},
		`repository_owner is "octo-org" and ref matches "refs/heads/release/*" and environment is one of ["prod", "staging"]`},
	{"circleci.rego", Module{ProviderID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", ProviderName: "CircleCI deploys", Source: "providers.yaml:30"},
		"if oidc.circleci.com/project-id is \"c2e3f1a0-0000-4000-8000-000000000001\"\n" +
			"and oidc.circleci.com/context-ids is one of [\"ctx-prod\", \"ctx-shared\"]\n" +
			"and oidc.circleci.com/ssh-rerun is false\n" +
			"and oidc.circleci.com/vcs-ref does not match \"refs/heads/tmp/**\"\n"},
	{"every-operator.rego", Module{ProviderID: "7d444840-9dc0-11d1-b245-5ffdce74fad2", ProviderName: "Other \"custom\" issuer", Source: "providers.yaml:51"},
		`sub is not "repo:x/y:pull_request" and run_number is 42 and event_name is not one of ["pull_request", "pull_request_target"]` +
			` and "custom claim" exists and tag matches "v[0-9]*" and note is "quote \" backslash \\ tick ` + "`" + ` end"`},
	{"no-conditions.rego", Module{ProviderID: "7c9e6679-7425-40de-944b-e07fc1f90ae7", ProviderName: "Open provider", Source: "providers.yaml:70"}, ``},
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			m := g.mod
			m.Expr = mustParse(t, g.src)
			path, src, err := Generate(m)
			if err != nil {
				t.Fatal(err)
			}
			if want := "sidecar/conditions/" + string(m.ProviderID) + ".rego"; path != want {
				t.Errorf("path = %q, want %q", path, want)
			}
			checkModule(t, path, src)
			file := filepath.Join("testdata", g.file)
			if *update {
				if err := os.WriteFile(file, src, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(src, want) {
				t.Errorf("generated module differs from %s (run go test -run TestGolden -update if the change is intended):\n--- got\n%s\n--- want\n%s", file, src, want)
			}
		})
	}
}

func TestGenerateDeterministic(t *testing.T) {
	for _, g := range goldens {
		m := g.mod
		m.Expr = mustParse(t, g.src)
		_, first, err := Generate(m)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			m.Expr = mustParse(t, g.src) // a fresh parse, too
			if _, again, _ := Generate(m); !bytes.Equal(first, again) {
				t.Fatalf("%s: Generate is not deterministic:\n%s\n---\n%s", g.file, first, again)
			}
		}
	}
}

// TestGenerateRules pins the module's structure: the package, no imports
// and exactly one rule, conditions (an empty table with no clauses).
func TestGenerateRules(t *testing.T) {
	for _, g := range goldens {
		m := g.mod
		m.Expr = mustParse(t, g.src)
		path, src, err := Generate(m)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mod.Package.Path.String(), `data.sidecar.conditions["`+string(m.ProviderID)+`"]`; got != want {
			t.Errorf("%s: package %s, want %s", g.file, got, want)
		}
		var names []string
		for _, r := range mod.Rules {
			names = append(names, r.Head.Name.String())
		}
		want := []string{"conditions"}
		if !slices.Equal(names, want) || len(mod.Imports) != 0 {
			t.Errorf("%s: rules %v, want %v", g.file, names, want)
		}
	}
}

// TestInjection: claim names and values with quotes, backslashes, braces,
// line breaks, comment characters and Unicode become plain string
// literals: the module keeps its structure and compares exactly that
// value.
func TestInjection(t *testing.T) {
	nasty := []string{
		`"`, `\`, `\"`, `"]`, `"}`, "}\n}", "x\ny", "x\r\ny", "# comment", "a\"\n\nallow := true\n#",
		"`raw`", "`", "\u2028", "\u2029", "\u0085", "\x00", "\x7f", "\u202e", "\ufeff", "é", "😀", "\U0010ffff",
		`input.claims`, `data.sidecar.trust`, `"; allow := true; x := "`, "\\u0022", `{{.}}`, `${x}`, `$"x"`,
	}
	for _, s := range nasty {
		for _, op := range []Op{OpIs, OpIsNot, OpOneOf, OpNotOneOf, OpMatches, OpNotMatches, OpExists} {
			c := Condition{Claim: s, Op: op}
			switch op {
			case OpExists:
			case OpMatches, OpNotMatches:
				c.Values = []string{quoteGlob(s)}
			case OpOneOf, OpNotOneOf:
				c.Values = []string{s, s + "2"}
			default:
				c.Values = []string{s}
			}
			x := &Expr{Conditions: []Condition{c}}
			m := Module{ProviderID: testID, ProviderName: s, Source: s, Expr: x}
			path, src, err := Generate(m)
			if err != nil {
				t.Fatalf("Generate(%q %s): %v", s, op, err)
			}
			checkModule(t, path, src)

			// The canonical text parses back to the same clause.
			if y, err := Parse(x.String()); err != nil || !x.Equal(y) {
				t.Errorf("Parse(%q) = %v, %v; want the same clause back", x.String(), y, err)
			}

			// The table holds exactly the one row.
			mod, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			if len(mod.Rules) != 1 {
				t.Fatalf("%q %s: %d rules, want 1:\n%s", s, op, len(mod.Rules), src)
			}
			row, err := ast.JSON(mod.Rules[0].Head.Value.Value)
			if err != nil {
				t.Fatal(err)
			}
			var expected any
			switch op {
			case OpExists:
			case OpOneOf, OpNotOneOf:
				expected = []any{c.Values[0], c.Values[1]}
			default:
				expected = c.Values[0]
			}
			if want := []any{[]any{s, string(op), expected, c.String()}}; !reflect.DeepEqual(row, want) {
				t.Errorf("%q %s: conditions = %#v, want %#v", s, op, row, want)
			}

			// And the module compares exactly that value.
			if op == OpExists {
				continue
			}
			hold := op == OpIs || op == OpOneOf || op == OpMatches
			for _, tc := range []struct {
				value any
				match bool
			}{{s, true}, {s + "x", false}, {"x" + s, false}} {
				got := evalModule(t, path, src, map[string]any{"claims": map[string]any{s: tc.value}})
				if want := tc.match == hold; got.Allow != want {
					t.Errorf("%q %s against %q: allow = %v, want %v", s, op, tc.value, got.Allow, want)
				}
			}
		}
	}
}

// quoteGlob escapes the glob special characters of s.
func quoteGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]{},\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestInjectionProviderFields: the provider name and source location are
// only ever comments.
func TestInjectionProviderFields(t *testing.T) {
	for _, s := range []string{"x\npackage evil\nallow := true", "x\rallow := true", "x\u2028allow := true", "\xff\xfe", "x\x00y"} {
		m := Module{ProviderID: testID, ProviderName: s, Source: s, Expr: mustParse(t, "if a exists\n"+"\u2028and b exists")}
		path, src, err := Generate(m)
		if err != nil {
			t.Fatal(err)
		}
		checkModule(t, path, src)
		for i, line := range strings.Split(strings.TrimSpace(string(src)), "\n") {
			if i < 4 && !strings.HasPrefix(line, "#") {
				t.Errorf("name %q: header line %d is not a comment: %q\n%s", s, i+1, line, src)
			}
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	ok := []Condition{{Claim: "a", Op: OpIs, Values: []string{"x"}}}
	for _, tc := range []struct {
		name string
		m    Module
		want string
	}{
		{"empty id", Module{Expr: &Expr{}}, `trust: invalid provider id: "" is not a UUID; write it as 8-4-4-4-12 hex digits, e.g. 550e8400-e29b-41d4-a716-446655440000`},
		{"id with slash", Module{ProviderID: "a/../b", Expr: &Expr{}}, `trust: invalid provider id: "a/../b" is not a UUID`},
		{"id with quote", Module{ProviderID: `a"]`, Expr: &Expr{}}, `trust: invalid provider id: "a\"]" is not a UUID`},
		{"dot id", Module{ProviderID: "..", Expr: &Expr{}}, `trust: invalid provider id: ".." is not a UUID`},
		{"upper-case id", Module{ProviderID: "550E8400-E29B-41D4-A716-446655440000", Expr: &Expr{}}, `trust: invalid provider id: "550E8400-E29B-41D4-A716-446655440000" is not in canonical form`},
		{"long id", Module{ProviderID: providerid.ID(strings.Repeat("a", 129)), Expr: &Expr{}}, `trust: invalid provider id`},
		{"nil expr", Module{ProviderID: testID}, "trust: provider " + testID + `: no condition expression (Expr is nil); parse the condition text with trust.Parse`},
		{"unknown op", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Claim: "a", Op: "equals", Values: []string{"x"}}}}},
			"trust: provider " + testID + `: condition 1: "a": unknown operator "equals"`},
		{"missing value", Module{ProviderID: testID, Expr: &Expr{Conditions: append(ok, Condition{Claim: "a", Op: OpIs})}},
			"trust: provider " + testID + `: condition 2: "a" is: 0 values, want 1`},
		{"value for exists", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Claim: "a", Op: OpExists, Values: []string{"x"}}}}},
			"trust: provider " + testID + `: condition 1: "a" exists: 1 values, want 0`},
		{"empty list", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Claim: "a", Op: OpOneOf}}}},
			"trust: provider " + testID + `: condition 1: "a": "is one of" needs at least one value`},
		{"duplicate", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Claim: "a", Op: OpNotOneOf, Values: []string{"x", "x"}}}}},
			"trust: provider " + testID + `: condition 1: "a" is not one of: duplicate value "x"`},
		{"empty claim", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Op: OpExists}}}},
			"trust: provider " + testID + `: condition 1: empty claim name`},
		{"bad utf-8", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Claim: "a", Op: OpIs, Values: []string{"\xff"}}}}},
			"trust: provider " + testID + `: condition 1: "a" is: value "\ufffd" is not valid UTF-8`},
		{"bad glob", Module{ProviderID: testID, Expr: &Expr{Conditions: []Condition{{Claim: "a", Op: OpMatches, Values: []string{"{x"}}}}},
			"trust: provider " + testID + ": condition 1: \"a\" matches: invalid glob pattern \"{x\": unclosed `{`"},
		{"too many", Module{ProviderID: testID, Expr: &Expr{Conditions: slices.Repeat(ok, MaxClauses+1)}},
			"trust: provider " + testID + `: too many conditions: 257, the limit is 256`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, src, err := Generate(tc.m)
			if err == nil {
				t.Fatalf("Generate = %s, want an error", src)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

func TestLibrary(t *testing.T) {
	path, src := Library()
	if path != "sidecar/trust/lib.rego" {
		t.Errorf("path = %q", path)
	}
	src[0] = 'X' // a copy: changing it changes nothing
	if _, again := Library(); again[0] == 'X' {
		t.Error("Library returns its own buffer")
	}
	_, src = Library()
	checkModule(t, path, src) // formatted, parses, compiles in strict mode
	mod, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	if got := mod.Package.Path.String(); got != "data.sidecar.trust" {
		t.Errorf("package %s", got)
	}
	have := map[string]bool{}
	for _, r := range mod.Rules {
		have[r.Head.Name.String()] = true
	}
	for _, name := range []string{"allow", "deny", "is", "is_not", "one_of", "not_one_of", "matches", "not_matches", "exists", "reason"} {
		if !have[name] {
			t.Errorf("library has no %s", name)
		}
	}
}

// TestGenerateModuleMatchesParser: the tree GenerateModule builds is the
// one OPA's parser gives for the text it generates.
func TestGenerateModuleMatchesParser(t *testing.T) {
	var exprs []*Expr
	for _, g := range goldens {
		exprs = append(exprs, mustParse(t, g.src))
	}
	exprs = append(exprs, &Expr{Conditions: []Condition{
		{Claim: `we"ird\ claim`, Op: OpIsNot, Values: []string{"a\nb"}},
		{Claim: "x", Op: OpNotOneOf, Values: []string{"1", "2"}},
		{Claim: "y", Op: OpNotMatches, Values: []string{"refs/*"}},
		{Claim: "z", Op: OpExists},
	}})
	for i, x := range exprs {
		m := Module{ProviderID: testID, ProviderName: "p", Source: "providers.yaml:1", Expr: x}
		path, src, mod, err := GenerateModule(m)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		if !mod.Equal(parsed) || mod.String() != parsed.String() {
			t.Errorf("case %d: built\n%s\nparsed\n%s", i, mod, parsed)
		}
		if mod.Rules[0].Module != mod || mod.RegoVersion() != ast.RegoV1 {
			t.Errorf("case %d: rule not linked to its module, or not Rego v1", i)
		}
	}
}
