// Package glyph picks the marks the CLI prints for a pass and a failure:
// ✓ and ✗ when the locale says UTF-8, [ok] and [x] otherwise (a C/POSIX
// locale, a bare container), so a terminal or log that cannot show them
// never gets mojibake. The CLI prints no colour at all, so NO_COLOR (and
// a pipe) always get plain text.
package glyph

import (
	"os"
	"strings"
)

// Marks are the strings for a pass and a failure.
type Marks struct{ OK, Fail string }

var (
	unicodeMarks = Marks{OK: "✓", Fail: "✗"}
	asciiMarks   = Marks{OK: "[ok]", Fail: "[x]"}
)

// For returns the marks for the locale getenv describes: the first set of
// LC_ALL, LC_CTYPE and LANG decides, as in C's setlocale; UTF-8 (or utf8)
// in it means Unicode marks.
func For(getenv func(string) string) Marks {
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if v := getenv(k); v != "" {
			v = strings.ToLower(v)
			if strings.Contains(v, "utf-8") || strings.Contains(v, "utf8") {
				return unicodeMarks
			}
			return asciiMarks
		}
	}
	return asciiMarks
}

// Default is For(os.Getenv), decided once at start.
var Default = For(os.Getenv)
