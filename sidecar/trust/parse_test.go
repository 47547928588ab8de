package trust

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// cond builds an expected Condition; its Text is the canonical rendering
// given.
func cond(line, col int, claim string, op Op, text string, values ...string) Condition {
	return Condition{Claim: claim, Op: op, Values: values, Text: text, Pos: Pos{line, col}}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []Condition
	}{
		{"empty", "", nil},
		{"blank", " \n\t\r\n ", nil},
		{"is", `repository_owner is "octo-org"`, []Condition{
			cond(1, 1, "repository_owner", OpIs, `repository_owner is "octo-org"`, "octo-org")}},
		{"leading if", `if repository_owner is "octo-org"`, []Condition{
			cond(1, 4, "repository_owner", OpIs, `repository_owner is "octo-org"`, "octo-org")}},
		{"keywords in any case", `IF Repository_Owner IS "x" AnD ref Is NoT "y"`, []Condition{
			cond(1, 4, "Repository_Owner", OpIs, `Repository_Owner is "x"`, "x"),
			cond(1, 32, "ref", OpIsNot, `ref is not "y"`, "y")}},
		{"every operator", `a is "1" and b is not "2" and c is one of ["3", "4"] and d is not one of ["5"] and e matches "6*" and f does not match "7*" and g exists`, []Condition{
			cond(1, 1, "a", OpIs, `a is 1`, "1"),
			cond(1, 14, "b", OpIsNot, `b is not 2`, "2"),
			cond(1, 31, "c", OpOneOf, `c is one of [3, 4]`, "3", "4"),
			cond(1, 58, "d", OpNotOneOf, `d is not one of [5]`, "5"),
			cond(1, 84, "e", OpMatches, `e matches "6*"`, "6*"),
			cond(1, 103, "f", OpNotMatches, `f does not match "7*"`, "7*"),
			cond(1, 129, "g", OpExists, `g exists`)}},
		{"operators in upper case", `e MATCHES "x" AND f DOES NOT MATCH "y" AND g EXISTS AND h IS NOT ONE OF ["z"]`, []Condition{
			cond(1, 1, "e", OpMatches, `e matches "x"`, "x"),
			cond(1, 19, "f", OpNotMatches, `f does not match "y"`, "y"),
			cond(1, 44, "g", OpExists, `g exists`),
			cond(1, 57, "h", OpNotOneOf, `h is not one of ["z"]`, "z")}},
		{"multi-line with tabs and CRLF", "if repository_owner is \"octo-org\"\r\nand ref matches \"refs/heads/*\"\r\n\tand environment exists\r\n", []Condition{
			cond(1, 4, "repository_owner", OpIs, `repository_owner is "octo-org"`, "octo-org"),
			cond(2, 5, "ref", OpMatches, `ref matches "refs/heads/*"`, "refs/heads/*"),
			cond(3, 6, "environment", OpExists, `environment exists`)}},
		{"line breaks between every token", "if\nref\nis\nnot\none\nof\n[\n\"a\"\n,\n]\nand\nx\nexists", []Condition{
			cond(2, 1, "ref", OpNotOneOf, `ref is not one of ["a"]`, "a"),
			cond(12, 1, "x", OpExists, `x exists`)}},
		{"no space before strings and lists", `ref is"x" and ids is one of["a","b"]`, []Condition{
			cond(1, 1, "ref", OpIs, `ref is "x"`, "x"),
			cond(1, 15, "ids", OpOneOf, `ids is one of ["a", "b"]`, "a", "b")}},
		{"claim characters", `oidc.circleci.com/project-id is "p" and a:b_c-9 is "q" and 123 exists and café is "r"`, []Condition{
			cond(1, 1, "oidc.circleci.com/project-id", OpIs, `oidc.circleci.com/project-id is "p"`, "p"),
			cond(1, 41, "a:b_c-9", OpIs, `a:b_c-9 is "q"`, "q"),
			cond(1, 60, "123", OpExists, `123 exists`),
			cond(1, 75, "café", OpIs, `café is "r"`, "r")}},
		{"quoted claims", `"my claim" is "x" and "if" exists and "a\"b" is "y" and "plain" is "z"`, []Condition{
			cond(1, 1, "my claim", OpIs, `"my claim" is "x"`, "x"),
			cond(1, 23, "if", OpExists, `"if" exists`),
			cond(1, 39, `a"b`, OpIs, `"a\"b" is "y"`, "y"),
			cond(1, 57, "plain", OpIs, `plain is "z"`, "z")}},
		{"escapes", `a is "q\"b\\s\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000"`, []Condition{
			cond(1, 1, "a", OpIs, `a is "q\"b\\s/\b\f\n\r\té😀\u0000"`, "q\"b\\s/\b\f\n\r\té😀\x00")}},
		{"unicode kept, invisible characters escaped", "a is \"é—\u200b\u202e\"", []Condition{
			cond(1, 1, "a", OpIs, `a is "é—\u200b\u202e"`, "é—\u200b\u202e")}},
		{"lists", `a is one of ["x", "y",] and b is not one of [ "z" ] and c is one of [1, true, "s", -2.5e+3]`, []Condition{
			cond(1, 1, "a", OpOneOf, `a is one of ["x", "y"]`, "x", "y"),
			cond(1, 29, "b", OpNotOneOf, `b is not one of ["z"]`, "z"),
			cond(1, 57, "c", OpOneOf, `c is one of [1, true, "s", -2.5e+3]`, "1", "true", "s", "-2.5e+3")}},
		{"numbers and booleans", `a is 42 and b is -0.5 and c is 1E9 and d is 0 and e is TRUE and f is not false and g is 1e-7`, []Condition{
			cond(1, 1, "a", OpIs, `a is 42`, "42"),
			cond(1, 13, "b", OpIs, `b is -0.5`, "-0.5"),
			cond(1, 27, "c", OpIs, `c is 1E9`, "1E9"),
			cond(1, 40, "d", OpIs, `d is 0`, "0"),
			cond(1, 51, "e", OpIs, `e is true`, "true"),
			cond(1, 65, "f", OpIsNot, `f is not false`, "false"),
			cond(1, 84, "g", OpIs, `g is 1e-7`, "1e-7")}},
		{"number before a list delimiter", `a is one of [1,2]`, []Condition{
			cond(1, 1, "a", OpOneOf, `a is one of [1, 2]`, "1", "2")}},
		{"byte order mark", "\uFEFFref exists", []Condition{cond(1, 2, "ref", OpExists, `ref exists`)}},
		{"unicode space", "ref\u00a0exists", []Condition{cond(1, 1, "ref", OpExists, `ref exists`)}},
		{"glob escapes", `ref matches "refs/heads/\\*" and ref matches "{a,b}/[!x]?/**"`, []Condition{
			cond(1, 1, "ref", OpMatches, `ref matches "refs/heads/\\*"`, `refs/heads/\*`),
			cond(1, 34, "ref", OpMatches, `ref matches "{a,b}/[!x]?/**"`, "{a,b}/[!x]?/**")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Parse(tc.src)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.src, err)
			}
			if x.Source != tc.src {
				t.Errorf("Source = %q", x.Source)
			}
			if !reflect.DeepEqual(x.Conditions, tc.want) {
				t.Errorf("Parse(%q):\n got %#v\nwant %#v", tc.src, x.Conditions, tc.want)
			}
			// The canonical text parses back to the same clauses.
			y, err := Parse(x.String())
			if err != nil {
				t.Fatalf("Parse(String() = %q): %v", x.String(), err)
			}
			if !x.Equal(y) {
				t.Errorf("round trip through %q changed the clauses", x.String())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", MaxClaimBytes+1)
	many := strings.TrimSuffix(strings.Repeat("a exists and ", MaxClauses+1), " and ")
	big := "a is \"" + strings.Repeat("x", MaxSourceBytes) + "\""
	tests := []struct {
		src       string
		line, col int
		msg       string
		caret     string // "" = not checked
	}{
		{`ref is "main" or env is "x"`, 1, 15, `expected "and" or end of conditions, found "or"`,
			"ref is \"main\" or env is \"x\"\n              ^"},
		{`ref is "main`, 1, 8, `unterminated string (add the closing "; strings cannot span lines, write \n for a line break)`,
			"ref is \"main\n       ^"},
		{"ref is \"main\nand x exists", 1, 8, `unterminated string (add the closing "; strings cannot span lines, write \n for a line break)`, ""},
		{`ref is`, 1, 7, `expected a quoted value after "is", found end of input`, "ref is\n      ^"},
		{"ref is \n\n", 1, 7, `expected a quoted value after "is", found end of input`, ""},
		{`ref equals "x"`, 1, 5, `expected "is", "matches", "exists" or "does not match" after claim "ref", found "equals"`, ""},
		{`ref == "x"`, 1, 5, `expected "is", "matches", "exists" or "does not match" after claim "ref", found "==" (write CLAIM is "value" or CLAIM is not "value")`, ""},
		{`my claim is "x"`, 1, 4, `expected "is", "matches", "exists" or "does not match" after claim "my", found "claim" (a bare claim name cannot contain spaces; quote the name)`, ""},
		{`ref is refs/heads/main`, 1, 8, `expected a quoted value after "is", found unquoted refs/heads/main (write "refs/heads/main")`, ""},
		{`ref is not main`, 1, 12, `expected a quoted value after "is not", found unquoted main (write "main")`, ""},
		{`ref matches refs/*`, 1, 13, `expected a quoted glob pattern after "matches", found unquoted refs/* (write "refs/*")`, ""},
		{`ref does not match ["a"]`, 1, 20, `expected a quoted glob pattern after "does not match", found "["`, ""},
		{`and ref is "x"`, 1, 1, `expected a claim, found the keyword "and" (to use a claim with that name, quote it: "and")`, ""},
		{`if`, 1, 3, `expected a claim after "if", found end of input`, ""},
		{`if if is "x"`, 1, 4, `expected a claim after "if", found the keyword "if" (to use a claim with that name, quote it: "if")`, ""},
		{`ref is "x" and`, 1, 15, `expected a claim after "and", found end of input`, ""},
		{`ref is "x" and and`, 1, 16, `expected a claim after "and", found the keyword "and" (to use a claim with that name, quote it: "and")`, ""},
		{`[ is "x"`, 1, 1, `expected a claim, found "["`, ""},
		{`"" is "x"`, 1, 1, `expected a claim, found an empty string (claim names cannot be empty)`, ""},
		{`ref is one of "x"`, 1, 15, `expected "[" after "is one of", found the string "x" (write is one of ["a", "b"])`, ""},
		{`ref is not one of x`, 1, 19, `expected "[" after "is not one of", found "x" (write is not one of ["a", "b"])`, ""},
		{`ref is one of []`, 1, 16, `expected a quoted value in the list, found "]" (a list needs at least one value)`, ""},
		{`ref is one of ["a", "b", "a"]`, 1, 26, `duplicate value "a" in the list`, ""},
		{`ref is one of [1, "1"]`, 1, 19, `duplicate value "1" in the list`, ""},
		{`ref is one of ["a" "b"]`, 1, 20, `expected "," or "]" in the list, found the string "b"`, ""},
		{`ref is one of ["a",`, 1, 20, `expected a quoted value in the list, found end of input`, ""},
		{`ref is one of ["a", b]`, 1, 21, `expected a quoted value in the list, found unquoted b (write "b")`, ""},
		{`ref is one of [,]`, 1, 16, `expected a quoted value in the list, found ","`, ""},
		{`ref is not one "x"`, 1, 16, `expected "of" after "is not one", found the string "x"`, ""},
		{`ref is one`, 1, 11, `expected "of" after "is one", found end of input`, ""},
		{`ref does match "x"`, 1, 10, `expected "not" after "does", found "match"`, ""},
		{`ref does not matches "x"`, 1, 14, `expected "match" after "does not", found "matches"`, ""},
		{`ref exists "x"`, 1, 12, `expected "and" or end of conditions, found the string "x"`, ""},
		{`ref is "x" "y"`, 1, 12, `expected "and" or end of conditions, found the string "y"`, ""},
		{`ref matches "refs/{a,b"`, 1, 23, "invalid glob pattern: unclosed `{` (to match one of * ? [ ] { } , \\ literally, put a backslash before it, written \\\\ inside the quotes)",
			"ref matches \"refs/{a,b\"\n                      ^"},
		{`ref matches "[z-a]"`, 1, 19, "invalid glob pattern: range hi character is less than lo (to match one of * ? [ ] { } , \\ literally, put a backslash before it, written \\\\ inside the quotes)", ""},
		{`ref is "a\qb"`, 1, 10, `invalid escape "\q" in string (valid escapes: \" \\ \/ \b \f \n \r \t \uXXXX; write \\ for a backslash)`, ""},
		{`ref is "\u12"`, 1, 9, `invalid escape in string: \u must be followed by four hex digits`, ""},
		{`ref is "\ud800"`, 1, 9, `invalid escape in string: \ud800 is half of a UTF-16 surrogate pair (write the character itself, or both halves)`, ""},
		{`ref is "\udc00\ud800"`, 1, 9, `invalid escape in string: \udc00 is half of a UTF-16 surrogate pair (write the character itself, or both halves)`, ""},
		{"ref is \"a\tb\"", 1, 10, `invalid character U+0009 in string (write it as \t)`, "ref is \"a\tb\"\n         ^"},
		{"ref is \"a\x00\"", 1, 10, `invalid character U+0000 in string (write it as \u0000)`, ""},
		{`ref is 01`, 1, 8, `invalid number 01 (numbers use JSON syntax; to compare text, quote it: "01")`, ""},
		{`ref is 1e+`, 1, 8, `invalid number 1e+ (numbers use JSON syntax; to compare text, quote it: "1e+")`, ""},
		{`ref is 1.`, 1, 8, `invalid number 1. (numbers use JSON syntax; to compare text, quote it: "1.")`, ""},
		{`ref is 12abc`, 1, 8, `invalid number 12abc (numbers use JSON syntax; to compare text, quote it: "12abc")`, ""},
		{"ref\x01 is", 1, 4, `expected "is", "matches", "exists" or "does not match" after claim "ref", found the character U+0001`, ""},
		{"ref is \"\xff\"", 1, 9, `invalid UTF-8 byte 0xff; condition text must be UTF-8`, ""},
		{"ref is \"x\"\n\tand\tenv equals \"y\"", 2, 10, `expected "is", "matches", "exists" or "does not match" after claim "env", found "equals"`,
			"\tand\tenv equals \"y\"\n\t   \t    ^"},
		{"ref is \"x\" and\n  env\n\n", 2, 6, `expected "is", "matches", "exists" or "does not match" after claim "env", found end of input`,
			"  env\n     ^"},
		{"été is \"x\" or", 1, 12, `expected "and" or end of conditions, found "or"`, "été is \"x\" or\n           ^"},
		// Numbers beyond float64 fail Rego's to_number at every evaluation
		// against a number claim (issue 11 #3).
		{`a is 1e400`, 1, 6, "number 1e400 " + rangeTail, ""},
		{`a is "x" and b is not -1E+400`, 1, 23, "number -1E+400 " + rangeTail, ""},
		{`a is "1e400"`, 1, 6, `value "1e400" reads as a number that ` + rangeTail, ""},
		{`a is one of ["x", 1, "` + "1" + strings.Repeat("0", 400) + `"]`, 1, 22, `value "1` + strings.Repeat("0", 39) + `…" reads as a number that ` + rangeTail, ""},
		{long + ` exists`, 1, 1, fmt.Sprintf("claim name is too long: %d bytes, the limit is %d", MaxClaimBytes+1, MaxClaimBytes), ""},
		{many, 1, 1 + MaxClauses*len("a exists and "), fmt.Sprintf("too many conditions: the limit is %d", MaxClauses), ""},
		// At the start, with a short caret display (issue 11 #14).
		{big, 1, 1, fmt.Sprintf("condition text is too long: %d bytes, the limit is %d; split it up or shorten it", len(big), MaxSourceBytes),
			big[:2*caretContext+1] + "...\n^"},
	}
	for _, tc := range tests {
		name := tc.src
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			x, err := Parse(tc.src)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tc.src, x.Conditions)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is %T, not *SyntaxError", err, err)
			}
			if se.Pos != (Pos{tc.line, tc.col}) || se.Msg != tc.msg {
				t.Errorf("Parse(%q):\n got %d:%d %s\nwant %d:%d %s", tc.src, se.Pos.Line, se.Pos.Col, se.Msg, tc.line, tc.col, tc.msg)
			}
			if want := fmt.Sprintf("line %d, column %d: %s", tc.line, tc.col, tc.msg); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			if tc.caret != "" && se.Caret() != tc.caret {
				t.Errorf("Caret():\n%s\nwant:\n%s", se.Caret(), tc.caret)
			}
		})
	}
}

