package exchange

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
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
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			cases := []struct {
				name, id string
				curve    elliptic.Curve
				sign     func(r *rig) string
			}{
				{"ES256", idCircle, elliptic.P256(), func(r *rig) string { return r.circleToken(circleProj) }},
				{"ES384", idOther, elliptic.P384(), func(r *rig) string {
					now := r.now().Unix()
					return oidctest.MustSign(t, r.w.other, map[string]any{
						"iss": r.w.other.URL(), "aud": "sidecar-test", "sub": "deployer", "iat": now - 1, "exp": now + 300,
					})
				}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					r := newRig(t, store)
					jwt := c.sign(r)
					flipped := flipS(t, jwt, c.curve)
					// The flipped form alone is a valid token.
					fresh := newRig(t, store)
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
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store)
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

// TestUnverifiedFloodDoesNotLockOutProvider: the per-provider limit counts
// only tokens whose signature verified, so garbage sent for a (public)
// provider id from many addresses cannot starve a valid job (issue 11 #6).
func TestUnverifiedFloodDoesNotLockOutProvider(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store, withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 5, PerProvider: 3, Window: time.Hour} }))
			valid := r.ghToken("octo-org/octo-repo", "refs/heads/main")
			forged := valid[:strings.LastIndexByte(valid, '.')+1] + "AAAA" + valid[strings.LastIndexByte(valid, '.')+5:]
			for i := range 40 {
				addr := fmt.Sprintf("198.51.100.%d:1", i+1)
				jwt := "garbage"
				if i%2 == 1 {
					jwt = forged // well-formed, signature does not verify
				}
				if msg := buddyError(t, r.buddy(idDeploy, jwt, from(addr)), 401); !strings.HasPrefix(msg, "OIDC token rejected:") {
					t.Fatalf("flood request %d: %q", i, msg)
				}
			}
			// The provider still serves valid tokens, up to its limit...
			for i := range 3 {
				r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from(fmt.Sprintf("203.0.113.%d:1", i+1))))
			}
			// ...which counts verified tokens.
			msg := buddyError(t, r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from("203.0.113.9:1")), 429)
			if !strings.HasPrefix(msg, "too many token exchanges for provider "+idDeploy+": at most 3 per 1h; retry in ") {
				t.Errorf("message %q", msg)
			}
			// The per-address limit still comes before verification: the
			// sixth request from one address is refused whatever it sends.
			for range 5 {
				buddyError(t, r.buddy(idDeploy, "garbage", from("192.0.2.77:1")), 401)
			}
			if msg := buddyError(t, r.buddy(idDeploy, "garbage", from("192.0.2.77:1")), 429); !strings.HasPrefix(msg, "too many token exchanges from 192.0.2.77: at most 5 per 1h") {
				t.Errorf("per-IP message %q", msg)
			}
		})
	}
}

