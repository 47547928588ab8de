package oidc_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
)

var knownCodes = map[string]bool{
	oidc.CodeMalformed: true, oidc.CodeTooLarge: true, oidc.CodeUnsupportedAlgorithm: true,
	oidc.CodeMissingKID: true, oidc.CodeUnknownKID: true, oidc.CodeBadSignature: true,
	oidc.CodeExpired: true, oidc.CodeNotYetValid: true, oidc.CodeIssuedInFuture: true,
	oidc.CodeTooOld: true, oidc.CodeMissingClaim: true, oidc.CodeWrongIssuer: true,
	oidc.CodeWrongAudience: true, oidc.CodeIssuerUnavailable: true, oidc.CodeForbiddenHeader: true,
	oidc.CodeUnsupportedHeader: true, oidc.CodeLifetimeTooLong: true,
}

// FuzzVerify feeds arbitrary strings to a warmed verifier. It must never
// panic, every error must be an *oidc.Error with a known code, and a token
// may be returned only when an independent check (standard library crypto
// against the issuer's own public key) confirms the signature.
func FuzzVerify(f *testing.F) {
	fx := newRig(f)
	valid, cases := adversarialCases(f, fx)
	f.Add(valid)
	f.Add(handSign(f, "ES256", fx.ecKey, map[string]any{"alg": "ES256", "kid": fx.kidE}, fx.payload(f)))
	f.Add(handSign(f, "RS256", fx.rsaKey, map[string]any{"alg": "RS256", "kid": fx.kidR}, []byte(`{"iss":"`+fx.iss.URL()+`","exp":9999999999,"iat":1,"aud":["Buddy"]}`)))
	for _, c := range cases {
		if len(c.raw) < 20000 {
			f.Add(c.raw)
		}
	}
	e := expect(fx.iss)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := fx.v.Verify(ctx, raw, e)
		if err != nil {
			if tok != nil {
				t.Fatal("token and error")
			}
			var oe *oidc.Error
			if !errors.As(err, &oe) || !knownCodes[oe.Code] || oe.Message == "" {
				t.Fatalf("error %#v", err)
			}
			return
		}
		if tok == nil {
			t.Fatal("no token and no error")
		}
		if tok.Issuer != fx.iss.URL() || tok.ExpiresAt.IsZero() || tok.IssuedAt.IsZero() {
			t.Fatalf("accepted token with iss %q exp %v iat %v", tok.Issuer, tok.ExpiresAt, tok.IssuedAt)
		}
		if !independentlyValid(fx, raw) {
			t.Fatalf("accepted a token that is not validly signed: %q", raw)
		}
	})
}

// independentlyValid checks raw's signature with the standard library only.
func independentlyValid(fx *rig, raw string) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	h, _, err := oidc.Peek(raw)
	if err != nil {
		return false
	}
	alg, _ := h["alg"].(string)
	kid, _ := h["kid"].(string)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	signer := fx.iss.Key(kid)
	if signer == nil {
		return false
	}
	input := parts[0] + "." + parts[1]
	switch alg {
	case "RS256":
		pub, ok := signer.Public().(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest(crypto.SHA256, input), sig) == nil
	case "ES256":
		pub, ok := signer.Public().(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, digest(crypto.SHA256, input), r, s)
	}
	return false
}
