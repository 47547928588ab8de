package trust

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// claimsDoc is the claims document the semantics tests run against:
// strings, a CircleCI-style array claim, booleans, numbers, null, an
// object and a mixed array.
const claimsDoc = `{
	"repository_owner": "octo-org",
	"ref": "refs/heads/release/v1",
	"environment": "prod",
	"oidc.circleci.com/context-ids": ["ctx-a", "ctx-b"],
	"oidc.circleci.com/ssh-rerun": false,
	"flag": true,
	"run_number": 42,
	"ratio": 1.5,
	"empty": "",
	"nullclaim": null,
	"obj": {"k": "v"},
	"mixed": ["x", 7, true, null, {"k": "v"}, ["nested"]],
	"quote\"d": "a\"b\\c"
}`

func decodeClaims(t testing.TB, doc string) map[string]any {
	t.Helper()
	var claims map[string]any
	if err := json.Unmarshal([]byte(doc), &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// reason builds the expected denial reason object.
func reason(text, claim string, op Op, expected, actual any) map[string]any {
	msg := text + " (claim missing)"
	if actual != nil {
		b, err := json.Marshal(actual)
		if err != nil {
			panic(err)
		}
		msg = text + " (actual: " + string(b) + ")"
	}
	return map[string]any{
		"code": "condition_failed", "condition": text, "claim": claim, "operator": string(op),
		"expected": expected, "actual": actual, "missing": actual == nil, "message": msg,
	}
}

// normalize round-trips v through JSON so that OPA's numbers (json.Number)
// and Go's compare equal, and sorts a list of reasons by condition.
func normalize(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if list, ok := out.([]any); ok {
		sort.Slice(list, func(i, j int) bool {
			return fmt.Sprint(list[i].(map[string]any)["condition"]) < fmt.Sprint(list[j].(map[string]any)["condition"])
		})
	}
	return out
}

func TestSemantics(t *testing.T) {
	const (
		ctx  = "oidc.circleci.com/context-ids"
		ssh  = "oidc.circleci.com/ssh-rerun"
		ctxs = `["ctx-a", "ctx-b"]`
	)
	ctxVal := []any{"ctx-a", "ctx-b"}
	mixed := []any{"x", 7, true, nil, map[string]any{"k": "v"}, []any{"nested"}}
	obj := map[string]any{"k": "v"}
	_ = ctxs

	tests := []struct {
		cond  string
		allow bool
		deny  []map[string]any // when !allow; exactly these reasons
	}{
		// is: strings
		{`repository_owner is "octo-org"`, true, nil},
		{`repository_owner is "Octo-Org"`, false, []map[string]any{
			reason(`repository_owner is "Octo-Org"`, "repository_owner", OpIs, "Octo-Org", "octo-org")}},
		{`empty is ""`, true, nil},
		{`"quote\"d" is "a\"b\\c"`, true, nil},
		// is: arrays contain
		{ctx + ` is "ctx-b"`, true, nil},
		{ctx + ` is "ctx-c"`, false, []map[string]any{
			reason(ctx+` is "ctx-c"`, ctx, OpIs, "ctx-c", ctxVal)}},
		{`mixed is "7"`, true, nil},
		{`mixed is true`, true, nil},
		{`mixed is "null"`, false, []map[string]any{reason(`mixed is "null"`, "mixed", OpIs, "null", mixed)}},
		{`mixed is "nested"`, false, []map[string]any{reason(`mixed is "nested"`, "mixed", OpIs, "nested", mixed)}},
		// is: booleans and numbers by value
		{ssh + ` is "false"`, true, nil},
		{ssh + ` is false`, true, nil},
		{ssh + ` is FALSE`, true, nil},
		{ssh + ` is "true"`, false, []map[string]any{reason(ssh+` is true`, ssh, OpIs, "true", false)}},
		{`flag is true`, true, nil},
		{`run_number is "42"`, true, nil},
		{`run_number is 42`, true, nil},
		{`run_number is 42.0`, true, nil},
		{`run_number is 4.2e1`, true, nil},
		{`run_number is "042"`, false, []map[string]any{reason(`run_number is "042"`, "run_number", OpIs, "042", 42)}},
		{`run_number is " 42"`, false, []map[string]any{reason(`run_number is " 42"`, "run_number", OpIs, " 42", 42)}},
		{`ratio is 1.5`, true, nil},
		{`ratio is 1.50`, true, nil},
		{`ratio is "1"`, false, []map[string]any{reason(`ratio is 1`, "ratio", OpIs, "1", 1.5)}},
		// a string claim compares as text: "42" is not "42.0"
		{`environment is 42`, false, []map[string]any{reason(`environment is 42`, "environment", OpIs, "42", "prod")}},
		// is: missing, null, object
		{`absent is "x"`, false, []map[string]any{reason(`absent is "x"`, "absent", OpIs, "x", nil)}},
		{`nullclaim is "null"`, false, []map[string]any{reason(`nullclaim is "null"`, "nullclaim", OpIs, "null", nil)}},
		{`obj is "{\"k\":\"v\"}"`, false, []map[string]any{reason(`obj is "{\"k\":\"v\"}"`, "obj", OpIs, `{"k":"v"}`, obj)}},

		// is not
		{`repository_owner is not "evil"`, true, nil},
		{`repository_owner is not "octo-org"`, false, []map[string]any{
			reason(`repository_owner is not "octo-org"`, "repository_owner", OpIsNot, "octo-org", "octo-org")}},
		{ctx + ` is not "ctx-c"`, true, nil},
		{ctx + ` is not "ctx-a"`, false, []map[string]any{reason(ctx+` is not "ctx-a"`, ctx, OpIsNot, "ctx-a", ctxVal)}},
		{ssh + ` is not true`, true, nil},
		{ssh + ` is not false`, false, []map[string]any{reason(ssh+` is not false`, ssh, OpIsNot, "false", false)}},
		{`run_number is not 42`, false, []map[string]any{reason(`run_number is not 42`, "run_number", OpIsNot, "42", 42)}},
		{`run_number is not 43`, true, nil},
		{`absent is not "x"`, false, []map[string]any{reason(`absent is not "x"`, "absent", OpIsNot, "x", nil)}},
		{`nullclaim is not "x"`, false, []map[string]any{reason(`nullclaim is not "x"`, "nullclaim", OpIsNot, "x", nil)}},
		{`obj is not "x"`, true, nil},

		// is one of
		{`environment is one of ["staging", "prod"]`, true, nil},
		{`environment is one of ["staging", "dev"]`, false, []map[string]any{
			reason(`environment is one of ["staging", "dev"]`, "environment", OpOneOf, []any{"staging", "dev"}, "prod")}},
		{ctx + ` is one of ["ctx-z", "ctx-b"]`, true, nil},
		{ctx + ` is one of ["ctx-y", "ctx-z"]`, false, []map[string]any{
			reason(ctx+` is one of ["ctx-y", "ctx-z"]`, ctx, OpOneOf, []any{"ctx-y", "ctx-z"}, ctxVal)}},
		{ssh + ` is one of [true, false]`, true, nil},
		{`run_number is one of [41, "42"]`, true, nil},
		{`run_number is one of [41, 43]`, false, []map[string]any{
			reason(`run_number is one of [41, 43]`, "run_number", OpOneOf, []any{"41", "43"}, 42)}},
		{`absent is one of ["x"]`, false, []map[string]any{reason(`absent is one of ["x"]`, "absent", OpOneOf, []any{"x"}, nil)}},
		{`nullclaim is one of ["x"]`, false, []map[string]any{reason(`nullclaim is one of ["x"]`, "nullclaim", OpOneOf, []any{"x"}, nil)}},
		{`obj is one of ["x"]`, false, []map[string]any{reason(`obj is one of ["x"]`, "obj", OpOneOf, []any{"x"}, obj)}},

		// is not one of
		{`environment is not one of ["staging", "dev"]`, true, nil},
		{`environment is not one of ["staging", "prod"]`, false, []map[string]any{
			reason(`environment is not one of ["staging", "prod"]`, "environment", OpNotOneOf, []any{"staging", "prod"}, "prod")}},
		{ctx + ` is not one of ["ctx-y", "ctx-z"]`, true, nil},
		{ctx + ` is not one of ["ctx-a"]`, false, []map[string]any{
			reason(ctx+` is not one of ["ctx-a"]`, ctx, OpNotOneOf, []any{"ctx-a"}, ctxVal)}},
		{`run_number is not one of [42]`, false, []map[string]any{
			reason(`run_number is not one of [42]`, "run_number", OpNotOneOf, []any{"42"}, 42)}},
		{`absent is not one of ["x"]`, false, []map[string]any{reason(`absent is not one of ["x"]`, "absent", OpNotOneOf, []any{"x"}, nil)}},
		{`nullclaim is not one of ["x"]`, false, []map[string]any{reason(`nullclaim is not one of ["x"]`, "nullclaim", OpNotOneOf, []any{"x"}, nil)}},
		{`obj is not one of ["x"]`, true, nil},

		// matches: "*" does not cross "/", "**" does
		{`ref matches "refs/heads/release/*"`, true, nil},
		{`ref matches "refs/heads/*"`, false, []map[string]any{
			reason(`ref matches "refs/heads/*"`, "ref", OpMatches, "refs/heads/*", "refs/heads/release/v1")}},
		{`ref matches "refs/heads/**"`, true, nil},
		{`ref matches "refs/heads/release/v?"`, true, nil},
		{`ref matches "refs/heads/{main,release/*}"`, true, nil},
		{`ref matches "refs/heads/release/v[0-9]"`, true, nil},
		{`repository_owner matches "octo-*"`, true, nil},
		{`repository_owner matches "octo-org"`, true, nil},
		{ctx + ` matches "ctx-?"`, true, nil},
		{ctx + ` matches "other-*"`, false, []map[string]any{reason(ctx+` matches "other-*"`, ctx, OpMatches, "other-*", ctxVal)}},
		{ssh + ` matches "fal*"`, true, nil},
		{`run_number matches "4*"`, true, nil},
		{`mixed matches "tru?"`, true, nil},
		{`absent matches "*"`, false, []map[string]any{reason(`absent matches "*"`, "absent", OpMatches, "*", nil)}},
		{`nullclaim matches "*"`, false, []map[string]any{reason(`nullclaim matches "*"`, "nullclaim", OpMatches, "*", nil)}},
		{`obj matches "**"`, false, []map[string]any{reason(`obj matches "**"`, "obj", OpMatches, "**", obj)}},

		// does not match
		{`ref does not match "refs/heads/tmp/*"`, true, nil},
		{`ref does not match "refs/heads/*"`, true, nil}, // "*" does not cross "/"
		{`ref does not match "refs/heads/**"`, false, []map[string]any{
			reason(`ref does not match "refs/heads/**"`, "ref", OpNotMatches, "refs/heads/**", "refs/heads/release/v1")}},
		{ctx + ` does not match "ctx-b"`, false, []map[string]any{reason(ctx+` does not match "ctx-b"`, ctx, OpNotMatches, "ctx-b", ctxVal)}},
		{ctx + ` does not match "x*"`, true, nil},
		{ssh + ` does not match "f*"`, false, []map[string]any{reason(ssh+` does not match "f*"`, ssh, OpNotMatches, "f*", false)}},
		{`absent does not match "*"`, false, []map[string]any{reason(`absent does not match "*"`, "absent", OpNotMatches, "*", nil)}},
		{`nullclaim does not match "*"`, false, []map[string]any{reason(`nullclaim does not match "*"`, "nullclaim", OpNotMatches, "*", nil)}},
		{`obj does not match "*"`, true, nil},

		// exists
		{`environment exists`, true, nil},
		{ssh + ` exists`, true, nil}, // false is present
		{`empty exists`, true, nil},
		{`obj exists`, true, nil},
		{`absent exists`, false, []map[string]any{reason(`absent exists`, "absent", OpExists, nil, nil)}},
		{`nullclaim exists`, false, []map[string]any{reason(`nullclaim exists`, "nullclaim", OpExists, nil, nil)}},

		// several clauses: every one must hold, each failure is reported
		{`if repository_owner is "octo-org" and ref matches "refs/heads/release/*" and environment is one of ["prod", "staging"]`, true, nil},
		{`repository_owner is "octo-org" and ref is "refs/heads/main" and absent exists`, false, []map[string]any{
			reason(`ref is "refs/heads/main"`, "ref", OpIs, "refs/heads/main", "refs/heads/release/v1"),
			reason(`absent exists`, "absent", OpExists, nil, nil)}},
		// no clauses: everything passes
		{``, true, nil},
	}
	claims := map[string]any{"claims": decodeClaims(t, claimsDoc)}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			path, src := mustGenerate(t, mustParse(t, tc.cond))
			got := evalModule(t, path, src, claims)
			if got.Allow != tc.allow {
				t.Errorf("allow = %v, want %v", got.Allow, tc.allow)
			}
			want := tc.deny
			if want == nil {
				want = []map[string]any{}
			}
			if g, w := normalize(t, got.Deny), normalize(t, want); !reflect.DeepEqual(g, w) {
				gj, _ := json.MarshalIndent(g, "", "  ")
				wj, _ := json.MarshalIndent(w, "", "  ")
				t.Errorf("deny:\n got %s\nwant %s", gj, wj)
			}
		})
	}
}

