package oidc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

// rig is a warmed verifier against an issuer publishing an RSA key
// (kidR, RS256) and an EC P-256 key (kidE, ES256), with a fixed clock.
type rig struct {
	iss        *oidctest.Issuer
	evil       *oidctest.Issuer // another issuer whose keys must never be used or fetched
	v          *oidc.Verifier
	clk        *testkit.Clock
	now        time.Time
	kidR, kidE string
	rsaKey     *rsa.PrivateKey
	ecKey      *ecdsa.PrivateKey
	evilKey    *rsa.PrivateKey
	evilKID    string
}

func newRig(t testing.TB, opts ...oidctest.Option) *rig {
	t.Helper()
	f := &rig{clk: testkit.NewClock(time.Now())}
	f.now = f.clk.Now()
	f.iss = oidctest.Start(t, append([]oidctest.Option{oidctest.WithRSA()}, opts...)...)
	f.kidR = f.iss.KID()
	var err error
	if f.kidE, err = f.iss.Rotate("ES256"); err != nil {
		t.Fatal(err)
	}
	f.rsaKey = f.iss.Key(f.kidR).(*rsa.PrivateKey)
	f.ecKey = f.iss.Key(f.kidE).(*ecdsa.PrivateKey)
	f.evil = oidctest.Start(t, oidctest.WithRSA())
	f.evilKID = f.evil.KID()
	f.evilKey = f.evil.Key(f.evilKID).(*rsa.PrivateKey)
	f.v = newVerifier(t, oidc.Options{Now: f.clk.Now})
	if err := f.v.Warm(context.Background(), f.iss.URL()); err != nil {
		t.Fatal(err)
	}
	return f
}

// claims returns GitHub-shaped claims for f's issuer, changed by mods.
func (f *rig) claims(mods ...func(map[string]any)) map[string]any {
	c := ghClaims(f.iss, f.now)
	for _, m := range mods {
		m(c)
	}
	return c
}

func (f *rig) payload(t testing.TB, mods ...func(map[string]any)) []byte {
	return mustJSON(t, f.claims(mods...))
}

// rs256 signs payload with the issuer's RSA key and a plain header.
func (f *rig) rs256(t testing.TB, payload []byte) string {
	return handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": f.kidR, "typ": "JWT"}, payload)
}

