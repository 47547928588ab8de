package oidc

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"golang.org/x/sync/singleflight"
)

// Options configures a Verifier. The zero value of every field selects the
// documented default.
type Options struct {
	// HTTPClient fetches discovery documents and key sets. Default: a client
	// with a 3 s dial timeout and a 5 s overall timeout that follows
	// redirects only to https (or http on a loopback host).
	HTTPClient *http.Client
	// FetchTimeout bounds each discovery or JWKS fetch. Default 5 s.
	FetchTimeout time.Duration
	// MaxResponseBytes caps discovery and JWKS bodies. Default 256 KiB.
	MaxResponseBytes int64
	// RefreshCooldown is the minimum time between two refetches of one
	// issuer's keys triggered by unknown kids (and between background
	// refresh attempts while they fail). Default 30 s.
	RefreshCooldown time.Duration
	// RefreshInterval: keys older than this are refreshed in the background
	// on next use; the old keys keep serving, also when the refresh fails.
	// Default 1 h.
	RefreshInterval time.Duration
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 60 s
	// (GitHub's clock runs ahead); a negative value means no leeway.
	Leeway time.Duration
	// Algorithms is the allow-list of JWS algorithms. Default RS256, RS384,
	// RS512, ES256, ES384, PS256. "none" and HS* are rejected by NewVerifier.
	Algorithms []string
	// MaxTokenBytes: longer tokens are rejected before parsing. Default 16 KiB.
	MaxTokenBytes int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnFetch, if set, is called after every discovery ("discovery") and
	// JWKS ("jwks") fetch with its outcome; for metrics.
	OnFetch func(issuer, doc string, err error)
}

// Verifier verifies CI OIDC tokens against the keys their configured issuer
// publishes. It is safe for concurrent use.
type Verifier struct {
	opts    Options
	algs    map[string]jwa.SignatureAlgorithm
	issuers sync.Map // issuer string -> *issuerState
	sf      singleflight.Group
}

// NewVerifier returns a Verifier with o's settings.
func NewVerifier(o Options) (*Verifier, error) {
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 5 * time.Second
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 256 << 10
	}
	if o.RefreshCooldown <= 0 {
		o.RefreshCooldown = 30 * time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = time.Hour
	}
	switch {
	case o.Leeway == 0:
		o.Leeway = 60 * time.Second
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.MaxTokenBytes <= 0 {
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = DefaultAlgorithms()
	}
	v := &Verifier{opts: o, algs: make(map[string]jwa.SignatureAlgorithm, len(o.Algorithms))}
	for _, a := range o.Algorithms {
		if _, ok := algFamilies[a]; !ok {
			if a == "none" || strings.HasPrefix(strings.ToUpper(a), "HS") {
				return nil, fmt.Errorf("oidc: algorithm %q is never allowed", a)
			}
			return nil, fmt.Errorf("oidc: unsupported algorithm %q (supported: RS256/384/512, PS256/384/512, ES256/384/512)", a)
		}
		ja, ok := jwa.LookupSignatureAlgorithm(a)
		if !ok {
			return nil, fmt.Errorf("oidc: algorithm %q unknown to jwx", a)
		}
		v.algs[a] = ja
	}
	v.opts.Algorithms = append([]string(nil), o.Algorithms...)
	return v, nil
}

func (v *Verifier) now() time.Time { return v.opts.Now() }

// Expect says what a token must satisfy beyond a valid signature.
type Expect struct {
	// Issuer is the configured issuer: keys come only from its discovery
	// document, and the token's iss must equal it byte for byte. It must come
	// from configuration, never from the token.
	Issuer string
	// Audience, if not "", must be one of the token's aud values.
	Audience string
	// MaxAge, if not 0, rejects tokens issued longer ago than this (plus
	// leeway), whatever their exp says.
	MaxAge time.Duration
	// MaxLifetime, if not 0, rejects tokens whose exp is more than this
	// after their iat. Verified tokens then expire at most MaxLifetime
	// after iat, which bounds how long anything keyed on them is kept.
	MaxLifetime time.Duration
}

// Token is a verified token.
type Token struct {
	// Claims is the decoded payload. Numbers are json.Number, so times stay
	// Unix numbers and large integers keep their precision.
	Claims                                 map[string]any
	Issuer, Subject, JTI, KeyID, Algorithm string
	Audience                               []string
	// NotBefore is zero if the token has no nbf.
	IssuedAt, ExpiresAt, NotBefore time.Time
	// Hash is the hex SHA-256 of the JWS signing input (header "." payload),
	// what the signature covers: a replay key when there is no jti. It never
	// covers the signature bytes, which are malleable (an ECDSA signature
	// (r, s) also verifies as (r, n-s)), so every signature of one signed
	// content has one Hash.
	Hash string
}