const rangeTail = "is beyond the range of numbers claims are compared as (about ±1.8e308): a claim that is a number could not be compared with it, and every evaluation would fail; write a number within range"

func TestNumbersInRangeAccepted(t *testing.T) {
	for _, src := range []string{`a is 1e308`, `a is 1e-400`, `a is "1e-400"`, `a matches "1e400"`, `a is "1e400x"`, `a is -0.5E+2`} {
		if _, err := Parse(src); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
	c := Condition{Claim: "a", Op: OpIs, Values: []string{"1e400"}}
	if err := c.check(); err == nil || !strings.Contains(err.Error(), rangeTail) {
		t.Errorf("check of a condition not made by Parse: %v", err)
	}
}

func TestCaret(t *testing.T) {
	for _, tc := range []struct {
		e    SyntaxError
		want string
	}{
		{SyntaxError{Pos: Pos{1, 1}, Line: "abc"}, "abc\n^"},
		{SyntaxError{Pos: Pos{1, 3}, Line: "\t\tx"}, "\t\tx\n\t\t^"},
		{SyntaxError{Pos: Pos{1, 6}, Line: "ab"}, "ab\n     ^"}, // past the end
		{SyntaxError{Pos: Pos{1, 3}, Line: "éé!"}, "éé!\n  ^"},
		{SyntaxError{Pos: Pos{1, 1}, Line: ""}, "\n^"},
		// Long lines are cut around the column.
		{SyntaxError{Pos: Pos{1, 200}, Line: strings.Repeat("a", 199) + "!" + strings.Repeat("b", 300)},
			"..." + strings.Repeat("a", 60) + "!" + strings.Repeat("b", 60) + "...\n" + strings.Repeat(" ", 63) + "^"},
		{SyntaxError{Pos: Pos{1, 3}, Line: strings.Repeat("é", 500)},
			strings.Repeat("é", 121) + "...\n  ^"},
		{SyntaxError{Pos: Pos{1, 500}, Line: strings.Repeat("x", 450)},
			"..." + strings.Repeat("x", 60) + "\n" + strings.Repeat(" ", 112) + "^"},
	} {
		if got := tc.e.Caret(); got != tc.want {
			t.Errorf("Caret(%q, col %d) = %q, want %q", tc.e.Line, tc.e.Col, got, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{``, ``},
		{`if A is "x"`, `A is "x"`},
		{"a IS NOT ONE OF [\"x\",\n\"y\",]\nAND b DOES NOT MATCH \"*\"", `a is not one of ["x", "y"] and b does not match "*"`},
		{`"and" exists and "a b" is "c" and "" is not one of ["1"]`, ""}, // error case filtered below
		{`"AND" exists and "TRUE" is true and "x\u0007" exists`, `"AND" exists and "TRUE" is true and "x\u0007" exists`},
		{`ab is "tab\there"`, `ab is "tab\there"`},
	} {
		x, err := Parse(tc.src)
		if err != nil {
			if tc.want == "" {
				continue
			}
			t.Fatal(err)
		}
		if got := x.String(); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.src, got, tc.want)
		}
	}
	var nilExpr *Expr
	if nilExpr.String() != "" || nilExpr.Pins("a") || !nilExpr.Equal(nil) || nilExpr.Equal(&Expr{}) {
		t.Error("nil Expr methods")
	}
}

func TestPins(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`repository_owner is "octo-org"`, true},
		{`if ref is "x" and repository_owner_id is "123"`, true},
		{`repository_owner is not "octo-org"`, false},
		{`repository_owner is one of ["octo-org"]`, false},
		{`repository_owner matches "octo-org"`, false},
		{`repository_owner exists`, false},
		{`Repository_Owner is "octo-org"`, false}, // claim names are case-sensitive
		{`"repository_owner" is "octo-org"`, true},
		{``, false},
	} {
		if got := mustParse(t, tc.src).Pins("repository_owner", "repository_owner_id"); got != tc.want {
			t.Errorf("Pins(%q) = %v, want %v", tc.src, got, tc.want)
		}
	}
	if mustParse(t, `repository_owner is "x"`).Pins() {
		t.Error("Pins() with no names = true")
	}
}