// TestSemanticsMessages pins the exact message texts, independently of the
// helper that builds the expected reasons above.
func TestSemanticsMessages(t *testing.T) {
	x := mustParse(t, `ref is "refs/heads/main" and absent exists and oidc.circleci.com/context-ids is "c" and run_number is 7`)
	path, src := mustGenerate(t, x)
	got := evalModule(t, path, src, map[string]any{"claims": decodeClaims(t, claimsDoc)})
	var msgs []string
	for _, r := range got.Deny {
		msgs = append(msgs, r.(map[string]any)["message"].(string))
	}
	sort.Strings(msgs)
	want := []string{
		`absent exists (claim missing)`,
		`oidc.circleci.com/context-ids is "c" (actual: ["ctx-a","ctx-b"])`,
		`ref is "refs/heads/main" (actual: "refs/heads/release/v1")`,
		`run_number is 7 (actual: 42)`,
	}
	if !reflect.DeepEqual(msgs, want) {
		t.Errorf("messages:\n got %q\nwant %q", msgs, want)
	}
}

// TestSemanticsNoClaims: without a claims object every claim is missing;
// nothing errors, allow is false, and every clause is reported.
func TestSemanticsNoClaims(t *testing.T) {
	path, src := mustGenerate(t, mustParse(t, `ref is not "x" and env exists`))
	for _, input := range []any{
		map[string]any{},
		map[string]any{"claims": "not an object"},
		map[string]any{"claims": []any{"ref"}},
		map[string]any{"claims": nil},
	} {
		got := evalModule(t, path, src, input)
		if got.Allow {
			t.Errorf("input %v: allow = true", input)
		}
		if len(got.Deny) != 2 {
			t.Errorf("input %v: deny = %v, want 2 reasons", input, got.Deny)
		}
		for _, r := range got.Deny {
			if r.(map[string]any)["missing"] != true {
				t.Errorf("input %v: reason %v: want missing", input, r)
			}
		}
	}
}