// Warm fetches the issuer's discovery document and keys unless they are
// cached already. It returns an error (an *Error with Code
// issuer_unavailable) when no keys could be obtained.
func (v *Verifier) Warm(ctx context.Context, issuer string) error {
	st := v.state(issuer)
	if st.badURL != nil {
		return &Error{Code: CodeIssuerUnavailable, Message: st.badURL.Error(), Err: st.badURL}
	}
	if st.keys.Load() != nil {
		return nil
	}
	if err := await(ctx, v.fetch(st, nil)); err != nil {
		return &Error{Code: CodeIssuerUnavailable, Temporary: true, Err: err,
			Message: "no keys for issuer " + quote(issuer) + " yet: " + err.Error()}
	}
	if st.keys.Load() != nil {
		return nil
	}
	st.mu.Lock()
	err := st.lastErr
	st.mu.Unlock()
	return v.unavailable(st, err, 0)
}

// stringHeaders are the registered JWS header parameters (RFC 7515 §4.1)
// whose value is a string; a token where one is not is malformed. (The
// others are forbidden outright: forbiddenHeaders.)
var stringHeaders = []string{"alg", "kid", "typ", "cty", "x5t", "x5t#S256"}

// forbiddenHeaders name keys or key locations, or change how the JWS is
// processed. None of them is ever honoured; a token carrying one is rejected.
var forbiddenHeaders = []string{"jku", "x5u", "jwk", "x5c", "crit", "b64"}

// headerProblem says why header h is refused, and its code.
func headerProblem(h string) (code, msg string) {
	switch h {
	case "crit":
		return CodeUnsupportedHeader, `token header "crit" is not supported: it makes the listed JWS extensions mandatory, and the sidecar implements none (CI OIDC issuers do not use crit)`
	case "b64":
		return CodeUnsupportedHeader, `token header "b64" is not supported: the payload must be base64url-encoded as in a plain JWS (RFC 7797's unencoded payload is not accepted; CI OIDC issuers do not use b64)`
	}
	return CodeForbiddenHeader, fmt.Sprintf("token header %q is not allowed: keys come only from the issuer's discovery document", h)
}

// compact is a split, base64-decoded compact JWS.
type compact struct {
	header  map[string]any
	payload []byte
	sig     []byte
	signed  []byte // header.payload as sent: what the signature covers
	alg     string
	kid     string
	hasKID  bool
}

var b64 = base64.RawURLEncoding.Strict()

// base64URL marks the bytes of the base64url alphabet.
var base64URL = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

// decodePart decodes src into the front of *buf and advances *buf past it.
func decodePart(buf *[]byte, src []byte) ([]byte, error) {
	n, err := b64.Decode(*buf, src)
	if err != nil {
		return nil, err
	}
	part := (*buf)[:n:n]
	*buf = (*buf)[n:]
	return part, nil
}