// TestIPv6RateLimitPerPrefix: IPv6 clients share one per-address bucket per
// /64 by default (a host holds a whole /64 and can rotate through it), and
// the prefix is configurable (issue 11 #6).
func TestIPv6RateLimitPerPrefix(t *testing.T) {
	t.Run("default /64", func(t *testing.T) {
		r := newRig(t, "redis", withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 2, Window: time.Hour} }))
		buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:2::1]:1")), 401)
		buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:2:ffff:ffff:ffff:fffe]:1")), 401)
		msg := buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:2:aaaa::7]:1")), 429)
		if !strings.HasPrefix(msg, "too many token exchanges from 2001:db8:1:2::/64: at most 2 per 1h; retry in ") {
			t.Errorf("message %q", msg)
		}
		// The next /64 has its own bucket.
		buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:3::1]:1")), 401)
	})
	t.Run("ipv6_prefix 128", func(t *testing.T) {
		r := newRig(t, "memory", withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 1, Window: time.Hour, IPv6Prefix: 128} }))
		buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:2::1]:1")), 401)
		buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:2::2]:1")), 401)
		if msg := buddyError(t, r.buddy(idDeploy, "garbage", from("[2001:db8:1:2::2]:1")), 429); !strings.Contains(msg, "from 2001:db8:1:2::2:") {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("bad prefix", func(t *testing.T) {
		_, err := New(Options{Engine: &policy.Engine{}, Verifier: &oidc.Verifier{}, Store: token.NewMemory(time.Now), RateLimits: RateLimits{PerIP: 1, IPv6Prefix: 129}})
		if err == nil || !strings.Contains(err.Error(), "IPv6 rate-limit prefix /129") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestBuddyBodyStrictness: duplicate provider_id / web_identity_token
// members are refused (encoding/json would keep the last one, matched
// case-insensitively), and a UTF-8 BOM gets a message naming it (issue 11 #9).
func TestBuddyBodyStrictness(t *testing.T) {
	r := newRig(t, "memory")
	const ex = `{"provider_id": "<provider uuid>", "web_identity_token": "<OIDC token>"}`
	jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	cases := []struct{ name, body, msg string }{
		{"duplicate provider_id", `{"provider_id": "` + idGeneric + `", "web_identity_token": "` + jwt + `", "provider_id": "` + idDeploy + `"}`,
			"the request body has provider_id more than once; send each member once: " + ex},
		{"duplicate web_identity_token", `{"provider_id": "` + idDeploy + `", "web_identity_token": "x", "web_identity_token": "` + jwt + `"}`,
			"the request body has web_identity_token more than once; send each member once: " + ex},
		{"duplicate in another case", `{"provider_id": "` + idGeneric + `", "Provider_ID": "` + idDeploy + `", "web_identity_token": "` + jwt + `"}`,
			"the request body has provider_id more than once; send each member once: " + ex},
		{"BOM", "\xef\xbb\xbf" + `{"provider_id": "` + idDeploy + `", "web_identity_token": "` + jwt + `"}`,
			"the request body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow; send the JSON without it (PowerShell's Set-Content/Out-File -Encoding utf8 write one): " + ex},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if msg := buddyError(t, r.do(r.main, "POST", BuddyPath, "application/json", c.body), 400); msg != c.msg {
				t.Errorf("message\n got %s\nwant %s", msg, c.msg)
			}
		})
	}
	// Other repeated members are not the exchange's business.
	r.issued(r.do(r.main, "POST", BuddyPath, "application/json",
		`{"x": 1, "provider_id": "`+idDeploy+`", "x": 2, "web_identity_token": "`+jwt+`"}`))
}

// TestVerifyMessagesSayWhatIsWrong: crit/b64 headers are refused with a
// message about crit/b64 (not about keys); errors in a correctly sent
// token's header or claims, and size errors, do not end with the hint
// about sending the raw JWT without quotes, which only fits values that are
// not shaped like a JWS (issue 11 #14).
func TestVerifyMessagesSayWhatIsWrong(t *testing.T) {
	r := newRig(t, "memory")
	const rawHint = "without quotes or a \"Bearer \" prefix"
	kid := r.w.gh.KID()
	claims := oidctest.GitHubClaims(provider.GitHubIssuer, provider.DefaultGitHubAudience, "octo-org/octo-repo", "refs/heads/main", r.now())
	payload, _ := json.Marshal(claims)
	hand := func(header map[string]any, payload []byte) string {
		t.Helper()
		hb, _ := json.Marshal(header)
		tok, err := oidctest.HandSign("RS256", r.w.gh.Key(kid), hb, payload)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	signRaw := func(p string) string {
		t.Helper()
		tok, err := r.w.gh.SignRaw([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	withClaim := func(k string, v any) string {
		c := maps.Clone(claims)
		c[k] = v
		b, _ := json.Marshal(c)
		return string(b)
	}
	cases := []struct {
		name, jwt string
		want      []string
		hint      bool
	}{
		{"crit", hand(map[string]any{"alg": "RS256", "kid": kid, "crit": []string{"exp"}, "exp": 1}, payload),
			[]string{`token header "crit" is not supported`, "JWS extensions"}, false},
		{"b64", hand(map[string]any{"alg": "RS256", "kid": kid, "b64": false}, payload),
			[]string{`token header "b64" is not supported`, "base64url"}, false},
		{"claim type", signRaw(withClaim("sub", 5)), []string{"claim sub is a number, not a string"}, false},
		{"duplicate claim", signRaw(strings.TrimSuffix(string(payload), "}") + `,"sub":"other"}`), []string{"duplicate", "sub"}, false},
		{"depth", signRaw(withClaim("deep", nest(40))), []string{"deep"}, false},
		{"size", "eyJ" + strings.Repeat("a", 17<<10) + ".e.e", []string{"bytes, more than the 16384-byte limit; CI OIDC tokens are a few KiB at most: send only the token"}, false},
		{"not a JWS", `"` + signRaw(string(payload)) + `"`, []string{"not base64url"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := buddyError(t, r.buddy(idDeploy, c.jwt), 401)
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, rawHint) != c.hint {
				t.Errorf("message %q: raw-JWT hint present = %v, want %v", msg, !c.hint, c.hint)
			}
			if strings.Contains(msg, "key") {
				t.Errorf("message %q talks about keys", msg)
			}
		})
	}
}

// nest returns an array nested n deep.
func nest(n int) any {
	var v any = 1
	for range n {
		v = []any{v}
	}
	return v
}

// TestUnknownScopeNamed: a requested scope that is not a Buddy scope name
// (e.g. lower case) is reported as unknown, not as "not granted" (issue 11
// #14).
func TestUnknownScopeNamed(t *testing.T) {
	r := newRig(t, "memory")
	for _, c := range []struct{ scope, want string }{
		{"execution_run", `unknown scope "execution_run": Buddy's scope names are upper case; request EXECUTION_RUN`},
		{"WORKSPACE Nope", `unknown scope "Nope": not a Buddy scope name (they are upper case, e.g. EXECUTION_RUN; see the scope table in the sidecar's docs/providers.md)`},
	} {
		v := exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
		v.Set("scope", c.scope)
		if d := oauthError(t, r.tokenForm(v), 400, "invalid_scope"); d != c.want {
			t.Errorf("scope %q: description\n got %s\nwant %s", c.scope, d, c.want)
		}
	}
}

// overloadedClaims fails ClaimOnce as the Redis store does when no pooled
// connection is free in time.
type overloadedClaims struct{ token.Store }

func (overloadedClaims) ClaimOnce(context.Context, string, string, time.Duration) (bool, error) {
	return false, fmt.Errorf("%w: %w: 300 operations in flight, 20 of 20 connections busy: redis EVALSHA (claim): context deadline exceeded", token.ErrUnavailable, token.ErrOverloaded)
}

// TestOverloadReportedAsOverload: an exchange refused for want of a store
// connection says the sidecar is overloaded, with Retry-After, and does not
// blame the token store (issue 11 #12).
func TestOverloadReportedAsOverload(t *testing.T) {
	r := newRig(t, "memory", withStoreWrapper(func(s token.Store) token.Store { return overloadedClaims{s} }))
	rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
	msg := buddyError(t, rec, 503)
	if !strings.HasPrefix(msg, "the sidecar is overloaded (too many requests at once for its token store connections), so no token was issued; retry in 1s (decision ") {
		t.Errorf("message %q", msg)
	}
	if rec.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	rec = r.tokenForm(exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
	if d := oauthError(t, rec, 503, "temporarily_unavailable"); !strings.HasPrefix(d, "the sidecar is overloaded") || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("RFC 8693: %q, Retry-After %q", d, rec.Header().Get("Retry-After"))
	}
	if strings.Contains(r.logs.String(), "token store failed") {
		t.Errorf("the log blames the store:\n%s", r.logs.String())
	}
}

// TestDeniedTokensDoNotLockOutProvider: any repository on GitHub can mint a
// token that verifies against GitHub's keys for any audience; only the
// trust conditions tell them apart. The per-provider limit counts exchanges
// the policy allowed, so a flood of verified but denied tokens cannot
// starve the provider's own jobs.
func TestDeniedTokensDoNotLockOutProvider(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store, withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 1000, PerProvider: 3, Window: time.Hour} }))
			for i := range 20 {
				rec := r.buddy(idDeploy, r.ghToken("evil-org/evil-repo", "refs/heads/main"), from(fmt.Sprintf("198.51.100.%d:1", i+1)))
				if msg := buddyError(t, rec, 401); !strings.Contains(msg, "this trust condition failed: repository_owner is") {
					t.Fatalf("denied token %d: %q", i, msg)
				}
			}
			for i := range 3 {
				r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from(fmt.Sprintf("203.0.113.%d:1", i+1))))
			}
			msg := buddyError(t, r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from("203.0.113.9:1")), 429)
			if !strings.HasPrefix(msg, "too many token exchanges for provider "+idDeploy+": at most 3 per 1h; retry in ") {
				t.Errorf("message %q", msg)
			}
		})
	}
}

// TestExchangeRedisRoundTrips: an issued exchange is one Redis round trip
// (the issue script: per-provider limit, replay claim, record), plus one
// for the per-address limit, which must come before the signature check
// (issue 17).
func TestExchangeRedisRoundTrips(t *testing.T) {
	for _, c := range []struct {
		name   string
		limits RateLimits
		want   int32
	}{
		{"limits off", RateLimits{}, 1},
		{"per provider", RateLimits{PerProvider: 100, Window: time.Minute}, 1},
		{"per address and per provider", RateLimits{PerIP: 100, PerProvider: 100, Window: time.Minute}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, "redis", withOptions(func(o *Options) { o.RateLimits = c.limits }))
			r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))) // loads the scripts
			hook := &redistest.Counter{}
			r.store.(*token.RedisStore).Client().AddHook(hook)
			r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
			if got := hook.RoundTrips(); got != c.want {
				t.Errorf("an issued exchange made %d Redis round trips, want %d", got, c.want)
			}
		})
	}
}