func set(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
func del(k string) func(map[string]any)        { return func(c map[string]any) { delete(c, k) } }

// insertMembers puts raw JSON members right after the payload's opening brace.
func insertMembers(p []byte, members string) []byte {
	return []byte("{" + members + "," + string(p[1:]))
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

type advCase struct {
	name string
	raw  string
	exp  oidc.Expect // zero: expect(f.iss)
	code string
	msg  string // exact message, if set
}

// adversarialCases returns tokens that must all be rejected by f.v, with the
// code each must get. valid is a token that must be accepted.
func adversarialCases(t testing.TB, f *rig) (valid string, cases []advCase) {
	now := f.now.Unix()
	valid = f.rs256(t, f.payload(t))
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	pubDER, err := x509.MarshalPKIXPublicKey(&f.rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&f.rsaKey.PublicKey)})
	pubJWK, err := jwk.Import(&f.rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubJWKJSON := mustJSON(t, pubJWK)
	evilJWK, err := jwk.Import(&f.evilKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = evilJWK.Set(jwk.KeyIDKey, f.evilKID)
	var evilJWKMap map[string]any
	if err := json.Unmarshal(mustJSON(t, evilJWK), &evilJWKMap); err != nil {
		t.Fatal(err)
	}
	evilJWKS := f.evil.URL() + oidctest.JWKSPath
	evilSign := func(h map[string]any) string {
		return handSign(t, "RS256", f.evilKey, h, f.payload(t))
	}

	// ES256 signature in ASN.1 DER instead of the JWS r||s form.
	esHeader := b64(mustJSON(t, map[string]any{"alg": "ES256", "kid": f.kidE}))
	esInput := esHeader + "." + b64(f.payload(t))
	esSum := sha256.Sum256([]byte(esInput))
	der, err := ecdsa.SignASN1(rand.Reader, f.ecKey, esSum[:])
	if err != nil {
		t.Fatal(err)
	}
	esDER := esInput + "." + b64(der)

	// A 1-bit change in the middle of the signature.
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 1
	tamperedSig := parts[0] + "." + parts[1] + "." + b64(sig)

	cases = []advCase{
		// Algorithms.
		{name: "alg none", raw: handSign(t, "none", nil, map[string]any{"alg": "none", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "alg NONE no kid", raw: handSign(t, "none", nil, map[string]any{"alg": "NONE"}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "alg none with signature", raw: handSign(t, "none", nil, map[string]any{"alg": "none"}, f.payload(t)) + parts[2], code: oidc.CodeUnsupportedAlgorithm},
		{name: "HS256 with RSA PKIX PEM as secret", raw: handSign(t, "HS256", pubPEM, map[string]any{"alg": "HS256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "HS256 with RSA PKCS1 PEM as secret", raw: handSign(t, "HS256", pkcs1PEM, map[string]any{"alg": "HS256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "HS256 with RSA DER as secret", raw: handSign(t, "HS256", pubDER, map[string]any{"alg": "HS256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "HS256 with JWK JSON as secret", raw: handSign(t, "HS256", pubJWKJSON, map[string]any{"alg": "HS256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "HS512 with modulus as secret", raw: handSign(t, "HS512", f.rsaKey.N.Bytes(), map[string]any{"alg": "HS512"}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "alg missing", raw: handSign(t, "none", nil, map[string]any{"kid": f.kidR}, f.payload(t)) + parts[2], code: oidc.CodeMalformed},
		{name: "alg not a string", raw: handSign(t, "none", nil, map[string]any{"alg": 256, "kid": f.kidR}, f.payload(t)) + parts[2], code: oidc.CodeMalformed},
		{name: "RS256 header on EC key", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": f.kidE}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "ES256 header on RSA key", raw: handSign(t, "ES256", f.ecKey, map[string]any{"alg": "ES256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "ES384 header on P-256 key", raw: handSign(t, "ES256", f.ecKey, map[string]any{"alg": "ES384", "kid": f.kidE}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "PS256 header on RS256 key", raw: handSign(t, "PS256", f.rsaKey, map[string]any{"alg": "PS256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeUnsupportedAlgorithm},
		{name: "ES256 DER signature", raw: esDER, code: oidc.CodeBadSignature},

		// Keys.
		{name: "unknown kid", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": "k9"}, f.payload(t)), code: oidc.CodeUnknownKID},
		{name: "missing kid, two keys", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256"}, f.payload(t)), code: oidc.CodeMissingKID},
		{name: "typ not a string", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": f.kidR, "typ": 1}, f.payload(t)), code: oidc.CodeMalformed},
		{name: "x5t not a string", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": f.kidR, "x5t": []int{1}}, f.payload(t)), code: oidc.CodeMalformed},
		{name: "kid not a string", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": 1}, f.payload(t)), code: oidc.CodeMalformed},
		{name: "other issuer's key under our kid", raw: handSign(t, "RS256", f.evilKey, map[string]any{"alg": "RS256", "kid": f.kidR}, f.payload(t)), code: oidc.CodeBadSignature},
		{name: "jku to another server", raw: evilSign(map[string]any{"alg": "RS256", "kid": f.evilKID, "jku": evilJWKS}), code: oidc.CodeForbiddenHeader},
		{name: "jku with our kid", raw: evilSign(map[string]any{"alg": "RS256", "kid": f.kidR, "jku": evilJWKS}), code: oidc.CodeForbiddenHeader},
		{name: "x5u to another server", raw: evilSign(map[string]any{"alg": "RS256", "kid": f.evilKID, "x5u": f.evil.URL() + "/cert.pem"}), code: oidc.CodeForbiddenHeader},
		{name: "embedded jwk", raw: evilSign(map[string]any{"alg": "RS256", "kid": f.evilKID, "jwk": evilJWKMap}), code: oidc.CodeForbiddenHeader},
		{name: "embedded jwk without kid", raw: evilSign(map[string]any{"alg": "RS256", "jwk": evilJWKMap}), code: oidc.CodeForbiddenHeader},
		{name: "x5c", raw: evilSign(map[string]any{"alg": "RS256", "kid": f.evilKID, "x5c": []string{base64.StdEncoding.EncodeToString(pubDER)}}), code: oidc.CodeForbiddenHeader},
		{name: "crit", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": f.kidR, "crit": []string{"exp"}, "exp": 1}, f.payload(t)), code: oidc.CodeUnsupportedHeader,
			msg: `token header "crit" is not supported: it makes the listed JWS extensions mandatory, and the sidecar implements none (CI OIDC issuers do not use crit)`},
		{name: "b64 false", raw: handSign(t, "RS256", f.rsaKey, map[string]any{"alg": "RS256", "kid": f.kidR, "b64": false}, f.payload(t)), code: oidc.CodeUnsupportedHeader,
			msg: `token header "b64" is not supported: the payload must be base64url-encoded as in a plain JWS (RFC 7797's unencoded payload is not accepted; CI OIDC issuers do not use b64)`},

		// Signature.
		{name: "tampered payload", raw: parts[0] + "." + b64(f.payload(t, set("repository_owner", "evil-org"))) + "." + parts[2], code: oidc.CodeBadSignature},
		{name: "tampered signature", raw: tamperedSig, code: oidc.CodeBadSignature},
		{name: "empty signature", raw: parts[0] + "." + parts[1] + ".", code: oidc.CodeBadSignature},
		{name: "signature of another token", raw: parts[0] + "." + b64(f.payload(t)) + "." + parts[2], code: oidc.CodeBadSignature},

		// Times (leeway 60s).
		{name: "expired", raw: f.rs256(t, f.payload(t, set("exp", now-61))), code: oidc.CodeExpired,
			msg: fmt.Sprintf("token expired at %s (now %s, leeway 60s)", utc(now-61), utc(now))},
		{name: "expired long ago", raw: f.rs256(t, f.payload(t, set("exp", now-3600), set("iat", now-7200), set("nbf", now-7200))), code: oidc.CodeExpired},
		{name: "nbf in the future", raw: f.rs256(t, f.payload(t, set("nbf", now+120))), code: oidc.CodeNotYetValid,
			msg: fmt.Sprintf("token not valid before %s (now %s, leeway 60s)", utc(now+120), utc(now))},
		{name: "iat in the future", raw: f.rs256(t, f.payload(t, set("iat", now+120), del("nbf"))), code: oidc.CodeIssuedInFuture},
		{name: "too old", raw: f.rs256(t, f.payload(t, set("iat", now-7200), set("nbf", now-7200))), exp: oidc.Expect{Issuer: f.iss.URL(), Audience: testAud, MaxAge: time.Hour}, code: oidc.CodeTooOld},
		{name: "missing exp", raw: f.rs256(t, f.payload(t, del("exp"))), code: oidc.CodeMissingClaim, msg: "token has no exp claim"},
		{name: "missing iat", raw: f.rs256(t, f.payload(t, del("iat"))), code: oidc.CodeMissingClaim, msg: "token has no iat claim"},
		{name: "exp a string", raw: f.rs256(t, f.payload(t, set("exp", fmt.Sprint(now+300)))), code: oidc.CodeMalformed},
		{name: "exp huge", raw: f.rs256(t, f.payload(t, set("exp", json.Number("1e300")))), code: oidc.CodeMalformed},
		{name: "exp negative", raw: f.rs256(t, f.payload(t, set("exp", -1))), code: oidc.CodeMalformed},
		{name: "iat null", raw: f.rs256(t, f.payload(t, set("iat", nil))), code: oidc.CodeMalformed},

		// Issuer.
		{name: "wrong iss", raw: f.rs256(t, f.payload(t, set("iss", "https://evil.example"))), code: oidc.CodeWrongIssuer,
			msg: fmt.Sprintf("iss \"https://evil.example\" is not the provider's issuer %q", f.iss.URL())},
		{name: "iss with trailing slash", raw: f.rs256(t, f.payload(t, set("iss", f.iss.URL()+"/"))), code: oidc.CodeWrongIssuer},
		{name: "iss differs in case", raw: f.rs256(t, f.payload(t, set("iss", strings.ToUpper(f.iss.URL())))), code: oidc.CodeWrongIssuer},
		{name: "iss GitHub's", raw: f.rs256(t, f.payload(t, set("iss", "https://token.actions.githubusercontent.com"))), code: oidc.CodeWrongIssuer},
		{name: "iss look-alike digit", raw: f.rs256(t, f.payload(t, set("iss", strings.Replace(f.iss.URL(), "1", "\u0661", 1)))), code: oidc.CodeWrongIssuer},
		{name: "missing iss", raw: f.rs256(t, f.payload(t, del("iss"))), code: oidc.CodeMissingClaim},
		{name: "iss not a string", raw: f.rs256(t, f.payload(t, set("iss", []string{f.iss.URL()}))), code: oidc.CodeMalformed},

		// Audience.
		{name: "wrong aud", raw: f.rs256(t, f.payload(t, set("aud", "sts.amazonaws.com"))), code: oidc.CodeWrongAudience,
			msg: `aud ["sts.amazonaws.com"] does not contain "Buddy"`},
		{name: "aud array without ours", raw: f.rs256(t, f.payload(t, set("aud", []string{"a", "buddy", "Buddy "}))), code: oidc.CodeWrongAudience},
		{name: "aud missing", raw: f.rs256(t, f.payload(t, del("aud"))), code: oidc.CodeMissingClaim},
		{name: "aud number", raw: f.rs256(t, f.payload(t, set("aud", 1))), code: oidc.CodeMalformed},
		{name: "aud array with a number", raw: f.rs256(t, f.payload(t, set("aud", []any{"Buddy", 1}))), code: oidc.CodeMalformed},
		{name: "sub not a string", raw: f.rs256(t, f.payload(t, set("sub", 1))), code: oidc.CodeMalformed},

		// Size and shape.
		{name: "over 16 KiB", raw: f.rs256(t, f.payload(t, set("pad", strings.Repeat("x", 13<<10)))), code: oidc.CodeTooLarge},
		{name: "17 KiB of garbage", raw: strings.Repeat("A", 17<<10), code: oidc.CodeTooLarge},
		{name: "claims nested 1000 deep", raw: f.rs256(t, insertMembers(f.payload(t), `"deep":`+nested(1000))), code: oidc.CodeMalformed},
		{name: "objects nested 1000 deep", raw: f.rs256(t, insertMembers(f.payload(t), `"deep":`+strings.Repeat(`{"a":`, 1000)+"1"+strings.Repeat("}", 1000))), code: oidc.CodeMalformed},
		{name: "claims nested 32 deep", raw: f.rs256(t, insertMembers(f.payload(t), `"deep":`+nested(32))), code: oidc.CodeMalformed},
		{name: "header nested 1000 deep", raw: handSign(t, "RS256", f.rsaKey, []byte(`{"alg":"RS256","kid":"`+f.kidR+`","x":`+nested(1000)+`}`), f.payload(t)), code: oidc.CodeMalformed},
		{name: "duplicate iss", raw: f.rs256(t, insertMembers(f.payload(t), `"iss":"https://evil.example"`)), code: oidc.CodeMalformed},
		{name: "duplicate exp", raw: f.rs256(t, insertMembers(f.payload(t), fmt.Sprintf(`"exp":%d`, now+99999))), code: oidc.CodeMalformed},
		{name: "duplicate via escape", raw: f.rs256(t, insertMembers(f.payload(t), `"\u0069ss":"https://evil.example"`)), code: oidc.CodeMalformed},
		{name: "duplicate nested", raw: f.rs256(t, insertMembers(f.payload(t), `"nested":{"a":1,"b":{"c":[{"d":1,"d":2}]}}`)), code: oidc.CodeMalformed},
		{name: "duplicate header alg", raw: handSign(t, "RS256", f.rsaKey, []byte(`{"alg":"none","alg":"RS256","kid":"`+f.kidR+`"}`), f.payload(t)), code: oidc.CodeMalformed},
		{name: "duplicate header kid", raw: handSign(t, "RS256", f.rsaKey, []byte(`{"alg":"RS256","kid":"x","kid":"`+f.kidR+`"}`), f.payload(t)), code: oidc.CodeMalformed},
		{name: "payload array", raw: f.rs256(t, []byte(`[1,2,3]`)), code: oidc.CodeMalformed},
		{name: "payload string", raw: f.rs256(t, []byte(`"claims"`)), code: oidc.CodeMalformed},
		{name: "payload null", raw: f.rs256(t, []byte(`null`)), code: oidc.CodeMalformed},
		{name: "payload number", raw: f.rs256(t, []byte(`42`)), code: oidc.CodeMalformed},
		{name: "payload empty", raw: f.rs256(t, []byte(``)), code: oidc.CodeMalformed},
		{name: "payload trailing data", raw: f.rs256(t, append(f.payload(t), []byte(` {}`)...)), code: oidc.CodeMalformed},
		{name: "payload invalid UTF-8", raw: f.rs256(t, insertMembers(f.payload(t), "\"x\":\"\xff\xfe\"")), code: oidc.CodeMalformed},
		{name: "payload lone surrogate", raw: f.rs256(t, insertMembers(f.payload(t), `"x":"\ud800"`)), code: oidc.CodeMalformed},
		{name: "payload not JSON", raw: f.rs256(t, []byte(`{iss: 1}`)), code: oidc.CodeMalformed},
		{name: "header not JSON", raw: b64([]byte(`{alg:RS256}`)) + "." + parts[1] + "." + parts[2], code: oidc.CodeMalformed},
		{name: "header array", raw: b64([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2], code: oidc.CodeMalformed},
		{name: "empty", raw: "", code: oidc.CodeMalformed},
		{name: "two parts", raw: parts[0] + "." + parts[1], code: oidc.CodeMalformed},
		{name: "four parts", raw: valid + ".x", code: oidc.CodeMalformed},
		{name: "padding", raw: valid + "==", code: oidc.CodeMalformed},
		{name: "leading space", raw: " " + valid, code: oidc.CodeMalformed},
		{name: "newline inside", raw: parts[0] + ".\n" + parts[1] + "." + parts[2], code: oidc.CodeMalformed},
		{name: "standard base64", raw: strings.NewReplacer("-", "+", "_", "/").Replace(valid) + "+", code: oidc.CodeMalformed},
		{name: "JWS JSON serialization", raw: `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, code: oidc.CodeMalformed},
		{name: "bearer prefix", raw: "Bearer " + valid, code: oidc.CodeMalformed},
	}
	return valid, cases
}

func TestAdversarial(t *testing.T) {
	f := newRig(t)
	ctx := context.Background()
	e := expect(f.iss)
	valid, cases := adversarialCases(t, f)
	mustVerify(t, f.v, valid, e)
	sig := valid[strings.LastIndexByte(valid, '.')+1:]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ex := c.exp
			if ex.Issuer == "" {
				ex = e
			}
			_, err := f.v.Verify(ctx, c.raw, ex)
			got := wantCode(t, err, c.code)
			if c.msg != "" && got.Message != c.msg {
				t.Errorf("message\n got %s\nwant %s", got.Message, c.msg)
			}
			if strings.Contains(got.Message, sig) {
				t.Errorf("message echoes the signature: %s", got.Message)
			}
		})
	}
	if n := f.evil.Requests(); n != 0 {
		t.Fatalf("the other server received %d requests", n)
	}
	// Only the "unknown kid" case may have refetched (once).
	wantFetches(t, f.iss, 2, 2)
}

func utc(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

func TestWithinLeewayAccepted(t *testing.T) {
	f := newRig(t)
	now := f.now.Unix()
	e := expect(f.iss)
	for name, p := range map[string][]byte{
		"exp 30s ago":            f.payload(t, set("exp", now-30)),
		"nbf in 30s":             f.payload(t, set("nbf", now+30)),
		"iat in 30s":             f.payload(t, set("iat", now+30), set("nbf", now+30)),
		"max age plus leeway":    f.payload(t, set("iat", now-3600-30)),
		"fractional exp":         f.payload(t, set("exp", json.Number(fmt.Sprintf("%d.75", now+10)))),
		"aud array with ours":    f.payload(t, set("aud", []string{"sts.amazonaws.com", testAud, "other"})),
		"no nbf":                 f.payload(t, del("nbf")),
		"no jti, no sub":         f.payload(t, del("jti"), del("sub")),
		"claims nested 31 deep":  insertMembers(f.payload(t), `"deep":`+nested(31)),
		"escaped unique names":   insertMembers(f.payload(t), `"\u0078":1,"y\u00e9":"caf\u00e9 \ud83d\ude00"`),
		"unicode claim values":   f.payload(t, set("actor", "Zoë 🚀")),
		"big number kept exact":  insertMembers(f.payload(t), `"big":123456789012345678901234567890`),
		"near the size limit":    f.payload(t, set("pad", strings.Repeat("x", 10<<10))),
		"whitespace in the JSON": []byte(strings.ReplaceAll(string(f.payload(t)), ",", " ,\n\t")),
	} {
		t.Run(name, func(t *testing.T) {
			ex := e
			if strings.HasPrefix(name, "max age") {
				ex.MaxAge = time.Hour
			}
			tok := mustVerify(t, f.v, f.rs256(t, p), ex)
			switch name {
			case "aud array with ours":
				if len(tok.Audience) != 3 {
					t.Errorf("aud %q", tok.Audience)
				}
			case "big number kept exact":
				if tok.Claims["big"] != json.Number("123456789012345678901234567890") {
					t.Errorf("big %#v", tok.Claims["big"])
				}
			case "fractional exp":
				if tok.ExpiresAt.UnixMilli() != (now+10)*1000+750 {
					t.Errorf("exp %v", tok.ExpiresAt)
				}
			case "escaped unique names":
				if tok.Claims["x"] != json.Number("1") || tok.Claims["yé"] != "café 😀" {
					t.Errorf("claims %v", tok.Claims)
				}
			}
		})
	}
	// No aud expectation: aud is not checked.
	mustVerify(t, f.v, f.rs256(t, f.payload(t, del("aud"))), oidc.Expect{Issuer: f.iss.URL()})
	mustVerify(t, f.v, f.rs256(t, f.payload(t, set("aud", "anything"))), oidc.Expect{Issuer: f.iss.URL()})
}

func TestLookAlikeIssuer(t *testing.T) {
	// An issuer whose identifier contains GitHub's host name, and a token
	// whose iss spells it with a Cyrillic "о" (U+043E).
	iss := oidctest.Start(t, oidctest.WithPath("/token.actions.githubusercontent.com"))
	v := newVerifier(t, oidc.Options{})
	fake := strings.Replace(iss.URL(), "githubusercontent", "githubuserc\u043entent", 1)
	if fake == iss.URL() {
		t.Fatal("no substitution")
	}
	_, err := v.Verify(context.Background(), oidctest.MustSign(t, iss, oidctest.GitHubClaims(fake, testAud, "o/r", "refs/heads/main", time.Now())), expect(iss))
	e := wantCode(t, err, oidc.CodeWrongIssuer)
	if !strings.Contains(e.Message, `githubuserc\u043entent`) {
		t.Errorf("message does not show the look-alike letter: %s", e.Message)
	}
	mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), expect(iss))
}

func TestMissingKIDWithSingleKey(t *testing.T) {
	iss := oidctest.Start(t, oidctest.WithECDSA())
	v := newVerifier(t, oidc.Options{})
	tok := mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, time.Now()), oidctest.WithoutKID()), expect(iss))
	if tok.KeyID != iss.KID() {
		t.Errorf("kid %q", tok.KeyID)
	}
	// The single key must still fit the alg.
	k := iss.Key(iss.KID()).(*ecdsa.PrivateKey)
	raw := handSign(t, "ES256", k, map[string]any{"alg": "ES384"}, mustJSON(t, ghClaims(iss, time.Now())))
	_, err := v.Verify(context.Background(), raw, expect(iss))
	wantCode(t, err, oidc.CodeUnsupportedAlgorithm)
}

func TestAlgorithmAllowList(t *testing.T) {
	for _, bad := range [][]string{{"none"}, {"HS256"}, {"RS256", "hs512"}, {"EdDSA"}, {"RS257"}} {
		if _, err := oidc.NewVerifier(oidc.Options{Algorithms: bad}); err == nil {
			t.Errorf("NewVerifier accepted %q", bad)
		}
	}
	iss := oidctest.Start(t, oidctest.WithInitialAlg("RS512"))
	v := newVerifier(t, oidc.Options{Algorithms: []string{"RS256"}})
	_, err := v.Verify(context.Background(), oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), expect(iss))
	e := wantCode(t, err, oidc.CodeUnsupportedAlgorithm)
	if e.Message != `alg "RS512" is not allowed (allowed: RS256)` {
		t.Errorf("message %q", e.Message)
	}
	wantFetches(t, iss, 0, 0) // rejected before any key is needed
}

func TestSmallRSAKeysAreSkipped(t *testing.T) {
	iss := oidctest.Start(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.AddKey("small", "RS256", small); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, oidc.Options{})
	raw := handSign(t, "RS256", small, map[string]any{"alg": "RS256", "kid": "small"}, mustJSON(t, ghClaims(iss, time.Now())))
	_, err = v.Verify(context.Background(), raw, expect(iss))
	wantCode(t, err, oidc.CodeUnknownKID)
	mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, time.Now())), expect(iss))
}

func TestPeek(t *testing.T) {
	f := newRig(t)
	raw := f.rs256(t, f.payload(t))
	h, c, err := oidc.Peek(raw + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if h["kid"] != f.kidR || c["iss"] != f.iss.URL() {
		t.Errorf("header %v claims %v", h, c)
	}
	if _, ok := c["exp"].(json.Number); !ok {
		t.Errorf("exp %#v", c["exp"])
	}
	// Peek does not verify: an unsigned token decodes too.
	if _, _, err := oidc.Peek(handSign(t, "none", nil, map[string]any{"alg": "none"}, f.payload(t))); err != nil {
		t.Errorf("Peek(alg none): %v", err)
	}
	_, _, err = oidc.Peek(f.rs256(t, insertMembers(f.payload(t), `"iss":"x"`)))
	wantCode(t, err, oidc.CodeMalformed)
	_, _, err = oidc.Peek(f.rs256(t, insertMembers(f.payload(t), `"d":`+nested(1000))))
	wantCode(t, err, oidc.CodeMalformed)
	_, _, err = oidc.Peek("nope")
	wantCode(t, err, oidc.CodeMalformed)
}

func TestGitHubShapedHeaderAccepted(t *testing.T) {
	// GitHub's header: {"alg":"RS256","kid":"...","typ":"JWT","x5t":"..."}.
	iss := oidctest.Start(t)
	v := newVerifier(t, oidc.Options{})
	raw := oidctest.MustSign(t, iss, ghClaims(iss, time.Now()), oidctest.WithHeader("x5t", "cc413527-173f-5a05-976e-9c52b1d7b431"))
	mustVerify(t, v, raw, expect(iss))
}