// splitCompact decodes the three parts of a compact JWS and its header.
func splitCompact(raw string) (*compact, *Error) {
	if raw == "" {
		return nil, shapeError("token is empty")
	}
	d1 := -1
	d2 := -1
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case base64URL[c]:
		case c == '.':
			switch {
			case d1 < 0:
				d1 = i
			case d2 < 0:
				d2 = i
			default:
				return nil, shapeError("token is not a compact JWS: more than 3 dot-separated parts")
			}
		default:
			return nil, shapeError("token is not a compact JWS: character %s at offset %d is not base64url", strconv.QuoteRuneToASCII(rune(c)), i)
		}
	}
	if d2 < 0 {
		return nil, shapeError("token is not a compact JWS: fewer than 3 dot-separated parts")
	}
	// One copy of the token and one buffer for the three decoded parts
	// (rather than two allocations per part); the copy's first two parts
	// are what the signature covers.
	rb := []byte(raw)
	c := &compact{signed: rb[:d2]}
	buf := make([]byte, b64.DecodedLen(d1)+b64.DecodedLen(d2-d1-1)+b64.DecodedLen(len(raw)-d2-1))
	hb, err := decodePart(&buf, rb[:d1])
	if err != nil || len(hb) == 0 {
		return nil, shapeError("token header is not valid base64url")
	}
	if c.payload, err = decodePart(&buf, rb[d1+1:d2]); err != nil {
		return nil, shapeError("token payload is not valid base64url")
	}
	if c.sig, err = decodePart(&buf, rb[d2+1:]); err != nil {
		return nil, shapeError("token signature is not valid base64url")
	}
	h, jerr := decodeObject(hb, maxJSONDepth)
	if jerr != nil {
		return nil, &Error{Code: CodeMalformed, Message: "token header: " + jerr.Error(), Err: jerr}
	}
	c.header = h
	for _, name := range stringHeaders {
		if v, present := h[name]; present {
			if _, ok := v.(string); !ok {
				return nil, newError(CodeMalformed, "token header %q is not a string", name)
			}
		}
	}
	alg, ok := h["alg"].(string)
	if !ok {
		return nil, newError(CodeMalformed, `token header has no "alg" string`)
	}
	c.alg = alg
	if k, present := h["kid"]; present {
		kid, ok := k.(string)
		if !ok {
			return nil, newError(CodeMalformed, `token header "kid" is not a string`)
		}
		c.kid, c.hasKID = kid, true
	}
	return c, nil
}

// Verify checks raw — a compact JWS — against the keys of e.Issuer and the
// expectations in e, and returns the verified token. Every failure is an
// *Error; see the Code* constants.
func (v *Verifier) Verify(ctx context.Context, raw string, e Expect) (*Token, error) {
	tok, err := v.verify(ctx, raw, e)
	if err != nil {
		return nil, err
	}
	return tok, nil
}

func (v *Verifier) verify(ctx context.Context, raw string, e Expect) (*Token, *Error) {
	if len(raw) > v.opts.MaxTokenBytes {
		return nil, newError(CodeTooLarge, "token is %d bytes, more than the %d-byte limit", len(raw), v.opts.MaxTokenBytes)
	}
	c, err := splitCompact(raw)
	if err != nil {
		return nil, err
	}
	for _, h := range forbiddenHeaders {
		if _, present := c.header[h]; present {
			code, msg := headerProblem(h)
			return nil, newError(code, "%s", msg)
		}
	}
	jalg, ok := v.algs[c.alg]
	if !ok {
		return nil, newError(CodeUnsupportedAlgorithm, "alg %s is not allowed (allowed: %s)", quote(c.alg), strings.Join(v.opts.Algorithms, ", "))
	}
	if len(c.sig) == 0 {
		return nil, newError(CodeBadSignature, "token has an empty signature")
	}

	st := v.state(e.Issuer)
	ks, err := v.keysFor(ctx, st)
	if err != nil {
		return nil, err
	}
	key, err := v.selectKey(ctx, st, ks, c)
	if err != nil {
		return nil, err
	}

	// The signature covers the header and payload exactly as sent. jwsbb is
	// jwx's building block beneath jws.Verify: the same verifiers, without
	// parsing the message a second time (its header was decoded above by
	// the one decoder whose view every check uses, so no two parsers can
	// disagree about alg, kid or crit).
	sum, verr := verifySignature(key.key, jalg.String(), c.signed, c.sig)
	if verr != nil {
		return nil, &Error{Code: CodeBadSignature, Err: verr,
			Message: fmt.Sprintf("signature does not verify with the issuer's key %s (%s)", quote(key.kid), c.alg)}
	}

	claims, jerr := decodeClaims(c.payload)
	if jerr != nil {
		return nil, &Error{Code: CodeMalformed, Message: "token payload: " + jerr.Error(), Err: jerr}
	}
	tok := &Token{Claims: claims, KeyID: key.kid, Algorithm: c.alg}
	if err := v.validate(tok, e); err != nil {
		return nil, err
	}
	tok.Hash = hex.EncodeToString(sum[:])
	return tok, nil
}

// verifySignature checks sig over signed and returns the SHA-256 of signed
// (the token's hash). RS256 — every GitHub and CircleCI token — goes to
// crypto/rsa directly with that digest, so it is computed once, not once by
// jwsbb and again for the hash; jwsbb does exactly this call for RS256
// (TestVerifySignatureMatchesJWX). Every other algorithm goes through jwsbb.
func verifySignature(key any, alg string, signed, sig []byte) ([32]byte, error) {
	sum := sha256.Sum256(signed)
	if pub, ok := key.(*rsa.PublicKey); ok && alg == "RS256" {
		return sum, rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
	}
	return sum, jwsbb.Verify(key, alg, signed, sig)
}

