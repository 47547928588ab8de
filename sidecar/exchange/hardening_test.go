package exchange

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

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

// TestMaxTokenLifetime: a token whose exp is more than the provider's
// max_token_lifetime (default 24h) after its iat is refused with a message
// that says so, and the replay key's TTL stays within it (issue 11 #8).
func TestMaxTokenLifetime(t *testing.T) {
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t, kind)
			iat := r.now().Unix() - 5
			withExp := func(exp int64) func(map[string]any) {
				return func(c map[string]any) { c["iat"], c["exp"] = iat, exp }
			}
			// exp in the year 5138.
			far := r.ghToken("octo-org/octo-repo", "refs/heads/main", withExp(99999999999))
			msg := buddyError(t, r.buddy(idDeploy, far), 401)
			for _, want := range []string{"OIDC token rejected: token expires ", " days after it was issued", "exp 5138-",
				"more than the maximum OIDC token lifetime 24h0m0s", `provider "GHA - deploy" accepts OIDC tokens valid for at most 24h`, "max_token_lifetime"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if d := oauthError(t, r.tokenForm(exchangeForm(idDeploy, far)), 400, "invalid_request"); !strings.Contains(d, "maximum OIDC token lifetime") {
				t.Errorf("RFC 8693 description %q", d)
			}
			// Just over the default: refused; exactly the default: issued.
			over := r.ghToken("octo-org/octo-repo", "refs/heads/main", withExp(iat+24*3600+1))
			if msg := buddyError(t, r.buddy(idDeploy, over), 401); !strings.Contains(msg, "more than the maximum OIDC token lifetime 24h0m0s") {
				t.Errorf("exp = iat + 24h + 1s: message %q", msg)
			}
			r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main", withExp(iat+24*3600))))
			// A provider with max_token_lifetime: 48h takes a 30h token and
			// refuses a 49h one.
			long := r.ghToken("octo-org/octo-repo", "refs/heads/main", withExp(iat+30*3600))
			r.issued(r.buddy(idLong, long))
			if msg := buddyError(t, r.buddy(idLong, r.ghToken("octo-org/octo-repo", "refs/heads/main", withExp(iat+49*3600))), 401); !strings.Contains(msg, "lifetime 48h0m0s") {
				t.Errorf("49h token on the 48h provider: message %q", msg)
			}
			if r.redis != nil {
				keys, _ := r.redis.Client().Keys(context.Background(), token.DefaultKeyPrefix+"once:*").Result()
				for _, k := range keys {
					if ttl := r.redis.Client().PTTL(context.Background(), k).Val(); ttl <= 0 || ttl > 30*time.Hour+time.Minute {
						t.Errorf("replay key %s has TTL %s, want at most the token's 30h + leeway", k, ttl)
					}
				}
				if len(keys) != 2 {
					t.Errorf("replay keys %v, want the 24h and the 30h token's", keys)
				}
			}
		})
	}
}
