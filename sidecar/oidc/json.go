package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth is the deepest nesting of objects and arrays accepted in a
// token header, a token payload, a discovery document or a JWKS.
const maxJSONDepth = 32

// jsonError describes why a document was rejected by the strict decoder.
type jsonError struct {
	off int
	msg string
}

func (e *jsonError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

// decodeObject decodes data, which must be exactly one JSON object, with the
// strict rules of this package:
//
//   - duplicate member names are rejected at every depth (names are compared
//     after unescaping, so "a" and "\u0061" collide);
//   - objects and arrays may nest at most maxDepth deep;
//   - strings must be valid UTF-8 and must not contain lone surrogate escapes;
//   - numbers are kept as json.Number, so no precision is lost;
//   - nothing but whitespace may follow the object.
//
// Values are map[string]any, []any, string, json.Number, bool or nil, as with
// encoding/json and UseNumber. The decoder is iterative over members and
// recursive only per nesting level, so the depth limit also bounds the stack.
//
// Strings and numbers without escapes are slices of one copy of data (one
// allocation per document instead of one per value).
func decodeObject(data []byte, maxDepth int) (map[string]any, error) {
	return decodeSized(data, maxDepth, 8)
}

// decodeClaims is decodeObject for a token's claims: the top-level map is
// made for 32 members (GitHub's tokens hold about 30), every other one for
// 8 (a JOSE header holds 2-3, an exchange request body 2, and a 32-member
// map costs 2 KiB).
func decodeClaims(data []byte) (map[string]any, error) {
	return decodeSized(data, maxJSONDepth, 32)
}

func decodeSized(data []byte, maxDepth, topSize int) (map[string]any, error) {
	d := decoder{data: data, src: string(data), maxDepth: maxDepth, topSize: topSize}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, &jsonError{d.pos, "empty document"}
	}
	if d.data[d.pos] != '{' {
		return nil, &jsonError{d.pos, "not a JSON object"}
	}
	m, err := d.object()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, &jsonError{d.pos, "trailing data after the JSON object"}
	}
	return m, nil
}

type decoder struct {
	data     []byte
	src      string // a copy of data, which values without escapes slice
	pos      int
	depth    int
	maxDepth int
	topSize  int // the top-level object's map size hint
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) fail(msg string) error { return &jsonError{d.pos, msg} }

func (d *decoder) value() (any, error) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, d.fail("unexpected end of JSON")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, d.fail(fmt.Sprintf("unexpected character %q", c))
	}
}

func (d *decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.fail("invalid literal")
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > d.maxDepth {
		return d.fail(fmt.Sprintf("JSON nested deeper than %d levels", d.maxDepth))
	}
	return nil
}

func (d *decoder) object() (map[string]any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	size := 8
	if d.depth == 1 {
		size = d.topSize
	}
	m := make(map[string]any, size)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return m, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.fail("expected a string member name")
		}
		keyOff := d.pos
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, &jsonError{keyOff, "duplicate member name " + quote(k)}
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.fail("expected ':' after member name")
		}
		d.pos++
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.fail("unexpected end of JSON in object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.depth--
			return m, nil
		default:
			return nil, d.fail("expected ',' or '}' in object")
		}
	}
}

func (d *decoder) array() ([]any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	a := make([]any, 0, 4)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return a, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.fail("unexpected end of JSON in array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			d.depth--
			return a, nil
		default:
			return nil, d.fail("expected ',' or ']' in array")
		}
	}
}

func (d *decoder) number() (json.Number, error) {
	start := d.pos
	data := d.data
	i := d.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return "", d.fail("invalid number")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			d.pos = i
			return "", d.fail("invalid number: digit expected after '.'")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			d.pos = i
			return "", d.fail("invalid number: digit expected in exponent")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	d.pos = i
	return json.Number(d.src[start:i]), nil
}

// str decodes a string starting at the opening quote.
// commonNames are member names that every token, header, discovery
// document or JWKS repeats: key() returns these strings instead of
// allocating a copy of each name on every decode.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		// JOSE headers and JWKs
		"alg", "kid", "typ", "cty", "x5t", "kty", "use", "n", "e", "crv", "x", "y", "keys",
		// registered claims
		"iss", "sub", "aud", "exp", "nbf", "iat", "jti",
		// GitHub Actions
		"ref", "sha", "repository", "repository_owner", "repository_owner_id", "repository_id",
		"repository_visibility", "run_id", "run_number", "run_attempt", "runner_environment",
		"actor", "actor_id", "triggering_actor", "workflow", "workflow_ref", "workflow_sha",
		"head_ref", "base_ref", "event_name", "ref_type", "ref_protected", "job_workflow_ref",
		"job_workflow_sha", "environment", "environment_node_id", "enterprise", "enterprise_id",
		// CircleCI
		"oidc.circleci.com/project-id", "oidc.circleci.com/context-ids", "oidc.circleci.com/vcs-origin",
		"oidc.circleci.com/vcs-ref", "oidc.circleci.com/org-id", "oidc.circleci.com/ssh-rerun",
		// exchange request bodies
		"provider_id", "web_identity_token",
	} {
		m[n] = n
	}
	return m
}()

// key reads a member name: a common one without allocating.
func (d *decoder) key() (string, error) {
	start := d.pos + 1
	for i := start; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			if n, ok := commonNames[string(d.data[start:i])]; ok { // no allocation for the lookup
				d.pos = i + 1
				return n, nil
			}
			break
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
	}
	return d.str()
}

func (d *decoder) str() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	// Fast path: printable ASCII without escapes.
	for i := start; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			d.pos = i + 1
			return d.src[start:i], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
	}
	return d.strSlow(start)
}

var errBadEscape = errors.New("invalid escape")

func (d *decoder) strSlow(start int) (string, error) {
	buf := make([]byte, 0, 32)
	i := start
	data := d.data
	for {
		if i >= len(data) {
			d.pos = i
			return "", d.fail("unterminated string")
		}
		c := data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return string(buf), nil
		case c < 0x20:
			d.pos = i
			return "", d.fail("control character in string")
		case c == '\\':
			if i+1 >= len(data) {
				d.pos = i
				return "", d.fail("unterminated string")
			}
			e := data[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(data, i)
				if !ok {
					d.pos = i
					return "", d.fail(errBadEscape.Error())
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// Must be a high surrogate followed by \u + low surrogate.
					if r >= 0xDC00 || i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
						d.pos = i
						return "", d.fail("lone surrogate in \\u escape")
					}
					r2, ok := hex4(data, i+2)
					if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
						d.pos = i
						return "", d.fail("lone surrogate in \\u escape")
					}
					r = utf16.DecodeRune(r, r2)
					i += 6
				}
				buf = utf8.AppendRune(buf, r)
			default:
				d.pos = i - 1
				return "", d.fail(errBadEscape.Error())
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				d.pos = i
				return "", d.fail("invalid UTF-8 in string")
			}
			buf = append(buf, data[i:i+size]...)
			i += size
		}
	}
}

func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// DecodeObject decodes data, exactly one JSON object, with this package's
// strict rules (decodeObject: no duplicate member names, depth at most
// 32, valid UTF-8, nothing after the object), in one pass. The exchange
// reads its request bodies with it.
func DecodeObject(data []byte) (map[string]any, error) { return decodeObject(data, maxJSONDepth) }