// selectKey finds the key the token names (or the issuer's only key when it
// names none) that fits the token's alg, refetching once (rate-limited) when
// the kid is unknown.
func (v *Verifier) selectKey(ctx context.Context, st *issuerState, ks *keySet, c *compact) (*pubKey, *Error) {
	if !c.hasKID {
		if len(ks.all) != 1 {
			return nil, newError(CodeMissingKID, "token header has no kid and the issuer publishes %d keys", len(ks.all))
		}
		k := ks.all[0]
		if !k.fits(c.alg) {
			return nil, newError(CodeUnsupportedAlgorithm, "alg %s does not fit the issuer's only key %s (%s)", c.alg, quote(k.kid), k.describe())
		}
		return k, nil
	}
	cands, found := ks.byKID[c.kid]
	if !found {
		nks, err := v.refetchForKID(ctx, st, ks, c.kid)
		if err != nil {
			return nil, err
		}
		if cands, found = nks.byKID[c.kid]; !found {
			st.mu.Lock()
			last, lastErr := st.lastKIDRefetch, st.lastErr
			st.mu.Unlock()
			wait := time.Duration(0)
			if !last.IsZero() {
				wait = v.opts.RefreshCooldown - v.now().Sub(last)
			}
			if nks.fetchedAt.After(last) {
				// Another refresh replaced the set meanwhile; that is the
				// latest fetch.
				last = nks.fetchedAt
			}
			return nil, v.unknownKID(c.kid, last, lastErr, wait)
		}
	}
	for _, k := range cands {
		if k.fits(c.alg) {
			return k, nil
		}
	}
	return nil, newError(CodeUnsupportedAlgorithm, "alg %s does not fit the issuer's key %s (%s)", c.alg, quote(c.kid), cands[0].describe())
}

// validate checks the registered claims and fills tok's fields.
func (v *Verifier) validate(tok *Token, e Expect) *Error {
	c := tok.Claims
	var err *Error

	// iss
	iss, present, err := stringClaim(c, "iss")
	if err != nil {
		return err
	}
	if !present {
		return newError(CodeMissingClaim, "token has no iss claim")
	}
	if iss != e.Issuer {
		return newError(CodeWrongIssuer, "iss %s is not the provider's issuer %s", quote(iss), quote(e.Issuer))
	}
	tok.Issuer = iss
	if tok.Subject, _, err = stringClaim(c, "sub"); err != nil {
		return err
	}
	if tok.JTI, _, err = stringClaim(c, "jti"); err != nil {
		return err
	}

	// Times.
	var hasExp, hasIat, hasNbf bool
	if tok.ExpiresAt, hasExp, err = timeClaim(c, "exp"); err != nil {
		return err
	}
	if tok.IssuedAt, hasIat, err = timeClaim(c, "iat"); err != nil {
		return err
	}
	if tok.NotBefore, hasNbf, err = timeClaim(c, "nbf"); err != nil {
		return err
	}
	if !hasExp {
		return newError(CodeMissingClaim, "token has no exp claim")
	}
	if !hasIat {
		return newError(CodeMissingClaim, "token has no iat claim")
	}
	now := v.now()
	lw := v.opts.Leeway
	if !now.Before(tok.ExpiresAt.Add(lw)) {
		return newError(CodeExpired, "token expired at %s (now %s, leeway %s)", fmtTime(tok.ExpiresAt), fmtTime(now), fmtDur(lw))
	}
	if hasNbf && tok.NotBefore.After(now.Add(lw)) {
		return newError(CodeNotYetValid, "token not valid before %s (now %s, leeway %s)", fmtTime(tok.NotBefore), fmtTime(now), fmtDur(lw))
	}
	if tok.IssuedAt.After(now.Add(lw)) {
		return newError(CodeIssuedInFuture, "token issued at %s, in the future (now %s, leeway %s)", fmtTime(tok.IssuedAt), fmtTime(now), fmtDur(lw))
	}
	if e.MaxAge > 0 {
		if age := now.Sub(tok.IssuedAt); age > e.MaxAge+lw {
			return newError(CodeTooOld, "token issued at %s is %s old, more than the maximum age %s (now %s, leeway %s)",
				fmtTime(tok.IssuedAt), fmtDur(age), fmtDur(e.MaxAge), fmtTime(now), fmtDur(lw))
		}
	}

	if e.MaxLifetime > 0 {
		// In seconds: a far exp overflows time.Duration (292 years).
		if life := tok.ExpiresAt.Unix() - tok.IssuedAt.Unix(); life > int64(e.MaxLifetime/time.Second) {
			return newError(CodeLifetimeTooLong, "token expires %s after it was issued (iat %s, exp %s), more than the maximum OIDC token lifetime %s",
				fmtSpan(life), fmtTime(tok.IssuedAt), fmtTime(tok.ExpiresAt), fmtDur(e.MaxLifetime))
		}
	}

	// aud
	aud, present, err := audClaim(c)
	if err != nil {
		return err
	}
	tok.Audience = aud
	if e.Audience != "" {
		if !present {
			return newError(CodeMissingClaim, "token has no aud claim (expected %s)", quote(e.Audience))
		}
		ok := false
		for _, a := range aud {
			if a == e.Audience {
				ok = true
				break
			}
		}
		if !ok {
			return newError(CodeWrongAudience, "aud %s does not contain %s", quoteList(aud), quote(e.Audience))
		}
	}
	return nil
}

