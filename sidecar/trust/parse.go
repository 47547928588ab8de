package trust

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gobwas/glob"
)

// Limits on a condition's source text. Exceeding one is a *SyntaxError.
const (
	MaxSourceBytes = 16 << 10 // the whole condition text
	MaxClauses     = 256      // clauses joined by "and"
	MaxClaimBytes  = 256      // one claim name
)

// GlobSeparator is the character "*" and "?" do not match in patterns
// ("**" does). Patterns are compiled and matched the way OPA's
// glob.match(pattern, ["/"], value) does.
const GlobSeparator = '/'

// keywords are the words of the language. They are matched without regard
// to (ASCII) case, and a bare claim name cannot be one of them; quote it.
var keywords = map[string]bool{
	"if": true, "and": true, "is": true, "not": true, "one": true, "of": true,
	"matches": true, "does": true, "match": true, "exists": true,
	"true": true, "false": true,
}

// Parse parses a trust condition: an optional leading "if", then clauses
// joined by "and". Empty text (or only whitespace) gives an Expr with no
// conditions. Errors are *SyntaxError.
func Parse(src string) (*Expr, error) {
	p := &parser{src: src}
	conds, err := p.parse()
	if err != nil {
		return nil, err
	}
	return &Expr{Source: src, Conditions: conds}, nil
}

// token kinds.
const (
	tEOF    = iota
	tWord   // a run of claim characters: letters, digits, _ . / - :
	tString // a double-quoted string
	tLBrack // [
	tRBrack // ]
	tComma  // ,
	tOther  // anything else (an error wherever it appears)
)

type token struct {
	kind     int
	off, end int    // byte offsets in the source
	val      string // tString: the decoded value
}

type parser struct {
	src   string
	off   int   // where the next token is scanned from
	lines []int // byte offsets of line starts, built on first use
}

// isClaimChar reports whether r may appear in a bare claim name.
func isClaimChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r == '_', r == '.', r == '/', r == '-', r == ':':
		return true
	case r < utf8.RuneSelf:
		return false
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// isSpace reports whether r separates tokens.
func isSpace(r rune) bool {
	return r == ' ' || r == '\n' || r == '\t' || r == '\r' || r >= utf8.RuneSelf && unicode.IsSpace(r)
}

// isKeyword reports whether w is a keyword, in any ASCII case.
func isKeyword(w string) bool {
	if len(w) > len("matches") {
		return false
	}
	return keywords[asciiLower(w)]
}

