// Package logline writes JSON log lines byte for byte as log/slog's
// JSONHandler writes them, without slog's record, attribute values and
// reflection: for the one line per proxied request (the audit line), where
// slog's general path cost more CPU than anything else the sidecar adds to
// a request (docs/benchmarks.md, issue #17).
//
// A Line is built field by field into a pooled buffer and written with one
// Write call, as the JSONHandler does, so lines from a Writer and from a
// slog logger on the same io.Writer never interleave (an *os.File holds its
// write lock for the whole Write; the sidecar's buffered log writer takes
// its mutex). The equivalence with slog is pinned by FuzzLineMatchesSlog.
package logline

import (
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Writer writes lines to an io.Writer at or above a level.
type Writer struct {
	w      io.Writer
	level  slog.Leveler
	prefix []byte // the attributes added by With, each as `,"key":value`
}

// New returns a Writer of lines at level or above (nil: slog.LevelInfo),
// like slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}).
func New(w io.Writer, level slog.Leveler) *Writer {
	if level == nil {
		level = slog.LevelInfo
	}
	return &Writer{w: w, level: level}
}

// With returns a Writer whose lines carry key=value after the message, as
// slog.Logger.With(key, value) does.
func (w *Writer) With(key, value string) *Writer {
	p := append([]byte(nil), w.prefix...)
	p = append(p, ',')
	p = appendString(p, key)
	p = append(p, ':')
	p = appendString(p, value)
	return &Writer{w: w.w, level: w.level, prefix: p}
}

// Enabled reports whether a line at l is written.
func (w *Writer) Enabled(l slog.Level) bool { return l >= w.level.Level() }

// Line is one log line being built. Its methods append one attribute each,
// in call order, as slog writes a record's attributes.
type Line struct {
	b     []byte
	first bool // the next attribute opens a group: no separator
}

var lines = sync.Pool{New: func() any { return &Line{b: make([]byte, 0, 1024)} }}

// Start begins a line with slog's built-in time, level and msg keys and the
// Writer's With attributes. Pass it to Write when complete. t's year must
// be within 0–9999 (RFC 3339), as time.Now's is.
func (w *Writer) Start(t time.Time, level slog.Level, msg string) *Line {
	l := lines.Get().(*Line)
	b := append(l.b[:0], `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":`...)
	b = appendString(b, level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, msg)
	l.b = append(b, w.prefix...)
	l.first = false
	return l
}

// Write ends the line and writes it with one Write call; the Line must not
// be used afterwards.
func (w *Writer) Write(l *Line) error {
	l.b = append(l.b, "}\n"...)
	_, err := w.w.Write(l.b)
	if cap(l.b) <= 16<<10 { // as slog, keep only modest buffers
		lines.Put(l)
	}
	return err
}

func (l *Line) key(k string) {
	if !l.first {
		l.b = append(l.b, ',')
	}
	l.first = false
	l.b = appendString(l.b, k)
	l.b = append(l.b, ':')
}

// String appends k with a string value.
func (l *Line) String(k, v string) {
	l.key(k)
	l.b = appendString(l.b, v)
}

// Int appends k with an integer value.
func (l *Line) Int(k string, v int64) {
	l.key(k)
	l.b = strconv.AppendInt(l.b, v, 10)
}

// Bool appends k with a boolean value.
func (l *Line) Bool(k string, v bool) {
	l.key(k)
	l.b = strconv.AppendBool(l.b, v)
}

// Float appends k with a float value, formatted as encoding/json formats a
// float64 (slog's JSONHandler calls it). v must be finite.
func (l *Line) Float(k string, v float64) {
	l.key(k)
	l.b = appendFloat(l.b, v)
}

// Time appends k with a time value (RFC 3339 with nanoseconds); t's year
// must be within 0–9999.
func (l *Line) Time(k string, t time.Time) {
	l.key(k)
	l.b = append(l.b, '"')
	l.b = t.AppendFormat(l.b, time.RFC3339Nano)
	l.b = append(l.b, '"')
}

// Group opens a group named k: the attributes up to its End are inside it.
// An empty group is not what slog writes (it omits it): every Group must
// get at least one attribute.
func (l *Line) Group(k string) {
	l.key(k)
	l.b = append(l.b, '{')
	l.first = true
}

// End closes the innermost open group.
func (l *Line) End() { l.b = append(l.b, '}') }

// appendFloat is encoding/json's float64 encoding.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s as a JSON string the way slog's JSONHandler does:
// no HTML escaping, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hex = "0123456789abcdef"

// safe is encoding/json's safeSet, which slog uses: the ASCII bytes written
// as they are (all but control characters, '"' and '\\').
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