func stringClaim(c map[string]any, name string) (string, bool, *Error) {
	v, present := c[name]
	if !present {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", true, newError(CodeMalformed, "claim %s is %s, not a string", name, jsonType(v))
	}
	return s, true, nil
}

// maxNumericDate is 9999-12-31T23:59:59Z.
const maxNumericDate = 253402300799

func timeClaim(c map[string]any, name string) (time.Time, bool, *Error) {
	v, present := c[name]
	if !present {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, true, newError(CodeMalformed, "claim %s is %s, not a NumericDate number", name, jsonType(v))
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if i < 0 || i > maxNumericDate {
			return time.Time{}, true, newError(CodeMalformed, "claim %s (%d) is out of range", name, i)
		}
		return time.Unix(i, 0), true, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, newError(CodeMalformed, "claim %s (%s) is out of range", name, quote(string(n)))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func audClaim(c map[string]any) ([]string, bool, *Error) {
	v, present := c["aud"]
	if !present {
		return nil, false, nil
	}
	switch a := v.(type) {
	case string:
		return []string{a}, true, nil
	case []any:
		out := make([]string, len(a))
		for i, x := range a {
			s, ok := x.(string)
			if !ok {
				return nil, true, newError(CodeMalformed, "aud element %d is %s, not a string", i, jsonType(x))
			}
			out[i] = s
		}
		return out, true, nil
	}
	return nil, true, newError(CodeMalformed, "claim aud is %s, not a string or an array of strings", jsonType(v))
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// DefaultMaxTokenBytes is Options.MaxTokenBytes when not set.
const DefaultMaxTokenBytes = 16 << 10

// DecodeClaims decodes a claims document given as plain JSON (not inside a
// token), with the rules Verify applies to a token's payload: one JSON
// object, no duplicate names, nesting at most 32 deep, valid UTF-8, numbers
// as json.Number; and at most DefaultMaxTokenBytes long (a token within the
// default limit carries a smaller payload). It is for tooling that
// evaluates hand-written claims; errors are *Error with Code malformed.
func DecodeClaims(data []byte) (map[string]any, error) {
	if len(data) > DefaultMaxTokenBytes {
		return nil, newError(CodeMalformed, "claims are %d bytes, more than the %d-byte limit a token's claims stay within", len(data), DefaultMaxTokenBytes)
	}
	cl, jerr := decodeClaims(data)
	if jerr != nil {
		return nil, &Error{Code: CodeMalformed, Message: jerr.Error(), Err: jerr}
	}
	return cl, nil
}

// Peek decodes raw's header and claims WITHOUT verifying anything, with the
// same strict JSON rules as Verify (no duplicate names, depth ≤ 32, numbers as
// json.Number). It is for tooling such as `policy eval --token`; never base an
// authorization decision on its result. Errors are *Error with Code malformed.
func Peek(raw string) (header, claims map[string]any, err error) {
	c, e := splitCompact(strings.TrimSpace(raw))
	if e != nil {
		return nil, nil, e
	}
	cl, jerr := decodeClaims(c.payload)
	if jerr != nil {
		return nil, nil, &Error{Code: CodeMalformed, Message: "token payload: " + jerr.Error(), Err: jerr}
	}
	return c.header, cl, nil
}
