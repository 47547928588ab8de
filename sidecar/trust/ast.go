// Package trust implements the trust-condition language of oidc-sidecar and
// compiles it into Rego.
//
// A trust condition is Buddy's syntax — an optional leading "if", then
// CLAIM is "value" clauses joined by "and" — extended with the operators the
// prior art shows users need:
//
//	repository_owner is "octo-org"
//	event_name is not "pull_request"
//	environment is one of ["staging", "production"]
//	ref is not one of ["refs/heads/dev"]
//	ref matches "refs/heads/release/*"
//	ref does not match "refs/heads/tmp/*"
//	environment exists
//
// Every clause must hold. A missing claim never satisfies a clause, negative
// ones included.
//
// Keywords are case-insensitive. A bare claim name is a run of letters,
// digits, "_", ".", "/", "-" and ":"; any other name is written as a quoted
// string. Values are quoted strings with JSON escapes, or bare true, false
// and JSON numbers, which mean the same as their quoted text: a claim
// equals a value when it is that string, a boolean or number equal to it
// (true and "true", 42 and "42.0"), or an array with such an element.
// Objects and null never equal a value; a null claim counts as missing.
// Glob patterns are OPA's glob.match with "/" as the separator: "*" and "?"
// do not cross "/", "**" does.
//
// Parse turns the text into an Expr; Generate compiles an Expr to one Rego
// module per provider, which evaluates it with the helpers in Library.
package trust

import "fmt"

// Op is a clause's operator.
type Op string

// The operators of the language, by their canonical spelling.
const (
	OpIs         Op = "is"
	OpIsNot      Op = "is not"
	OpOneOf      Op = "is one of"
	OpNotOneOf   Op = "is not one of"
	OpMatches    Op = "matches"
	OpNotMatches Op = "does not match"
	OpExists     Op = "exists"
)

// Pos is a 1-based line and column in a condition's source text.
type Pos struct {
	Line int
	Col  int
}

// Condition is one clause: CLAIM OP VALUE(S).
type Condition struct {
	Claim string // the claim name, verbatim (may contain dots, slashes, hyphens)
	Op    Op
	// Values holds the literal(s) in canonical string form: one for is, is
	// not, matches and does not match; one or more for the "one of"
	// operators; none for exists. Unquoted true/false/numbers are stored as
	// their text ("true", "42").
	Values []string
	Text   string // the clause rendered canonically, e.g. `ref is "refs/heads/main"`
	Pos    Pos    // where the clause starts in the source
}

// Expr is a parsed trust condition: all of its Conditions must hold.
type Expr struct {
	Source     string
	Conditions []Condition
}

// SyntaxError is a parse error with the position it was found at and what
// was expected there.
type SyntaxError struct {
	Pos
	Msg  string // e.g. `expected "is", "matches", "exists" or "does not match" after claim "ref", found "equals"`
	Line string // the source line the error is on, for the caret display
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
}
