package proxy

import (
	"net/http"
	"regexp"
	"strings"
)

// MaxPathBytes bounds the escaped request path. Longer paths get 414: no
// route of Buddy's API comes near it, and a bound keeps matching cheap.
const MaxPathBytes = 2048

// pathError is a rejected request path: the status (400 or 414) and a
// reason that names the rule, never the path itself.
type pathError struct {
	status int
	reason string
}

// checkPath validates the request's path and returns the escaped form that
// is matched against the route table, passed to the policy and forwarded,
// byte for byte. The rules (docs/proxy.md, "Path handling"):
//
//   - the path must be absolute ("/..."), in origin form, at most
//     MaxPathBytes long, and sent in canonical escaped form (what
//     url.URL.EscapedPath returns), so that what is matched is what was sent;
//   - no empty segment ("//"), no "." or ".." segment;
//   - no backslash, no ";" (matrix parameters: some servers strip them);
//   - percent-escapes must be well formed and must not encode "/", "\",
//     ";", "%", a control character or an unreserved character
//     (A-Z a-z 0-9 - . _ ~): the first five change the path's structure
//     when decoded (or decoded twice), the last has a plain spelling, so an
//     escaped one could only serve to reach a route under another name;
//   - a single trailing slash is removed (no route ends in "/"), and the
//     path without it is what is authorized and forwarded.
//
// Nothing is ever cleaned or resolved: a path is either accepted as sent
// (minus that trailing slash) or rejected.
func checkPath(req *http.Request) (string, *pathError) {
	u := req.URL
	if u.Opaque != "" {
		return "", &pathError{http.StatusBadRequest, "the request target is not an absolute path"}
	}
	p := u.EscapedPath()
	if u.RawPath != "" && u.RawPath != p {
		// The client sent characters that must be percent-encoded; Go would
		// re-encode the path, and what we forward would differ from what was
		// sent (and could differ in meaning, e.g. %2F turning into /).
		return "", &pathError{http.StatusBadRequest, "the path contains characters that must be percent-encoded"}
	}
	if len(p) > MaxPathBytes {
		return "", &pathError{http.StatusRequestURITooLong, "the path is too long"}
	}
	if p == "" || p[0] != '/' {
		return "", &pathError{http.StatusBadRequest, "the path must be absolute"}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return "", &pathError{http.StatusBadRequest, "the path contains a malformed percent-escape"}
			}
			if msg := forbiddenEscape(byte(unhex(p[i+1])<<4 | unhex(p[i+2]))); msg != "" {
				return "", &pathError{http.StatusBadRequest, msg}
			}
			i += 2
		case c == '\\':
			return "", &pathError{http.StatusBadRequest, "the path contains a backslash"}
		case c == ';':
			return "", &pathError{http.StatusBadRequest, "the path contains a ';' (path parameters are not supported)"}
		case c <= ' ' || c >= 0x7f:
			return "", &pathError{http.StatusBadRequest, "the path contains a control, space or non-ASCII character"}
		}
	}
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
		if p[len(p)-1] == '/' { // "//" at the end, or the whole path
			return "", &pathError{http.StatusBadRequest, "the path contains an empty segment (//)"}
		}
	}
	if p == "/" {
		return p, nil
	}
	for rest := p[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		switch seg {
		case "":
			return "", &pathError{http.StatusBadRequest, "the path contains an empty segment (//)"}
		case ".", "..":
			return "", &pathError{http.StatusBadRequest, "the path contains a dot segment (. or ..)"}
		}
		// An encoded slash is allowed only inside a route variable that
		// may hold one (checked after matching, table.match); whatever an
		// upstream that decodes it makes of the segment must still be
		// clean segments: no empty, "." or ".." piece.
		if hasEncodedSlash(seg) {
			for _, piece := range strings.Split(encodedSlashRE.ReplaceAllString(seg, "/"), "/") {
				if piece == "" || piece == "." || piece == ".." {
					return "", &pathError{http.StatusBadRequest, "the path contains an encoded slash (%2F) next to another slash, a . or a .."}
				}
			}
		}
		if !more {
			break
		}
		rest = tail
	}
	return p, nil
}

// forbiddenEscape says why the percent-encoded byte b is refused, or "".
func forbiddenEscape(b byte) string {
	switch {
	case b == '/':
		return "" // allowed only inside some route variables: checked after matching
	case b == '\\':
		return "the path contains an encoded backslash (%5C)"
	case b == '.':
		return "the path contains an encoded dot (%2E)"
	case b == '%':
		return "the path contains an encoded percent sign (%25)"
	case b == ';':
		return "the path contains an encoded ';' (%3B)"
	case b < 0x20 || b == 0x7f:
		return "the path contains an encoded control character"
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_', b == '~':
		return "the path percent-encodes a character that needs no encoding"
	}
	return ""
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// encodedSlashReason is the 400's reason for an encoded slash outside a
// variable that may hold one.
const encodedSlashReason = "the path contains an encoded slash (%2F) outside a path variable that may hold one " +
	"(branch, tag, revision names; see docs/routes.md)"

var encodedSlashRE = regexp.MustCompile(`%2[fF]`)

// hasEncodedSlash reports whether an escaped path (or part of one) holds
// %2F or %2f.
func hasEncodedSlash(s string) bool {
	return strings.Contains(s, "%2F") || strings.Contains(s, "%2f")
}
