package oidc_test

import (
	"context"
	"crypto"
	_ "crypto/sha256" // registers SHA-256 for crypto.Hash
	_ "crypto/sha512" // registers SHA-384/512 for crypto.Hash
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

const testAud = "Buddy"

func newVerifier(t testing.TB, o oidc.Options) *oidc.Verifier {
	t.Helper()
	v, err := oidc.NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ghClaims(iss *oidctest.Issuer, now time.Time) map[string]any {
	return oidctest.GitHubClaims(iss.URL(), testAud, "octo-org/octo-repo", "refs/heads/main", now)
}

func expect(iss *oidctest.Issuer) oidc.Expect {
	return oidc.Expect{Issuer: iss.URL(), Audience: testAud}
}

// wantCode asserts that err is an *oidc.Error with code.
func wantCode(t testing.TB, err error, code string) *oidc.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %q", code)
	}
	var e *oidc.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *oidc.Error", err, err)
	}
	if e.Code != code {
		t.Fatalf("got code %q (%s), want %q", e.Code, e.Message, code)
	}
	return e
}

func mustVerify(t testing.TB, v *oidc.Verifier, raw string, e oidc.Expect) *oidc.Token {
	t.Helper()
	tok, err := v.Verify(context.Background(), raw, e)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return tok
}

func wantFetches(t testing.TB, iss *oidctest.Issuer, discovery, jwks int) {
	t.Helper()
	d, j := iss.Fetches()
	if d != discovery || j != jwks {
		t.Fatalf("fetches: discovery=%d jwks=%d, want %d/%d", d, j, discovery, jwks)
	}
}

// handSign builds a compact JWS by hand (oidctest.HandSign). header is
// marshalled unless it is already []byte.
func handSign(t testing.TB, alg string, key any, header any, payload []byte) string {
	t.Helper()
	hb, ok := header.([]byte)
	if !ok {
		var err error
		if hb, err = json.Marshal(header); err != nil {
			t.Fatal(err)
		}
	}
	return oidctest.MustHandSign(t, alg, key, hb, payload)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digest(h crypto.Hash, s string) []byte {
	w := h.New()
	w.Write([]byte(s))
	return w.Sum(nil)
}