// TestSemanticsNumbers: number claims as the JSON decoder, jwx and OPA's
// own input conversion may deliver them. (Integers beyond 2^53 delivered as
// float64 are not exact: OPA keeps the shortest decimal form of the float.)
func TestSemanticsNumbers(t *testing.T) {
	path, src := mustGenerate(t, mustParse(t, `iat is 1700000000 and n is "42" and big is 9007199254740991`))
	for _, claims := range []map[string]any{
		{"iat": float64(1700000000), "n": float64(42), "big": float64(1<<53 - 1)},
		{"iat": int64(1700000000), "n": 42, "big": int64(1<<53 - 1)},
		{"iat": json.Number("1700000000"), "n": json.Number("42.0"), "big": json.Number("9.007199254740991e15")},
	} {
		if got := evalModule(t, path, src, map[string]any{"claims": claims}); !got.Allow {
			t.Errorf("claims %v: allow = false, deny = %v", claims, got.Deny)
		}
	}
}

// TestLibraryFailsClosed: rows a generator never writes (unknown operator,
// wrong shape, wrong types) never hold and raise no error.
func TestLibraryFailsClosed(t *testing.T) {
	src := []byte(`package sidecar.conditions["` + testID + `"]

import data.sidecar.trust

allow := trust.allow(conditions)

deny := trust.deny(conditions)

conditions := [
	["ref", "equals", "x", "ref equals x"],
	["ref", "is"],
	["ref", "matches", 7, "ref matches 7"],
	["ref", "is", 7, "ref is 7"],
	["ref", "is one of", "x", "ref is one of x"],
	[1, "exists", null, "1 exists"],
]
`)
	for _, claims := range []any{map[string]any{"ref": "x", "1": "y"}, map[string]any{"ref": 7.0}} {
		got := evalModule(t, "custom.rego", src, map[string]any{"claims": claims})
		if got.Allow {
			t.Errorf("claims %v: allow = true", claims)
		}
	}
}