// asciiLower lowercases the ASCII letters of s. Keywords are ASCII, and
// ASCII-only folding keeps look-alikes (the Kelvin sign, the long s) from
// being read as keywords.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func (p *parser) parse() ([]Condition, error) {
	if len(p.src) > MaxSourceBytes {
		// At the start: the whole text is the problem, not the byte where
		// the limit happens to fall.
		return nil, p.errorf(0, "condition text is too long: %d bytes, the limit is %d; split it up or shorten it",
			len(p.src), MaxSourceBytes)
	}
	if !utf8.ValidString(p.src) {
		off := 0
		for off < len(p.src) {
			r, size := utf8.DecodeRuneInString(p.src[off:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			off += size
		}
		return nil, p.errorf(off, "invalid UTF-8 byte 0x%02x; condition text must be UTF-8", p.src[off])
	}
	if strings.HasPrefix(p.src, "\uFEFF") {
		p.off = len("\uFEFF") // skip a byte order mark
	}

	t, err := p.next()
	if err != nil {
		return nil, err
	}
	if t.kind == tEOF {
		return nil, nil
	}
	after := ""
	if p.isWord(t, "if") {
		after = "if"
		if t, err = p.next(); err != nil {
			return nil, err
		}
	}
	var conds []Condition
	for {
		if len(conds) == MaxClauses {
			return nil, p.errorf(t.off, "too many conditions: the limit is %d", MaxClauses)
		}
		c, err := p.clause(t, after)
		if err != nil {
			return nil, err
		}
		conds = append(conds, c)
		if t, err = p.next(); err != nil {
			return nil, err
		}
		if t.kind == tEOF {
			return conds, nil
		}
		if !p.isWord(t, "and") {
			return nil, p.errorf(t.off, `expected "and" or end of conditions, found %s`, p.describe(t))
		}
		after = "and"
		if t, err = p.next(); err != nil {
			return nil, err
		}
	}
}

// clause parses CLAIM OPERATOR [VALUE] starting at the claim token t, which
// came after the keyword `after` ("if", "and" or "" at the start).
func (p *parser) clause(t token, after string) (Condition, error) {
	var c Condition
	c.Pos = p.pos(t.off)
	where := ""
	if after != "" {
		where = fmt.Sprintf(" after %q", after)
	}
	switch {
	case t.kind == tWord && isKeyword(p.text(t)):
		w := p.text(t)
		return c, p.errorf(t.off, `expected a claim%s, found the keyword %q (to use a claim with that name, quote it: %q)`,
			where, w, w)
	case t.kind == tWord:
		c.Claim = p.text(t)
	case t.kind == tString:
		if t.val == "" {
			return c, p.errorf(t.off, "expected a claim%s, found an empty string (claim names cannot be empty)", where)
		}
		c.Claim = t.val
	default:
		return c, p.errorf(t.off, "expected a claim%s, found %s", where, p.describe(t))
	}
	if len(c.Claim) > MaxClaimBytes {
		return c, p.errorf(t.off, "claim name is too long: %d bytes, the limit is %d", len(c.Claim), MaxClaimBytes)
	}

	op, err := p.next()
	if err != nil {
		return c, err
	}
	switch {
	case p.isWord(op, "is"):
		err = p.isOperand(&c)
	case p.isWord(op, "matches"):
		c.Op = OpMatches
		err = p.pattern(&c, "matches")
	case p.isWord(op, "does"):
		if err = p.expectWord("not", "does"); err == nil {
			err = p.expectWord("match", "does not")
		}
		if err == nil {
			c.Op = OpNotMatches
			err = p.pattern(&c, "does not match")
		}
	case p.isWord(op, "exists"):
		c.Op = OpExists
	default:
		msg := fmt.Sprintf(`expected "is", "matches", "exists" or "does not match" after claim %s, found %s`,
			quote(c.Claim), p.describe(op))
		if op.kind == tOther && strings.Trim(p.text(op), "=!") == "" {
			msg += ` (write CLAIM is "value" or CLAIM is not "value")`
		} else if op.kind == tWord && p.startsOperator() {
			msg += " (a bare claim name cannot contain spaces; quote the name)"
		}
		return c, p.errorf(op.off, "%s", msg)
	}
	if err != nil {
		return c, err
	}
	c.Text = c.String()
	return c, nil
}

// isOperand parses what follows "is": "not" and/or "one of", then a value
// or a list.
func (p *parser) isOperand(c *Condition) error {
	t, err := p.next()
	if err != nil {
		return err
	}
	after := "is"
	c.Op = OpIs
	if p.isWord(t, "not") {
		after, c.Op = "is not", OpIsNot
		if t, err = p.next(); err != nil {
			return err
		}
	}
	if p.isWord(t, "one") {
		if err := p.expectWord("of", after+" one"); err != nil {
			return err
		}
		if c.Op == OpIs {
			after, c.Op = "is one of", OpOneOf
		} else {
			after, c.Op = "is not one of", OpNotOneOf
		}
		c.Values, err = p.list(after)
		return err
	}
	v, err := p.value(t, fmt.Sprintf("after %q", after))
	if err != nil {
		return err
	}
	c.Values = []string{v}
	return nil
}

// list parses a non-empty [value, ...] list, with an optional trailing comma
// and no duplicates.
func (p *parser) list(after string) ([]string, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	if t.kind != tLBrack {
		return nil, p.errorf(t.off, `expected "[" after %q, found %s (write %s ["a", "b"])`, after, p.describe(t), after)
	}
	var vals []string
	seen := map[string]bool{}
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		if t.kind == tRBrack {
			if len(vals) == 0 {
				return nil, p.errorf(t.off, `expected a quoted value in the list, found "]" (a list needs at least one value)`)
			}
			return vals, nil
		}
		v, err := p.value(t, "in the list")
		if err != nil {
			return nil, err
		}
		if seen[v] {
			return nil, p.errorf(t.off, "duplicate value %s in the list", quote(v))
		}
		seen[v] = true
		vals = append(vals, v)

		t, err = p.next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case tRBrack:
			return vals, nil
		case tComma:
		default:
			return nil, p.errorf(t.off, `expected "," or "]" in the list, found %s`, p.describe(t))
		}
	}
}

