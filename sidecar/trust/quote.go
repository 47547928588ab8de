package trust

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// quote returns s as a double-quoted string literal that is at the same time
// valid JSON, a valid Rego string and a valid string in the condition
// language, and that decodes to exactly s (s must be valid UTF-8).
//
// Quotes and backslashes are escaped, and so is every character that could
// change how the surrounding text is read or displayed: control characters,
// the Unicode line and paragraph separators, and any other non-printable
// character. Printable non-ASCII characters are kept as they are.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		writeEscaped(&b, r, '"')
	}
	b.WriteByte('"')
	return b.String()
}

// writeEscaped writes r as it appears inside a quoted literal; q is the
// quote character to escape.
func writeEscaped(b *strings.Builder, r rune, q rune) {
	switch {
	case r == q || r == '\\':
		b.WriteByte('\\')
		b.WriteRune(r)
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\t':
		b.WriteString(`\t`)
	case r == '\r':
		b.WriteString(`\r`)
	case r == '\b':
		b.WriteString(`\b`)
	case r == '\f':
		b.WriteString(`\f`)
	case r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ':
		// U+FFFD is printable, but written out it could be mistaken for a
		// decoding error; every other case here is a control, format,
		// separator or unassigned character.
		if r > 0xFFFF {
			r1, r2 := surrogates(r)
			writeU(b, r1)
			writeU(b, r2)
		} else {
			writeU(b, r)
		}
	default:
		b.WriteRune(r)
	}
}

// writeU writes the \uXXXX escape of a BMP code point.
func writeU(b *strings.Builder, r rune) {
	const hex = "0123456789abcdef"
	b.WriteString(`\u`)
	b.WriteByte(hex[r>>12&0xF])
	b.WriteByte(hex[r>>8&0xF])
	b.WriteByte(hex[r>>4&0xF])
	b.WriteByte(hex[r&0xF])
}

// surrogates splits a supplementary-plane code point into its UTF-16
// surrogate pair.
func surrogates(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF
}

// sanitizeComment makes s safe to place after "# " in a Rego comment and
// readable in a terminal: every character quote would escape (apart from
// tabs and quotes, which are harmless here) is shown as its escape. The
// result never contains a line break.
func sanitizeComment(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				b.WriteString(`\ufffd`) // an invalid byte
				continue
			}
		}
		switch {
		case r == '\t' || r == '"' || r == '\\':
			b.WriteRune(r)
		default:
			writeEscaped(&b, r, '"')
		}
	}
	return strings.TrimRight(b.String(), " \t")
}