// TestLibraryDirectCalls: the helpers can be called from hand-written
// modules with any claims object.
func TestLibraryDirectCalls(t *testing.T) {
	src := []byte(`package sidecar.conditions["` + testID + `"]

import data.sidecar.trust

allow if {
	trust.is(input.claims, "ref", "refs/heads/main")
	trust.is_not(input.claims, "ref", "refs/heads/dev")
	trust.one_of(input.claims, "ids", ["b", "z"])
	trust.not_one_of(input.claims, "ids", ["z"])
	trust.matches(input.claims, "ref", "refs/heads/*")
	trust.not_matches(input.claims, "ref", "refs/tags/*")
	trust.exists(input.claims, "ids")
	not trust.exists(input.claims, "gone")
}

deny := {trust.reason(input.claims, "gone exists", "gone", "exists", null)}

conditions := []
`)
	got := evalModule(t, "custom.rego", src, map[string]any{"claims": map[string]any{"ref": "refs/heads/main", "ids": []any{"a", "b"}}})
	if !got.Allow {
		t.Error("allow = false")
	}
	if want := normalize(t, []any{reason("gone exists", "gone", OpExists, nil, nil)}); !reflect.DeepEqual(normalize(t, got.Deny), want) {
		t.Errorf("deny = %v, want %v", got.Deny, want)
	}
}

