package trust

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// String renders the expression canonically: clauses joined by " and ",
// without a leading "if". Parse(x.String()) gives an Expr equal to x (see
// Equal). A nil or empty Expr renders as "".
func (x *Expr) String() string {
	if x == nil {
		return ""
	}
	var b strings.Builder
	for i, c := range x.Conditions {
		if i > 0 {
			b.WriteString(" and ")
		}
		b.WriteString(c.String())
	}
	return b.String()
}

// Equal reports whether x and y hold the same clauses (claim, operator and
// values, in order). Source text and positions are not compared.
func (x *Expr) Equal(y *Expr) bool {
	if x == nil || y == nil {
		return x == y
	}
	return slices.EqualFunc(x.Conditions, y.Conditions, func(a, b Condition) bool {
		return a.Claim == b.Claim && a.Op == b.Op && slices.Equal(a.Values, b.Values)
	})
}

// Pins reports whether some clause is CLAIM is "value" for one of the given
// claim names (compared exactly). It is how a provider is checked to pin a
// shared issuer's tokens to an owner, e.g.
// x.Pins("repository_owner", "repository_owner_id") for GitHub Actions.
func (x *Expr) Pins(claims ...string) bool {
	if x == nil {
		return false
	}
	for _, c := range x.Conditions {
		if c.Op == OpIs && slices.Contains(claims, c.Claim) {
			return true
		}
	}
	return false
}

// String renders the clause canonically, e.g. `ref is "refs/heads/main"`:
// the claim bare when it can be written bare, otherwise quoted; the
// operator's canonical spelling; values quoted, with JSON escapes for
// quotes, backslashes and non-printable characters — except that the
// comparisons (is, is not, is one of) show true, false and JSON numbers
// bare, as they are usually written (`ssh-rerun is false`): a comparison
// matches a boolean or number claim by its text, so `is false` and
// `is "false"` are the same condition.
func (c Condition) String() string {
	lit := quote
	switch c.Op {
	case OpIs, OpIsNot, OpOneOf, OpNotOneOf:
		lit = literal
	}
	var b strings.Builder
	b.WriteString(renderClaim(c.Claim))
	b.WriteByte(' ')
	b.WriteString(string(c.Op))
	switch c.Op {
	case OpExists:
	case OpOneOf, OpNotOneOf:
		b.WriteString(" [")
		for i, v := range c.Values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(lit(v))
		}
		b.WriteByte(']')
	default:
		for _, v := range c.Values {
			b.WriteByte(' ')
			b.WriteString(lit(v))
		}
	}
	return b.String()
}

// literal writes true, false and canonical JSON numbers bare, anything
// else quoted.
func literal(v string) string {
	if v == "true" || v == "false" {
		return v
	}
	if f := jsonNumber.FindString(v); f == v && v != "" {
		return v
	}
	return quote(v)
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// renderClaim writes a claim name bare if it lexes back as the same bare
// word, else quoted.
func renderClaim(name string) string {
	if name == "" || isKeyword(name) || !utf8.ValidString(name) {
		return quote(name)
	}
	for _, r := range name {
		if !isClaimChar(r) {
			return quote(name)
		}
	}
	return name
}

// caretContext bounds the source shown by Caret: at most this many
// characters before and after the offending column, the cuts marked "...".
const caretContext = 60

// Caret renders the error's source line with a caret under the offending
// column on the line below; tabs before the column are kept so that the
// caret lines up. A long line is cut to caretContext characters either
// side of the column.
func (e *SyntaxError) Caret() string {
	line, col := e.Line, e.Col
	if runes := []rune(line); len(runes) > 2*caretContext+1 {
		from := max(0, min(col-1, len(runes))-caretContext)
		to := min(len(runes), from+2*caretContext+1)
		line = string(runes[from:to])
		col -= from
		if from > 0 {
			line = "..." + line
			col += 3
		}
		if to < len(runes) {
			line += "..."
		}
	}
	var b strings.Builder
	b.WriteString(line)
	b.WriteByte('\n')
	n := 0
	for _, r := range line {
		if n >= col-1 {
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
		n++
	}
	for ; n < col-1; n++ {
		b.WriteByte(' ')
	}
	b.WriteByte('^')
	return b.String()
}

// check reports what makes the condition unusable for code generation, for
// conditions not made by Parse.
func (c *Condition) check() error {
	switch {
	case c.Claim == "":
		return fmt.Errorf("empty claim name")
	case len(c.Claim) > MaxClaimBytes:
		return fmt.Errorf("claim name is too long: %d bytes, the limit is %d", len(c.Claim), MaxClaimBytes)
	case !utf8.ValidString(c.Claim):
		return fmt.Errorf("claim name %s is not valid UTF-8", quote(c.Claim))
	}
	want := 1
	switch c.Op {
	case OpIs, OpIsNot, OpMatches, OpNotMatches:
	case OpExists:
		want = 0
	case OpOneOf, OpNotOneOf:
		if len(c.Values) == 0 {
			return fmt.Errorf("%s: %q needs at least one value", quote(c.Claim), c.Op)
		}
		want = len(c.Values)
	default:
		return fmt.Errorf("%s: unknown operator %q", quote(c.Claim), c.Op)
	}
	if len(c.Values) != want {
		return fmt.Errorf("%s %s: %d values, want %d", quote(c.Claim), c.Op, len(c.Values), want)
	}
	for i, v := range c.Values {
		if !utf8.ValidString(v) {
			return fmt.Errorf("%s %s: value %s is not valid UTF-8", quote(c.Claim), c.Op, quote(v))
		}
		if c.Op != OpMatches && c.Op != OpNotMatches && numberOutOfRange(v) {
			return fmt.Errorf("%s %s: %s", quote(c.Claim), c.Op, outOfRangeMsg(quote(truncate(v, 40)), true))
		}
		if slices.Contains(c.Values[:i], v) {
			return fmt.Errorf("%s %s: duplicate value %s", quote(c.Claim), c.Op, quote(v))
		}
	}
	if c.Op == OpMatches || c.Op == OpNotMatches {
		if err := checkGlob(c.Values[0]); err != nil {
			return fmt.Errorf("%s %s: invalid glob pattern %s: %s", quote(c.Claim), c.Op, quote(c.Values[0]), globReason(err))
		}
	}
	return nil
}
