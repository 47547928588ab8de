package provider

import (
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// conditionPos maps a 1-based line/column inside the decoded value of scalar
// n (the trust-condition text) to a line/column in the file. It walks the
// decoded text and the source side by side, skipping what YAML's quoting,
// escaping, folding and indentation add; if they cannot be aligned it falls
// back to the start of the value.
func (ps *parser) conditionPos(n *yaml.Node, value string, line, col int) (int, int) {
	fallback := func() (int, int) { return n.Line, n.Column }
	if line < 1 || col < 1 || n.Line < 1 || n.Line > len(ps.lines) {
		return fallback()
	}
	// Offset of the error in the decoded value, in bytes.
	target := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(value[target:], '\n')
		if i < 0 {
			return fallback()
		}
		target += i + 1
	}
	for c := 1; c < col && target < len(value) && value[target] != '\n'; c++ {
		_, w := utf8.DecodeRuneInString(value[target:])
		target += w
	}

	// Where the value starts in the source.
	j := ps.offset(n.Line, n.Column)
	if j < 0 {
		return fallback()
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		nl := strings.IndexByte(string(ps.src[j:]), '\n')
		if nl < 0 {
			return fallback()
		}
		j += nl + 1
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		j++
	}
	last := -1 // source offset of the last aligned character
	for i, r := range value {
		for {
			if j >= len(ps.src) {
				return ps.afterLast(last, fallback)
			}
			c, w := utf8.DecodeRune(ps.src[j:])
			if c == r {
				break
			}
			switch c {
			case ' ', '\t', '\r', '\n', '\\', '\'', '"':
				j += w
				continue
			}
			// Cannot align (an escape such as \x41); give up here.
			if last < 0 {
				return fallback()
			}
			return ps.afterLast(last, fallback)
		}
		if i >= target {
			return ps.position(j)
		}
		last = j
		_, w := utf8.DecodeRune(ps.src[j:])
		j += w
	}
	// The error is at the end of the value: just after its last character.
	return ps.afterLast(last, fallback)
}

func (ps *parser) afterLast(last int, fallback func() (int, int)) (int, int) {
	if last < 0 {
		return fallback()
	}
	l, c := ps.position(last)
	return l, c + 1
}

// offset returns the byte offset of a 1-based line and (rune) column, or -1.
func (ps *parser) offset(line, col int) int {
	if line < 1 || line > len(ps.lines) {
		return -1
	}
	j := ps.lines[line-1]
	for c := 1; c < col; c++ {
		if j >= len(ps.src) || ps.src[j] == '\n' {
			return -1
		}
		_, w := utf8.DecodeRune(ps.src[j:])
		j += w
	}
	return j
}

// position returns the 1-based line and rune column of byte offset off.
func (ps *parser) position(off int) (int, int) {
	l := sort.Search(len(ps.lines), func(i int) bool { return ps.lines[i] > off }) // first line starting after off
	start := ps.lines[l-1]
	return l, utf8.RuneCount(ps.src[start:off]) + 1
}
