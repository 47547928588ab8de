package oidc

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Error codes. They are stable strings: metrics label verification failures
// with them and the HTTP layer maps them to status codes. Only
// CodeIssuerUnavailable is (usually) Temporary.
const (
	// CodeMalformed: not a compact JWS, bad base64url, bad or non-object
	// JSON, duplicate JSON keys, nesting deeper than 32, a registered claim
	// of the wrong type, a NumericDate out of range.
	CodeMalformed = "malformed"
	// CodeTooLarge: the raw token is longer than Options.MaxTokenBytes.
	CodeTooLarge = "too_large"
	// CodeUnsupportedAlgorithm: alg is not in the allow-list ("none" and
	// HS* never are), or it does not fit the type of the key the token names.
	CodeUnsupportedAlgorithm = "unsupported_algorithm"
	// CodeMissingKID: no kid header and the issuer publishes more than one key.
	CodeMissingKID = "missing_kid"
	// CodeUnknownKID: the kid is not in the issuer's key set, even after the
	// (rate-limited) refetch.
	CodeUnknownKID = "unknown_kid"
	// CodeBadSignature: the signature does not verify with the issuer's key.
	CodeBadSignature = "bad_signature"
	// CodeExpired: now >= exp + leeway.
	CodeExpired = "expired"
	// CodeNotYetValid: nbf > now + leeway.
	CodeNotYetValid = "not_yet_valid"
	// CodeIssuedInFuture: iat > now + leeway.
	CodeIssuedInFuture = "issued_in_future"
	// CodeTooOld: Expect.MaxAge is set and now - iat > MaxAge + leeway.
	CodeTooOld = "too_old"
	// CodeLifetimeTooLong: Expect.MaxLifetime is set and exp - iat is more
	// than it (a token that claims to stay valid for years).
	CodeLifetimeTooLong = "lifetime_too_long"
	// CodeMissingClaim: exp, iat or iss is absent, or aud is absent while
	// Expect.Audience is set.
	CodeMissingClaim = "missing_claim"
	// CodeWrongIssuer: iss is not byte-for-byte Expect.Issuer.
	CodeWrongIssuer = "wrong_issuer"
	// CodeWrongAudience: aud does not contain Expect.Audience.
	CodeWrongAudience = "wrong_audience"
	// CodeIssuerUnavailable: no keys could be obtained for the issuer at
	// all (discovery or JWKS unreachable, invalid, oversize, or advertising
	// another issuer). Temporary is true, except when the configured issuer
	// itself is not a valid issuer URL.
	CodeIssuerUnavailable = "issuer_unavailable"
	// CodeForbiddenHeader: the JOSE header carries jku, x5u, jwk or x5c.
	// Keys are never taken from anything the token names.
	CodeForbiddenHeader = "forbidden_header"
	// CodeUnsupportedHeader: the JOSE header carries crit or b64, which
	// change how a JWS is processed (RFC 7515 §4.1.11, RFC 7797); the
	// verifier implements no such extension.
	CodeUnsupportedHeader = "unsupported_header"
)

// Error is the error type of Verify, Warm and Peek.
type Error struct {
	// Code is one of the Code* constants.
	Code string
	// Message says precisely what was wrong. It never contains the raw
	// token; claim values it quotes are ASCII-escaped and truncated.
	Message string
	// Temporary reports that retrying later may succeed (issuer unreachable).
	Temporary bool
	// Shape reports (with CodeMalformed) that the input is not shaped like
	// a compact JWS at all — empty, characters outside base64url, not three
	// parts, bad base64url — as when a client sends quotes, a "Bearer "
	// prefix or another value than the token. Errors in the decoded header
	// or claims (types, duplicate names, depth) are not Shape errors.
	Shape bool
	// Err is the underlying cause, if any.
	Err error
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of err if it is (or wraps) an *Error, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// shapeError is a CodeMalformed error about the compact form itself.
func shapeError(format string, args ...any) *Error {
	e := newError(CodeMalformed, format, args...)
	e.Shape = true
	return e
}

// maxQuoted bounds how much of an attacker-controlled string a message echoes.
const maxQuoted = 120

// quote returns s as an ASCII-only Go string literal (so look-alike Unicode
// letters show up as \u escapes), truncated to maxQuoted bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		return strconv.QuoteToASCII(s[:cut]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// quoteList formats a list of strings like ["a", "b"].
func quoteList(l []string) string {
	b := make([]byte, 0, 64)
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ", "...)
		}
		if i == 8 {
			b = append(b, fmt.Sprintf("... %d more", len(l)-i)...)
			break
		}
		b = append(b, quote(s)...)
	}
	return string(append(b, ']'))
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// fmtDur formats durations under an hour in whole seconds ("60s", "25s") and
// longer ones as time.Duration does ("2h0m0s").
// fmtSpan formats a number of seconds that may exceed time.Duration's
// range: in days from two days on.
func fmtSpan(sec int64) string {
	if sec < 48*3600 {
		return fmtDur(time.Duration(sec) * time.Second)
	}
	return strconv.FormatInt(sec/86400, 10) + " days"
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return d.String()
	}
	d = d.Round(time.Second)
	if d < time.Hour {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