// TestGlobSemanticsMatchOPA cross-checks the parser's glob validation and
// OPA's glob.match on the same patterns: anything Parse accepts, OPA
// compiles without error.
func TestGlobSemanticsMatchOPA(t *testing.T) {
	for _, p := range []string{`a\\*b`, `{a,b}`, `[!a-c]x`, `**/x`, `?`, `a/**/b`, `[\\]]`} {
		cond := `ref matches "` + p + `"`
		x := mustParse(t, cond)
		path, src := mustGenerate(t, x)
		evalModule(t, path, src, map[string]any{"claims": map[string]any{"ref": strings.Repeat("a/", 3)}})
	}
}

// TestDocumentedGlobSyntax evaluates every row of the glob table in
// docs/policy.md with OPA, so that the docs and the loader agree on the
// glob syntax (issue 11 #10).
func TestDocumentedGlobSyntax(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- glob-examples -->")
	table, _, ok2 := strings.Cut(rest, "<!-- /glob-examples -->")
	if !ok || !ok2 {
		t.Fatal("docs/policy.md has no <!-- glob-examples --> table")
	}
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) != 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		cell := func(i int) string { return strings.Trim(strings.TrimSpace(cells[i]), "`") }
		pattern, value, result := cell(1), cell(2), cell(3)
		x, err := Parse("ref matches " + pattern)
		if err != nil {
			t.Errorf("documented pattern %s does not load: %v", pattern, err)
			continue
		}
		path, src := mustGenerate(t, x)
		r := evalModule(t, path, src, map[string]any{"claims": map[string]any{"ref": value}})
		if want := result == "matches"; r.Allow != want {
			t.Errorf("docs say %s %s %s; OPA says allow=%v", pattern, result, value, r.Allow)
		}
		rows++
	}
	if rows < 10 {
		t.Fatalf("found %d rows in the glob table", rows)
	}
}