// value parses a literal at token t: a quoted string, true, false or a JSON
// number; where describes the place, for errors ("after \"is\"").
func (p *parser) value(t token, where string) (string, error) {
	switch t.kind {
	case tString:
		if numberOutOfRange(t.val) {
			return "", p.errorf(t.off, "%s", outOfRangeMsg(quote(truncate(t.val, 40)), true))
		}
		return t.val, nil
	case tWord:
		w := p.text(t)
		switch asciiLower(w) {
		case "true", "false":
			return asciiLower(w), nil
		}
		if c := w[0]; c == '-' || c >= '0' && c <= '9' {
			end := scanNumber(p.src, t.off)
			if end > t.off {
				if r, _ := utf8.DecodeRuneInString(p.src[end:]); end == len(p.src) || !isClaimChar(r) && r != '+' {
					if numberOutOfRange(p.src[t.off:end]) {
						return "", p.errorf(t.off, "%s", outOfRangeMsg(truncate(p.src[t.off:end], 40), false))
					}
					p.off = end
					return p.src[t.off:end], nil
				}
			}
			bad := w
			if end := t.off + len(w); end < len(p.src) && p.src[end] == '+' {
				bad = p.src[t.off:scanWordPlus(p.src, t.off)]
			}
			return "", p.errorf(t.off, "invalid number %s (numbers use JSON syntax; to compare text, quote it: %s)", bad, quote(bad))
		}
		w = p.bareRun(t.off)
		return "", p.errorf(t.off, "expected a quoted value %s, found unquoted %s (write %s)", where, w, quote(w))
	}
	return "", p.errorf(t.off, "expected a quoted value %s, found %s", where, p.describe(t))
}

// pattern parses the glob pattern after "matches" or "does not match" and
// checks that it compiles.
func (p *parser) pattern(c *Condition, after string) error {
	t, err := p.next()
	if err != nil {
		return err
	}
	if t.kind != tString {
		msg := fmt.Sprintf("expected a quoted glob pattern after %q, found %s", after, p.describe(t))
		if t.kind == tWord && !isKeyword(p.text(t)) {
			w := p.bareRun(t.off)
			msg = fmt.Sprintf("expected a quoted glob pattern after %q, found unquoted %s (write %s)", after, w, quote(w))
		}
		return p.errorf(t.off, "%s", msg)
	}
	if err := checkGlob(t.val); err != nil {
		off := t.off
		var se *glob.SyntaxError
		if errors.As(err, &se) {
			off = p.sourceOffset(t, se.Offset)
		}
		return p.errorf(off, "invalid glob pattern: %s (to match one of * ? [ ] { } , \\ literally, put a backslash before it, written \\\\ inside the quotes)", globReason(err))
	}
	c.Values = []string{t.val}
	return nil
}

// checkGlob compiles pattern as OPA's glob.match(pattern, ["/"], _) would.
func checkGlob(pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the pattern cannot be compiled (%v)", r)
		}
	}()
	_, err = glob.Compile(pattern, GlobSeparator)
	return err
}

// globReason is the text of a glob compile error without its "glob:" prefix.
func globReason(err error) string {
	var se *glob.SyntaxError
	if errors.As(err, &se) {
		return se.Reason
	}
	return err.Error()
}

// expectWord consumes the keyword w, which must follow the words after.
func (p *parser) expectWord(w, after string) error {
	t, err := p.next()
	if err != nil {
		return err
	}
	if !p.isWord(t, w) {
		return p.errorf(t.off, "expected %q after %q, found %s", w, after, p.describe(t))
	}
	return nil
}

// bareRun returns the text from off up to the next space, quote, bracket
// or comma: what the user probably meant as one unquoted value.
func (p *parser) bareRun(off int) string {
	end := off
	for end < len(p.src) {
		r, size := utf8.DecodeRuneInString(p.src[end:])
		if isSpace(r) || strings.ContainsRune(`"[],`, r) {
			break
		}
		end += size
	}
	return truncate(p.src[off:end], 40)
}

// startsOperator reports whether the next token is a word that starts an
// operator, without consuming it.
func (p *parser) startsOperator() bool {
	off := p.off
	defer func() { p.off = off }()
	t, err := p.next()
	return err == nil && (p.isWord(t, "is") || p.isWord(t, "matches") || p.isWord(t, "does") || p.isWord(t, "exists"))
}

func (p *parser) isWord(t token, w string) bool {
	return t.kind == tWord && t.end-t.off == len(w) && asciiLower(p.text(t)) == w
}

func (p *parser) text(t token) string { return p.src[t.off:t.end] }

