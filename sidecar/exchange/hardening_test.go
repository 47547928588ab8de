package exchange

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// flipS returns jwt with its ECDSA signature (r, s) replaced by (r, n-s),
// which verifies just as well: the same signed content, other bytes.
func flipS(t *testing.T, jwt string, curve elliptic.Curve) string {
	t.Helper()
	dot := strings.LastIndexByte(jwt, '.')
	sig, err := base64.RawURLEncoding.DecodeString(jwt[dot+1:])
	if err != nil {
		t.Fatal(err)
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		t.Fatalf("signature is %d bytes, want %d", len(sig), 2*size)
	}
	s := new(big.Int).SetBytes(sig[size:])
	s.Sub(curve.Params().N, s)
	out := append([]byte(nil), sig[:size]...)
	out = append(out, s.FillBytes(make([]byte, size))...)
	flipped := jwt[:dot+1] + base64.RawURLEncoding.EncodeToString(out)
	if flipped == jwt {
		t.Fatal("flipping s did not change the token")
	}
	return flipped
}

// TestECDSAMalleabilityReplay: a token without jti, exchanged once, cannot
// be exchanged again with its signature's s replaced by n-s (issue 11 #2).
// The flipped token does verify (the first case below proves it on a
// fresh rig); the replay guard keys on what the signature covers.
func TestECDSAMalleabilityReplay(t *testing.T) {
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			cases := []struct {
				name, id string
				curve    elliptic.Curve
				sign     func(r *rig) string
			}{
				{"ES256", idCircle, elliptic.P256(), func(r *rig) string { return r.circleToken(circleProj) }},
				{"ES384", idOther, elliptic.P384(), func(r *rig) string {
					now := r.now().Unix()
					tok, err := r.w.other.Sign(map[string]any{
						"iss": r.w.other.URL(), "aud": "sidecar-test", "sub": "deployer", "iat": now - 1, "exp": now + 300,
					})
					if err != nil {
						t.Fatal(err)
					}
					return tok
				}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					r := newRig(t, kind)
					jwt := c.sign(r)
					flipped := flipS(t, jwt, c.curve)
					// The flipped form alone is a valid token.
					fresh := newRig(t, kind)
					fresh.issued(fresh.buddy(c.id, flipped))

					r.issued(r.buddy(c.id, jwt))
					if msg := buddyError(t, r.buddy(c.id, flipped), 401); msg != replayMessage {
						t.Errorf("second exchange with s flipped: message %q, want the replay message", msg)
					}
					if d := oauthError(t, r.tokenForm(exchangeForm(c.id, flipped)), 400, "invalid_request"); d != replayMessage {
						t.Errorf("RFC 8693 with s flipped: description %q", d)
					}
					if r.redis != nil {
						once, _ := r.redis.Client().Keys(context.Background(), token.DefaultKeyPrefix+"once:*").Result()
						if len(once) != 1 || !strings.HasPrefix(once[0], token.DefaultKeyPrefix+"once:jws:") {
							t.Errorf("replay keys %v, want one once:jws:<hash>", once)
						}
					}
				})
			}
		})
	}
}
