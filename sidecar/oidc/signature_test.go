package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// TestVerifySignatureMatchesJWX: verifySignature's direct crypto/rsa call
// for RS256 accepts and refuses exactly what jwsbb.Verify does, and returns
// the SHA-256 of the signed bytes whatever the algorithm.
func TestVerifySignatureMatchesJWX(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signed := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9jdG8tb3JnL29jdG8tcmVwbyJ9")
	rsSig, err := jwsbb.Sign(rk, "RS256", signed, nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(signed)
	psSig, err := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		t.Fatal(err)
	}
	esSig, err := jwsbb.Sign(ek, "ES256", signed, nil)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 0x01; return c }
	cases := []struct {
		name   string
		key    any
		alg    string
		signed []byte
		sig    []byte
	}{
		{"RS256 valid", &rk.PublicKey, "RS256", signed, rsSig},
		{"RS256 first byte flipped", &rk.PublicKey, "RS256", signed, flip(rsSig, 0)},
		{"RS256 last byte flipped", &rk.PublicKey, "RS256", signed, flip(rsSig, len(rsSig)-1)},
		{"RS256 other payload", &rk.PublicKey, "RS256", flip(signed, 3), rsSig},
		{"RS256 other key", &other.PublicKey, "RS256", signed, rsSig},
		{"RS256 truncated", &rk.PublicKey, "RS256", signed, rsSig[:len(rsSig)-1]},
		{"RS256 padded", &rk.PublicKey, "RS256", signed, append([]byte{0}, rsSig...)},
		{"RS256 empty", &rk.PublicKey, "RS256", signed, nil},
		{"RS256 with a PS256 signature", &rk.PublicKey, "RS256", signed, psSig},
		{"PS256 valid", &rk.PublicKey, "PS256", signed, psSig},
		{"ES256 valid", &ek.PublicKey, "ES256", signed, esSig},
		{"ES256 flipped", &ek.PublicKey, "ES256", signed, flip(esSig, 5)},
		{"RS256 with an EC key", &ek.PublicKey, "RS256", signed, rsSig},
	}
	for _, c := range cases {
		sum, got := verifySignature(c.key, c.alg, c.signed, c.sig)
		want := jwsbb.Verify(c.key, c.alg, c.signed, c.sig)
		if (got == nil) != (want == nil) {
			t.Errorf("%s: verifySignature says %v, jwsbb.Verify %v", c.name, got, want)
		}
		if sum != sha256.Sum256(c.signed) {
			t.Errorf("%s: the returned hash is not the SHA-256 of the signed bytes", c.name)
		}
	}
	if _, err := verifySignature(&rk.PublicKey, "RS256", signed, rsSig); err != nil {
		t.Fatalf("a valid RS256 signature was refused: %v", err)
	}
}
