// Package yamlerr turns YAML problems into diagnostics a person can act on:
// the real line and column of a syntax error (yaml.v3 reports the start of
// the enclosing block instead), and "did you mean" suggestions for keys and
// names. providers.yaml and sidecar.yaml use it.
package yamlerr

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var lineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Syntax is a YAML syntax error with its position (1-based; 0 when unknown).
type Syntax struct {
	Line, Col int
	Msg       string // yaml.v3's message without "yaml: line N: "
	Hint      string // how to fix it, "" when there is no good guess
}

// Locate explains err, the error yaml.v3 returned for data. yaml.v3 names
// the line where the enclosing mapping or sequence starts, which may be far
// above the mistake; Locate finds the first line at which a prefix of data
// fails to parse with the same message — the line holding the mistake — and
// points at its first non-blank character.
func Locate(data []byte, err error) Syntax {
	s := Syntax{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		s.Line, _ = strconv.Atoi(m[1])
		s.Msg = m[2]
	}
	s.Hint = hint(s.Msg)
	starts := []int{0}
	for i, b := range data {
		if b == '\n' && i+1 < len(data) {
			starts = append(starts, i+1)
		}
	}
	prefix := func(n int) []byte { // the first n lines
		if n >= len(starts) {
			return data
		}
		return data[:starts[n]]
	}
	fails := func(n int) bool {
		e := parse(prefix(n))
		if e == nil {
			return false
		}
		msg := e.Error()
		if m := lineRE.FindStringSubmatch(msg); m != nil {
			msg = m[2]
		}
		return msg == s.Msg
	}
	// Binary search for the shortest failing prefix (failing is monotone in
	// practice: once the mistake is in the prefix, it stays).
	lo, hi := 1, len(starts)
	if !fails(hi) {
		return s
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if hi < s.Line { // never move above what yaml.v3 said
		return s
	}
	s.Line = hi
	line := prefix(hi)[starts[hi-1]:]
	s.Col = len(line) - len(bytes.TrimLeft(line, " \t")) + 1
	// "key: a: b" — point at the second ": ", the one that needs quoting.
	if strings.Contains(s.Msg, "mapping values are not allowed") {
		if i := bytes.Index(line, []byte(": ")); i >= 0 {
			if j := bytes.Index(line[i+2:], []byte(": ")); j >= 0 {
				s.Col = i + 2 + j + 1
			}
		}
	}
	return s
}

func parse(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func hint(msg string) string {
	switch {
	case strings.Contains(msg, "mapping values are not allowed"):
		return `a value containing ": " must be quoted, and a key must line up with the keys above it`
	case strings.Contains(msg, "found character that cannot start any token"):
		return "YAML does not allow tabs for indentation, and values starting with @ or ` must be quoted"
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "did not find expected '-' indicator"),
		strings.Contains(msg, "did not find expected node content"):
		return "check the indentation: keys of one mapping line up, list items start with - at the same column"
	case strings.Contains(msg, "found unexpected end of stream"), strings.Contains(msg, "did not find expected"):
		return "check for an unclosed quote or bracket"
	}
	return ""
}

// String is "LINE:COL: YAML syntax error: MSG; HINT" (position parts
// omitted when unknown).
func (s Syntax) String() string {
	var b strings.Builder
	if s.Line > 0 {
		b.WriteString(strconv.Itoa(s.Line) + ":")
		if s.Col > 0 {
			b.WriteString(strconv.Itoa(s.Col) + ":")
		}
		b.WriteString(" ")
	}
	b.WriteString("YAML syntax error: " + s.Msg)
	if s.Hint != "" {
		b.WriteString("; " + s.Hint)
	}
	return b.String()
}