// describe renders a token for "found ..." in error messages.
func (p *parser) describe(t token) string {
	const max = 40
	s := p.text(t)
	switch t.kind {
	case tEOF:
		return "end of input"
	case tString:
		if len(t.val) > max {
			return "the string " + quote(truncate(t.val, max))
		}
		return "the string " + quote(t.val)
	case tOther:
		if len(s) == 1 && s[0] < ' ' || s == "\x7f" {
			return fmt.Sprintf("the character U+%04X", s[0])
		}
	}
	return quote(truncate(s, max))
}

// truncate shortens s to about max bytes, on a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max] + "…"
}

// next scans the next token.
func (p *parser) next() (token, error) {
	src := p.src
	for p.off < len(src) {
		r, size := utf8.DecodeRuneInString(src[p.off:])
		if !isSpace(r) {
			break
		}
		p.off += size
	}
	start := p.off
	if start == len(src) {
		// End of input is reported right after the last token, where
		// something was expected, not after trailing blank lines.
		return token{kind: tEOF, off: len(strings.TrimRightFunc(src, isSpace)), end: len(src)}, nil
	}
	r, size := utf8.DecodeRuneInString(src[start:])
	switch {
	case r == '"':
		val, end, err := p.scanString(start, nil)
		if err != nil {
			return token{}, err
		}
		p.off = end
		return token{kind: tString, off: start, end: end, val: val}, nil
	case r == '[':
		p.off++
		return token{kind: tLBrack, off: start, end: p.off}, nil
	case r == ']':
		p.off++
		return token{kind: tRBrack, off: start, end: p.off}, nil
	case r == ',':
		p.off++
		return token{kind: tComma, off: start, end: p.off}, nil
	case isClaimChar(r):
		end := start + size
		for end < len(src) {
			r, size := utf8.DecodeRuneInString(src[end:])
			if !isClaimChar(r) {
				break
			}
			end += size
		}
		p.off = end
		return token{kind: tWord, off: start, end: end}, nil
	}
	// Anything else: a run of characters that cannot start a token, so
	// that "==" is reported as one thing. Control characters stand alone.
	end := start + size
	if r >= ' ' && r != 0x7f {
		for end < len(src) {
			r, size := utf8.DecodeRuneInString(src[end:])
			if r < ' ' || r == 0x7f || isSpace(r) || isClaimChar(r) || strings.ContainsRune(`"[],`, r) {
				break
			}
			end += size
		}
	}
	p.off = end
	return token{kind: tOther, off: start, end: end}, nil
}

// scanString decodes the double-quoted string starting at src[start]. It
// returns the value and the offset after the closing quote. If offs is not
// nil, it receives the source offset of each byte of the value.
func (p *parser) scanString(start int, offs *[]int) (string, int, error) {
	src := p.src
	i := start + 1
	// Fast path: no escapes.
	for i < len(src) {
		c := src[i]
		if c == '"' && offs == nil {
			return src[start+1 : i], i + 1, nil
		}
		if c == '\\' || c < ' ' || c == '"' || c == 0x7f {
			break
		}
		i++
	}
	var b strings.Builder
	b.WriteString(src[start+1 : i])
	if offs != nil {
		for j := start + 1; j < i; j++ {
			*offs = append(*offs, j)
		}
	}
	emit := func(s string, at int) {
		b.WriteString(s)
		if offs != nil {
			for range len(s) {
				*offs = append(*offs, at)
			}
		}
	}
	for {
		if i >= len(src) || src[i] == '\n' || src[i] == '\r' {
			return "", 0, p.errorf(start, "unterminated string (add the closing \"; strings cannot span lines, write \\n for a line break)")
		}
		r, size := utf8.DecodeRuneInString(src[i:])
		switch {
		case r == '"':
			return b.String(), i + 1, nil
		case r < ' ' || r == 0x7f:
			return "", 0, p.errorf(i, "invalid character U+%04X in string (write it as %s)", r, strings.Trim(quote(string(r)), `"`))
		case r != '\\':
			emit(src[i:i+size], i)
			i += size
			continue
		}
		// An escape.
		if i+1 >= len(src) {
			return "", 0, p.errorf(start, "unterminated string (add the closing \")")
		}
		esc := src[i+1]
		switch esc {
		case '"', '\\', '/':
			emit(string(esc), i)
		case 'b':
			emit("\b", i)
		case 'f':
			emit("\f", i)
		case 'n':
			emit("\n", i)
		case 'r':
			emit("\r", i)
		case 't':
			emit("\t", i)
		case 'u':
			r, n, err := p.scanUnicode(i)
			if err != nil {
				return "", 0, err
			}
			emit(string(r), i)
			i += n
			continue
		default:
			e, _ := utf8.DecodeRuneInString(src[i+1:])
			return "", 0, p.errorf(i, `invalid escape "\%c" in string (valid escapes: \" \\ \/ \b \f \n \r \t \uXXXX; write \\ for a backslash)`, e)
		}
		i += 2
	}
}

