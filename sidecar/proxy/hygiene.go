package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Request hygiene: what a client sends that must not reach the upstream as
// sent. See docs/proxy.md, "Header hygiene" and "Tokens".

// Audit codes for the refusals below.
const (
	CodeMethodOverride = "method_override"
	CodeTokenInRequest = "token_in_request"
)

// reservedNames are header names, normalized (appendNormalized), that a
// client may never send to the upstream under any spelling: the ones the
// proxy sets itself (Authorization, X-Forwarded-*, Forwarded,
// X-Request-Id), method overrides (an upstream that honours them would
// turn an authorized GET into a DELETE), and framing and hop-by-hop
// fields, whose underscore or other spellings some stacks read as the
// real thing. The canonical spellings of the framing and hop-by-hop fields
// never get here (net/http and ReverseProxy remove them); the others are
// set again after the cleanup where the proxy sets them.
var reservedNames = map[string]bool{
	"authorization":          true,
	"x-forwarded-for":        true,
	"x-forwarded-host":       true,
	"x-forwarded-proto":      true,
	"forwarded":              true,
	"x-request-id":           true,
	"x-http-method-override": true,
	"x-method-override":      true,
	"x-http-method":          true,
	"host":                   true,
	"content-length":         true,
	"transfer-encoding":      true,
	"connection":             true,
	"keep-alive":             true,
	"proxy":                  true, // httpoxy: CGI turns it into HTTP_PROXY
	"proxy-authorization":    true,
	"proxy-connection":       true,
	"te":                     true,
	"trailer":                true,
	"upgrade":                true,
}

// identityPrefix is IdentityHeaderPrefix, normalized.
const identityPrefix = "x-oidc-sidecar-"

// appendNormalized appends a header name lower-cased, with every byte other
// than a letter or digit into "-": X_OIDC_Sidecar_Subject, x.oidc.sidecar.subject
// and X-Oidc-Sidecar-Subject are all x-oidc-sidecar-subject, as CGI-style
// stacks (HTTP_X_OIDC_SIDECAR_SUBJECT) and others read them.
func appendNormalized(b []byte, k string) []byte {
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case 'A' <= c && c <= 'Z':
			b = append(b, c+'a'-'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b = append(b, c)
		default:
			b = append(b, '-')
		}
	}
	return b
}

// reservedHeader reports whether a header name normalizes to a reserved
// name or starts with the identity prefix; names of usual length are
// normalized on the stack (every request header goes through it).
func reservedHeader(k string) bool {
	var buf [64]byte
	n := appendNormalized(buf[:0], k)
	return reservedNames[string(n)] || len(n) >= len(identityPrefix) && string(n[:len(identityPrefix)]) == identityPrefix
}

// stripReserved removes every header whose name normalizes to a reserved
// name or starts with the identity prefix. "Te: trailers", which
// ReverseProxy keeps on purpose, stays.
func stripReserved(h http.Header) {
	for k := range h {
		if k != "Te" && reservedHeader(k) {
			delete(h, k)
		}
	}
}

// methodOverrideParam reports whether a raw query has a _method parameter,
// whatever its case, escaping or separator ("&" or ";"), and in the
// spellings PHP turns into _method (leading spaces dropped, "." and " "
// read as "_").
func methodOverrideParam(raw string) bool {
	if raw == "" || !strings.ContainsAny(raw, "%mM") {
		return false
	}
	for _, pair := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		k, _, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		} else {
			k = lenientUnescape(k)
		}
		k = strings.TrimLeft(k, " ")
		k = strings.Map(func(r rune) rune {
			if r == '.' || r == ' ' {
				return '_'
			}
			return r
		}, k)
		if strings.EqualFold(k, "_method") {
			return true
		}
	}
	return false
}

// tokenIn says where req carries a sidecar token other than where the proxy
// reads one (the Authorization header, which is replaced, and the exact
// access_token query parameter, which is removed): another header, another
// query parameter (any case, e.g. ACCESS_TOKEN), the path or Host. Values
// are also checked percent-decoded. It returns "" when there is none.
func tokenIn(req *http.Request) string {
	if hasToken(req.Host) {
		return "the Host header"
	}
	if hasToken(req.URL.EscapedPath()) {
		return "the path"
	}
	for k, vs := range req.Header {
		if k == "Authorization" {
			continue
		}
		if hasToken(k) {
			return "a header name"
		}
		for _, v := range vs {
			if hasToken(v) {
				return "the " + printableName(k) + " header"
			}
		}
	}
	if q := stripAccessToken(req.URL.RawQuery); q != "" && hasToken(q) {
		for _, pair := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
			if hasToken(pair) {
				k, _, _ := strings.Cut(pair, "=")
				if uk, err := url.QueryUnescape(k); err == nil {
					k = uk
				}
				return "the query parameter " + printableName(k)
			}
		}
		return "the query"
	}
	return ""
}

// hasToken reports whether s holds a well-formed sidecar token, as sent or
// percent-decoded (once or twice).
func hasToken(s string) bool {
	for range 3 {
		for i := 0; ; {
			j := strings.Index(s[i:], token.Prefix)
			if j < 0 {
				break
			}
			i += j
			if i+token.Len <= len(s) && token.WellFormed(s[i:i+token.Len]) {
				return true
			}
			i += len(token.Prefix)
		}
		if !strings.Contains(s, "%") {
			return false
		}
		s = lenientUnescape(s)
	}
	return false
}

// lenientUnescape decodes every well-formed %XX escape and leaves the rest.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0 {
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// printableName quotes a client-chosen name for a message: at most 64
// bytes of printable ASCII.
func printableName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' {
			return '?'
		}
		return r
	}, s) + `"`
}

// redactedToken replaces a sidecar token in a path written to the audit log.
const redactedToken = token.Prefix + "[redacted]"

// loggablePath is the escaped path as the audit line writes it: a request
// that carries a token in its path is refused (token_in_request), and the
// log must not keep the token it refused. A well-formed token is replaced
// by redactedToken; a path that holds one only percent-encoded is replaced
// whole.
func loggablePath(p string) string {
	if !hasToken(p) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		j := strings.Index(p[i:], token.Prefix)
		if j < 0 {
			b.WriteString(p[i:])
			break
		}
		j += i
		b.WriteString(p[i:j])
		if j+token.Len <= len(p) && token.WellFormed(p[j:j+token.Len]) {
			b.WriteString(redactedToken)
			i = j + token.Len
			continue
		}
		b.WriteString(token.Prefix)
		i = j + len(token.Prefix)
	}
	if out := b.String(); !hasToken(out) {
		return out
	}
	return "/[redacted: the path holds a percent-encoded sidecar token]"
}
