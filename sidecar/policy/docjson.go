package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// DocumentJSON is Document as JSON, exactly the bytes a json.Encoder
// with SetEscapeHTML(false) writes for Document's value (what slog's JSON
// handler writes for it) without its trailing newline
// (TestDocumentJSONMatchesDocument). The audit line of every exchange
// carries the document: writing it straight from OPA's value saves
// converting it to Go maps and encoding those by reflection.
func (d *ExchangeDecision) DocumentJSON() (json.RawMessage, error) {
	if d.doc == nil {
		return nil, fmt.Errorf("no decision document")
	}
	if b, ok := appendDocJSON(make([]byte, 0, 512), d.doc); ok {
		return b, nil
	}
	// Values the direct writer leaves alone (lazy objects, non-string
	// keys, invalid numbers): the general conversion.
	doc, err := ast.JSON(d.doc)
	if err != nil {
		return nil, err
	}
	return encodeNoHTML(doc)
}

// encodeNoHTML is v as a json.Encoder with SetEscapeHTML(false) writes it,
// without the newline.
func encodeNoHTML(v any) ([]byte, error) {
	var bb bytes.Buffer
	enc := json.NewEncoder(&bb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(bb.Bytes(), []byte("\n")), nil
}

// appendDocJSON appends v's JSON; false for a value it does not write
// itself (the caller then converts the whole document the general way).
func appendDocJSON(buf []byte, v ast.Value) ([]byte, bool) {
	switch x := v.(type) {
	case ast.Null:
		return append(buf, "null"...), true
	case ast.Boolean:
		if x {
			return append(buf, "true"...), true
		}
		return append(buf, "false"...), true
	case ast.Number:
		if !plainNumber(string(x)) {
			return buf, false
		}
		return append(buf, x...), true
	case ast.String:
		return appendDocString(buf, string(x)), true
	case *ast.Array:
		buf = append(buf, '[')
		for i := range x.Len() {
			if i > 0 {
				buf = append(buf, ',')
			}
			var ok bool
			if buf, ok = appendDocJSON(buf, x.Elem(i).Value); !ok {
				return buf, false
			}
		}
		return append(buf, ']'), true
	case ast.Set:
		// ast.JSON makes an array of the set in Iter's order.
		buf = append(buf, '[')
		for i, t := range x.Slice() {
			if i > 0 {
				buf = append(buf, ',')
			}
			var ok bool
			if buf, ok = appendDocJSON(buf, t.Value); !ok {
				return buf, false
			}
		}
		return append(buf, ']'), true
	case ast.Object:
		if reflect.TypeOf(x) == lazyObjectType {
			return buf, false // ast.JSON hands over its Go map: left to it
		}
		// encoding/json writes a map's members sorted by key. (No
		// closures here: one capturing buf would move it to the heap on
		// every call.)
		keys := x.Keys()
		for _, k := range keys {
			if _, ok := k.Value.(ast.String); !ok {
				return buf, false
			}
		}
		if !slices.IsSortedFunc(keys, byString) {
			keys = slices.SortedFunc(slices.Values(keys), byString)
		}
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendDocString(buf, string(k.Value.(ast.String)))
			buf = append(buf, ':')
			var ok bool
			if buf, ok = appendDocJSON(buf, x.Get(k).Value); !ok {
				return buf, false
			}
		}
		return append(buf, '}'), true
	}
	return buf, false
}

// byString orders string terms as encoding/json orders map keys (bytes).
func byString(a, b *ast.Term) int {
	return strings.Compare(string(a.Value.(ast.String)), string(b.Value.(ast.String)))
}

// lazyObjectType is the type of ast.LazyObject's objects (input.claims).
var lazyObjectType = reflect.TypeOf(ast.LazyObject(map[string]any{}))

// plainNumber reports whether s is a JSON number literal (RFC 8259).
func plainNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}

// appendDocString appends s as a JSON string as encoding/json writes it
// without HTML escaping: printable ASCII other than '"' and '\' is copied,
// any other string is left to the encoder.
func appendDocString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			b, _ := encodeNoHTML(s) // a string always encodes
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