// scanUnicode decodes a \uXXXX escape (or a surrogate pair of them) at
// src[i], returning the rune and the number of bytes used.
func (p *parser) scanUnicode(i int) (rune, int, error) {
	r1, ok := hex4(p.src, i+2)
	if !ok {
		return 0, 0, p.errorf(i, `invalid escape in string: \u must be followed by four hex digits`)
	}
	if r1 < 0xD800 || r1 > 0xDFFF {
		return r1, 6, nil
	}
	if r1 <= 0xDBFF && i+12 <= len(p.src) && p.src[i+6] == '\\' && p.src[i+7] == 'u' {
		if r2, ok := hex4(p.src, i+8); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
			return (r1-0xD800)<<10 + (r2 - 0xDC00) + 0x10000, 12, nil
		}
	}
	return 0, 0, p.errorf(i, `invalid escape in string: \u%04x is half of a UTF-16 surrogate pair (write the character itself, or both halves)`, r1)
}

// hex4 decodes four hex digits at s[i:].
func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// sourceOffset maps a byte offset in the value of the string token t to the
// offset in the source of the character that produced it.
func (p *parser) sourceOffset(t token, valueOff int) int {
	var offs []int
	if _, _, err := p.scanString(t.off, &offs); err != nil || len(offs) == 0 {
		return t.off
	}
	if valueOff >= len(offs) {
		return t.end - 1 // the closing quote
	}
	if valueOff < 0 {
		return t.off
	}
	return offs[valueOff]
}

// numberOutOfRange reports whether v is a JSON number beyond float64's
// range (1e400, or an integer of more than 309 digits). A claim that is a
// number is compared with a literal by reading the literal as a number
// (Rego's to_number), which fails for such a value: every evaluation of the
// condition would be an error, so Parse refuses it. (Tiny values such as
// 1e-400 read as 0 and are fine.)
func numberOutOfRange(v string) bool {
	if v == "" || scanNumber(v, 0) != len(v) {
		return false
	}
	_, err := strconv.ParseFloat(v, 64)
	return errors.Is(err, strconv.ErrRange)
}

// outOfRangeMsg is the error for a literal numberOutOfRange refuses.
func outOfRangeMsg(lit string, quoted bool) string {
	what := "number " + lit
	if quoted {
		what = "value " + lit + " reads as a number that"
	}
	return what + " is beyond the range of numbers claims are compared as (about ±1.8e308): a claim that is a number could not be compared with it, and every evaluation would fail; write a number within range"
}

// scanNumber returns the end of the JSON number starting at s[i], or i if
// there is none.
func scanNumber(s string, i int) int {
	start := i
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return start
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return start
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return start
		}
	}
	return i
}

// scanWordPlus returns the end of the run of claim characters and '+'
// starting at s[i], to show a malformed number whole.
func scanWordPlus(s string, i int) int {
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !isClaimChar(r) && r != '+' {
			break
		}
		i += size
	}
	return i
}

// pos converts a byte offset to a 1-based line and column (in characters).
func (p *parser) pos(off int) Pos {
	if p.lines == nil {
		p.lines = []int{0}
		for i := 0; i < len(p.src); i++ {
			if p.src[i] == '\n' {
				p.lines = append(p.lines, i+1)
			}
		}
	}
	line := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off }) - 1
	return Pos{Line: line + 1, Col: utf8.RuneCountInString(p.src[p.lines[line]:off]) + 1}
}

// errorf builds a *SyntaxError at the byte offset off.
func (p *parser) errorf(off int, format string, args ...any) *SyntaxError {
	pos := p.pos(off)
	start := p.lines[pos.Line-1]
	end := strings.IndexByte(p.src[start:], '\n')
	if end < 0 {
		end = len(p.src)
	} else {
		end += start
	}
	return &SyntaxError{Pos: pos, Msg: fmt.Sprintf(format, args...), Line: strings.TrimSuffix(p.src[start:end], "\r")}
}
