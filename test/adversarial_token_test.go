package test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

// attacker is a server the token names (jku, x5u) and the key it signs with.
type attacker struct {
	srv  *httptest.Server
	hits atomic.Int64
	key  *rsa.PrivateKey
	kid  string
}

func newAttacker(t *testing.T) *attacker {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{key: k, kid: "attacker-key-1"}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(mustJSON(map[string]any{"keys": []any{a.jwk()}}))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// jwk is the attacker's public key as a JWK.
func (a *attacker) jwk() map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": a.kid, "alg": "RS256", "use": "sig",
		"n": b64url(a.key.N.Bytes()), "e": b64url(big.NewInt(int64(a.key.E)).Bytes()),
	}
}

// cert is a self-signed certificate for the attacker's key (for x5c).
func (a *attacker) cert(t *testing.T) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "token.actions.githubusercontent.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &a.key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// hs256 signs header.payload with HMAC-SHA256 under secret.
func hs256(header map[string]any, payload []byte, secret []byte) string {
	input := b64url(mustJSON(header)) + "." + b64url(payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64url(m.Sum(nil))
}

type tokenCase struct {
	name     string
	provider string
	jwt      func(t *testing.T) string
	status   int      // Buddy endpoint
	want     []string // substrings of errors[0].message
	// oauth is the RFC 8693 endpoint's error for the same token ("" skips
	// the RFC 8693 check); its description must contain want too.
	oauth string
}

// TestAdversarialTokens sends hostile OIDC tokens and requests to one
// sidecar: each is refused with the documented status and message, and no
// token or replay key appears in Redis. A few controls (leeway, aud arrays)
// are accepted. Cases run in order against one sidecar (no t.Parallel: they
// share its Redis and the issuer's fetch counters).
func TestAdversarialTokens(t *testing.T) {
	// A fourth issuer whose discovery document names another issuer (its
	// URL with a trailing slash): nothing it signs may be accepted.
	slash := newIssuer(t, oidctest.WithRSA())
	slash.SetIssuerOverride(slash.URL() + "/")
	const slashID = "6f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b"
	w := newWorld(t, worldOpts{extraProviders: fmt.Sprintf(`  - id: %s
    name: Slash issuer
    type: other
    issuer: %s
    audience: Buddy
    trust_conditions: 'repository_owner is "octo-org"'
    scopes: [WORKSPACE]
`, slashID, slash.URL())})
	s := startSidecar(t, w.config(), nil)
	atk := newAttacker(t)
	ghKID := w.gh.KID()
	ghPub := w.gh.Key(ghKID).Public().(*rsa.PublicKey)
	now := time.Now().Unix()

	valid := func() map[string]any { return w.ghClaims() }
	payload := func(mut func(map[string]any)) []byte {
		c := valid()
		if mut != nil {
			mut(c)
		}
		return mustJSON(c)
	}
	hdr := func(alg string, extra ...any) map[string]any {
		h := map[string]any{"alg": alg, "typ": "JWT", "kid": ghKID}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i].(string)] = extra[i+1]
		}
		return h
	}
	pkix, _ := x509.MarshalPKIXPublicKey(ghPub)
	pkcs1 := x509.MarshalPKCS1PublicKey(ghPub)
	pemPKIX := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	pemPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1})
	jwkJSON := mustJSON(map[string]any{"kty": "RSA", "kid": ghKID, "n": b64url(ghPub.N.Bytes()), "e": b64url(big.NewInt(int64(ghPub.E)).Bytes())})

	deep := func(depth int) []byte {
		c := valid()
		raw := string(mustJSON(c))
		nest := strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat(`}`, depth)
		return []byte(raw[:len(raw)-1] + `,"nested":` + nest + `}`)
	}
	// rawClaims renders the valid claims with extra raw JSON members
	// spliced in before the closing brace.
	rawClaims := func(drop string, members string) []byte {
		c := valid()
		delete(c, drop)
		raw := string(mustJSON(c))
		return []byte(raw[:len(raw)-1] + "," + members + "}")
	}
	rejectedByKey := "the token was not signed by a key of " + w.gh.URL()

	cases := []tokenCase{
		// --- Algorithms.
		{name: "alg none", jwt: func(t *testing.T) string {
			return b64url(mustJSON(hdr("none"))) + "." + b64url(payload(nil)) + "."
		}, status: 401, want: []string{`OIDC token rejected: alg "none" is not allowed`, rejectedByKey}, oauth: "invalid_request"},
		{name: "alg None with a signature", jwt: func(t *testing.T) string {
			return b64url(mustJSON(hdr("None"))) + "." + b64url(payload(nil)) + "." + b64url([]byte("sig"))
		}, status: 401, want: []string{`alg "None" is not allowed`}, oauth: "invalid_request"},
		{name: "no alg", jwt: func(t *testing.T) string {
			return b64url(mustJSON(map[string]any{"typ": "JWT", "kid": ghKID})) + "." + b64url(payload(nil)) + "." + b64url([]byte("sig"))
		}, status: 401, want: []string{`token header has no "alg" string`}, oauth: "invalid_request"},
		{name: "HS256 keyed with the RSA public key (PKIX PEM)", jwt: func(t *testing.T) string {
			return hs256(hdr("HS256"), payload(nil), pemPKIX)
		}, status: 401, want: []string{`alg "HS256" is not allowed`, rejectedByKey}, oauth: "invalid_request"},
		{name: "HS256 keyed with the RSA public key (PKCS1 PEM)", jwt: func(t *testing.T) string {
			return hs256(hdr("HS256"), payload(nil), pemPKCS1)
		}, status: 401, want: []string{`alg "HS256" is not allowed`}, oauth: "invalid_request"},
		{name: "HS256 keyed with the RSA public key (PKIX DER)", jwt: func(t *testing.T) string {
			return hs256(hdr("HS256"), payload(nil), pkix)
		}, status: 401, want: []string{`alg "HS256" is not allowed`}, oauth: "invalid_request"},
		{name: "HS256 keyed with the RSA public key (PKCS1 DER)", jwt: func(t *testing.T) string {
			return hs256(hdr("HS256"), payload(nil), pkcs1)
		}, status: 401, want: []string{`alg "HS256" is not allowed`}, oauth: "invalid_request"},
		{name: "HS256 keyed with the JWK JSON, no kid", jwt: func(t *testing.T) string {
			return hs256(map[string]any{"alg": "HS256", "typ": "JWT"}, payload(nil), jwkJSON)
		}, status: 401, want: []string{`alg "HS256" is not allowed`}, oauth: "invalid_request"},
		{name: "HS384 keyed with the PEM", jwt: func(t *testing.T) string {
			// alg HS384 in the header, HS256 MAC: refused on alg alone.
			return hs256(hdr("HS384"), payload(nil), pemPKIX)
		}, status: 401, want: []string{`alg "HS384" is not allowed`}, oauth: "invalid_request"},
		{name: "RS256 key relabelled PS256", jwt: func(t *testing.T) string {
			return sign(t, w.gh, valid(), oidctest.WithAlg("PS256"))
		}, status: 401, want: []string{"alg PS256 does not fit the issuer's key", rejectedByKey}, oauth: "invalid_request"},
		{name: "empty signature", jwt: func(t *testing.T) string {
			good := sign(t, w.gh, valid())
			return good[:strings.LastIndexByte(good, '.')+1]
		}, status: 401, want: []string{"token has an empty signature"}, oauth: "invalid_request"},

		// --- Keys named by the token.
		{name: "unknown kid", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": atk.kid}, payload(nil), atk.key)
		}, status: 401, want: []string{`signing key "attacker-key-1" is not in the issuer's key set`, rejectedByKey}, oauth: "invalid_request"},
		{name: "kid with path traversal", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "../../../.well-known/jwks?x=1"}, payload(nil), atk.key)
		}, status: 401, want: []string{"is not in the issuer's key set"}},
		{name: "jku to the attacker's JWKS", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": atk.kid, "jku": atk.srv.URL + "/jwks"}, payload(nil), atk.key)
		}, status: 401, want: []string{`token header "jku" is not allowed: keys come only from the issuer's discovery document`}, oauth: "invalid_request"},
		{name: "jku on a token signed by the real key", jwt: func(t *testing.T) string {
			return sign(t, w.gh, valid(), oidctest.WithHeader("jku", atk.srv.URL+"/jwks"))
		}, status: 401, want: []string{`token header "jku" is not allowed`}, oauth: "invalid_request"},
		{name: "x5u to the attacker's server", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": atk.kid, "x5u": atk.srv.URL + "/cert.pem"}, payload(nil), atk.key)
		}, status: 401, want: []string{`token header "x5u" is not allowed`}, oauth: "invalid_request"},
		{name: "embedded jwk", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": atk.kid, "jwk": atk.jwk()}, payload(nil), atk.key)
		}, status: 401, want: []string{`token header "jwk" is not allowed`}, oauth: "invalid_request"},
		{name: "embedded jwk, no kid", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "jwk": atk.jwk()}, payload(nil), atk.key)
		}, status: 401, want: []string{`token header "jwk" is not allowed`}},
		{name: "embedded x5c", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "x5c": []string{base64.StdEncoding.EncodeToString(atk.cert(t))}}, payload(nil), atk.key)
		}, status: 401, want: []string{`token header "x5c" is not allowed`}},
		{name: "crit header", jwt: func(t *testing.T) string {
			return handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": ghKID, "crit": []string{"exp"}}, payload(nil), w.gh.Key(ghKID))
		}, status: 401, want: []string{`token header "crit" is not supported`}},
		{name: "signed by another configured issuer's key", jwt: func(t *testing.T) string {
			return sign(t, w.gen, valid()) // iss says GitHub-shaped, key is the generic issuer's
		}, status: 401, want: []string{"is not in the issuer's key set"}},

		// --- Integrity.
		{name: "tampered payload", jwt: func(t *testing.T) string {
			evil := sign(t, w.gh, w.ghClaimsFor("evil-org/octo-repo"))
			parts := strings.Split(evil, ".")
			return parts[0] + "." + b64url(payload(nil)) + "." + parts[2]
		}, status: 401, want: []string{"signature does not verify with the issuer's key", rejectedByKey}, oauth: "invalid_request"},
		{name: "signature of another token", jwt: func(t *testing.T) string {
			a, b := strings.Split(sign(t, w.gh, valid()), "."), strings.Split(sign(t, w.gh, valid()), ".")
			return a[0] + "." + a[1] + "." + b[2]
		}, status: 401, want: []string{"signature does not verify"}},

		// --- Time.
		{name: "expired beyond leeway", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["iat"], c["nbf"], c["exp"] = now-600, now-600, now-120 })
		}, status: 401, want: []string{"OIDC token rejected: token expired at", "leeway 60s", "request a fresh token from your CI provider"}, oauth: "invalid_request"},
		{name: "nbf in the future beyond leeway", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["nbf"] = now + 180 })
		}, status: 401, want: []string{"token not valid before", "check the clocks"}, oauth: "invalid_request"},
		{name: "iat in the future beyond leeway", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["iat"], c["nbf"] = now+180, now })
		}, status: 401, want: []string{"token issued at", "in the future", "check the clocks"}, oauth: "invalid_request"},
		{name: "missing exp", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { delete(c, "exp") })
		}, status: 401, want: []string{"token has no exp claim"}, oauth: "invalid_request"},
		{name: "missing iat", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { delete(c, "iat") })
		}, status: 401, want: []string{"token has no iat claim"}},
		{name: "exp as a string", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["exp"] = fmt.Sprint(now + 300) })
		}, status: 401, want: []string{"claim exp is"}},

		// --- Issuer and audience.
		{name: "wrong iss", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["iss"] = "https://token.actions.githubusercontent.com" })
		}, status: 401, want: []string{`iss "https://token.actions.githubusercontent.com" is not the provider's issuer`, "check provider_id"}, oauth: "invalid_request"},
		{name: "iss with a trailing slash", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["iss"] = w.gh.URL() + "/" })
		}, status: 401, want: []string{fmt.Sprintf("iss %q is not the provider's issuer", w.gh.URL()+"/")}, oauth: "invalid_request"},
		{name: "issuer whose discovery advertises a trailing slash", provider: slashID, jwt: func(t *testing.T) string {
			c := valid()
			c["iss"] = slash.URL()
			return sign(t, slash, c)
		}, status: 503, want: []string{"the keys of the OIDC issuer " + slash.URL() + " could not be fetched"}, oauth: "temporarily_unavailable"},
		{name: "token of another provider's issuer (CircleCI-shaped to GitHub-shaped)", jwt: func(t *testing.T) string {
			return sign(t, w.cc, w.ccClaims())
		}, status: 401, want: []string{"is not in the issuer's key set"}},
		{name: "wrong aud", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["aud"] = "sts.amazonaws.com" })
		}, status: 401, want: []string{`aud ["sts.amazonaws.com"] does not contain "Buddy"`, `request the OIDC token with audience "Buddy"`}, oauth: "invalid_request"},
		{name: "aud differs in case", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["aud"] = "buddy" })
		}, status: 401, want: []string{`does not contain "Buddy"`}},
		{name: "missing aud", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { delete(c, "aud") })
		}, status: 401, want: []string{"token has no aud claim"}},

		// --- Size and shape.
		{name: "token over 16 KiB", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["padding"] = strings.Repeat("x", 16<<10) })
		}, status: 401, want: []string{"more than the 16384-byte limit"}, oauth: "invalid_request"},
		{name: "claims nested 40 deep", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(deep(40)))
		}, status: 401, want: []string{"OIDC token rejected: token payload: JSON nested deeper than 32 levels"}, oauth: "invalid_request"},
		{name: "claims nested 1500 deep", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(deep(1500)))
		}, status: 401, want: []string{"JSON nested deeper than 32 levels"}},
		{name: "duplicate claim, good value last", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(rawClaims("repository_owner", `"repository_owner":"evil-org","repository_owner":"octo-org"`)))
		}, status: 401, want: []string{`token payload: duplicate member name "repository_owner"`}, oauth: "invalid_request"},
		{name: "duplicate claim, good value first", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(rawClaims("repository_owner", `"repository_owner":"octo-org","repository_owner":"evil-org"`)))
		}, status: 401, want: []string{`duplicate member name "repository_owner"`}},
		{name: "duplicate claim through an escape", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(rawClaims("repository_owner", `"repository_owner":"evil-org","repository\u005fowner":"octo-org"`)))
		}, status: 401, want: []string{"duplicate member name"}},
		{name: "duplicate exp", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(rawClaims("exp", fmt.Sprintf(`"exp":%d,"exp":%d`, now-3600, now+300))))
		}, status: 401, want: []string{`duplicate member name "exp"`}},
		{name: "duplicate header member", jwt: func(t *testing.T) string {
			h := fmt.Sprintf(`{"alg":"none","alg":"RS256","typ":"JWT","kid":%q}`, ghKID)
			input := b64url([]byte(h)) + "." + b64url(payload(nil))
			good := strings.Split(handSign(t, hdr("RS256"), payload(nil), w.gh.Key(ghKID)), ".")
			return input + "." + good[2]
		}, status: 401, want: []string{"token header: duplicate member name"}},
		{name: "payload is a JSON array", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, `["octo-org"]`)
		}, status: 401, want: []string{"not a JSON object"}},
		{name: "not a JWS", jwt: func(t *testing.T) string { return "Bearer " + sign(t, w.gh, valid()) },
			status: 401, want: []string{"token is not a compact JWS", `without quotes or a "Bearer " prefix`}},

		// --- Trust conditions (look-alike values).
		{name: "repository_owner with U+2010 HYPHEN", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["repository_owner"] = "octo\u2010org" })
		}, status: 401, want: []string{`OIDC token rejected by provider "GHA-like - octo-repo:deploy": this trust condition failed: repository_owner is "octo-org" (decision `}, oauth: "invalid_request"},
		{name: "repository_owner with Cyrillic o", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["repository_owner"] = "\u043ecto-org" })
		}, status: 401, want: []string{`this trust condition failed: repository_owner is "octo-org"`}},
		{name: "repository_owner with a trailing NUL", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["repository_owner"] = "octo-org\x00" })
		}, status: 401, want: []string{`this trust condition failed: repository_owner is "octo-org"`}},
		{name: "repository_owner as an array holding the value", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["repository_owner"] = []string{"evil-org"} })
		}, status: 401, want: []string{`this trust condition failed: repository_owner is "octo-org"`}},
		{name: "two failing conditions", jwt: func(t *testing.T) string {
			return sign(t, w.gh, w.ghClaimsFor("evil-org/evil-repo"))
		}, status: 401, want: []string{`these trust conditions failed: `, `repository_owner is "octo-org"`, `repository is "octo-org/octo-repo"`}},
		{name: "ref claim missing", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { delete(c, "ref") })
		}, status: 401, want: []string{`ref is "refs/heads/main" (claim missing)`}},

		// --- Providers.
		{name: "unknown provider id", provider: unknownID, jwt: func(t *testing.T) string { return w.ghToken(t, nil) },
			status: 401, want: []string{"no OIDC provider has the id " + unknownID}, oauth: "invalid_client"},
		{name: "provider id in upper case", provider: strings.ToUpper(ghID), jwt: func(t *testing.T) string { return w.ghToken(t, nil) },
			status: 200},

		// --- Accepted controls.
		{name: "aud array holding the right value among others (accepted)", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["aud"] = []string{"sts.amazonaws.com", "Buddy", "https://example.com"} })
		}, status: 200},
		{name: "expired within leeway (accepted)", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["iat"], c["nbf"], c["exp"] = now-600, now-600, now-20 })
		}, status: 200},
		{name: "nbf in the future within leeway (accepted)", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["nbf"] = now + 30 })
		}, status: 200},
		{name: "iat in the future within leeway (accepted)", jwt: func(t *testing.T) string {
			return w.ghToken(t, func(c map[string]any) { c["iat"], c["nbf"] = now+30, now })
		}, status: 200},
		{name: "claims nested 10 deep (accepted)", jwt: func(t *testing.T) string {
			return signRaw(t, w.gh, string(deep(10)))
		}, status: 200},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider := tc.provider
			if provider == "" {
				provider = ghID
			}
			jwt := tc.jwt(t)
			before := w.keys(t)
			atkHits := atk.hits.Load()
			issReqs := w.gh.Requests()
			r := s.exchangeBuddy(t, provider, jwt)
			if tc.status == http.StatusOK {
				expectStatus(t, r, http.StatusOK)
				tok := bareToken(t, r)
				if added := w.newKeys(t, before); len(added) != 2 || !contains(added, tokenKey(tok)) {
					t.Fatalf("keys added %v, want the replay claim and the token", added)
				}
				return
			}
			msg := expectError(t, r, tc.status, tc.want...)
			w.expectNoNewKeys(t, before)
			if strings.Contains(msg, jwt) || (len(jwt) > 40 && strings.Contains(msg, jwt[len(jwt)-40:])) {
				t.Errorf("the message echoes the token: %q", msg)
			}
			if atk.hits.Load() != atkHits {
				t.Errorf("the sidecar fetched from the attacker's server (%d request(s))", atk.hits.Load()-atkHits)
			}
			// The issuer got at most its own discovery+JWKS refetch.
			if d := w.gh.Requests() - issReqs; d > 2 {
				t.Errorf("the issuer got %d requests for one exchange", d)
			}
			if tc.oauth == "" {
				return
			}
			r = s.exchange8693(t, provider, jwt, "")
			code, desc := oauthError(t, r)
			wantStatus := map[string]int{"invalid_request": 400, "invalid_client": 401, "temporarily_unavailable": 503}[tc.oauth]
			if r.Status != wantStatus || code != tc.oauth {
				t.Fatalf("RFC 8693: %s, want %d %s", r, wantStatus, tc.oauth)
			}
			for _, want := range tc.want {
				if !strings.Contains(desc, want) {
					t.Errorf("RFC 8693 error_description %q does not contain %q", desc, want)
				}
			}
			w.expectNoNewKeys(t, before)
		})
	}

	t.Run("unknown kid flood refetches at most once per cooldown", func(t *testing.T) {
		_, j0 := w.gh.Fetches()
		var wg sync.WaitGroup
		var bad atomic.Int64
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				jwt := handSign(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": fmt.Sprintf("flood-%d", i)}, payload(nil), atk.key)
				body, _ := json.Marshal(map[string]string{"provider_id": ghID, "web_identity_token": jwt})
				resp, err := client.Post(s.URL+"/user/oidc/tokens", "application/json", strings.NewReader(string(body)))
				if err != nil {
					bad.Add(1)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					bad.Add(1)
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 {
			t.Errorf("%d of 20 unknown-kid exchanges were not 401", bad.Load())
		}
		// The "unknown kid" case above already used this 30 s cooldown, so
		// a flood right after should cost the issuer nothing at all; allow
		// one refetch in case the cooldown lapsed on a slow machine.
		if _, j := w.gh.Fetches(); j-j0 > 1 {
			t.Errorf("20 unknown kids caused %d JWKS fetches, want at most 1 (refresh_cooldown)", j-j0)
		}
	})

	t.Run("replayed jti", func(t *testing.T) {
		before := w.keys(t)
		claims := valid()
		jwt := sign(t, w.gh, claims)
		first := s.mustExchange(t, ghID, jwt)
		r := s.exchangeBuddy(t, ghID, jwt)
		expectError(t, r, 401, "this OIDC token was already exchanged; request a fresh one from your CI provider")
		// Another token (other bytes, same issuer and jti) is a replay too.
		claims["run_attempt"] = "2"
		expectError(t, s.exchangeBuddy(t, ghID, sign(t, w.gh, claims)), 401, "already exchanged")
		// And through the other endpoint.
		r = s.exchange8693(t, ghID, jwt, "")
		if code, desc := oauthError(t, r); r.Status != 400 || code != "invalid_request" || !strings.Contains(desc, "already exchanged") {
			t.Errorf("RFC 8693 replay: %s", r)
		}
		added := w.newKeys(t, before)
		if len(added) != 2 || !contains(added, tokenKey(first)) {
			t.Fatalf("keys added %v, want exactly one token and one replay claim", added)
		}
	})

	t.Run("concurrent replay of one token: exactly one wins", func(t *testing.T) {
		before := w.keys(t)
		jwt := w.ghToken(t, nil)
		const n = 12
		statuses := make([]int, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				body, _ := json.Marshal(map[string]string{"provider_id": ghID, "web_identity_token": jwt})
				resp, err := client.Post(s.URL+"/user/oidc/tokens", "application/json", strings.NewReader(string(body)))
				if err != nil {
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		ok, replayed := 0, 0
		for _, st := range statuses {
			switch st {
			case 200:
				ok++
			case 401:
				replayed++
			}
		}
		if ok != 1 || replayed != n-1 {
			t.Fatalf("statuses %v: want exactly one 200 and %d 401", statuses, n-1)
		}
		if tk := len(w.newKeys(t, before)); tk != 2 {
			t.Fatalf("%d keys added, want 2 (one token, one claim)", tk)
		}
	})

	t.Run("RFC 8693 scope escalation", func(t *testing.T) {
		before := w.keys(t)
		jwt := w.ghToken(t, nil)
		r := s.exchange8693(t, ghID, jwt, "WORKSPACE EXECUTION_MANAGE")
		code, desc := oauthError(t, r)
		if r.Status != 400 || code != "invalid_scope" || !strings.Contains(desc, `provider "GHA-like - octo-repo:deploy" does not grant the requested scope EXECUTION_MANAGE; request only scopes among WORKSPACE EXECUTION_RUN`) {
			t.Fatalf("escalation: %s", r)
		}
		w.expectNoNewKeys(t, before)
		// The OIDC token was not claimed: it still exchanges, and a
		// narrowed request gets only what it asked for.
		r = s.exchange8693(t, ghID, jwt, "EXECUTION_INFO")
		expectStatus(t, r, 200)
		if m := jsonObject(t, r); m["scope"] != "EXECUTION_INFO" {
			t.Fatalf("narrowed grant %s", r.Body)
		}
	})

	t.Run("request shape", func(t *testing.T) {
		before := w.keys(t)
		jwt := w.ghToken(t, nil)
		good, _ := json.Marshal(map[string]string{"provider_id": ghID, "web_identity_token": jwt})
		for _, c := range []struct {
			name, ct, body string
			status         int
			want           string
		}{
			{"malformed JSON", "application/json", `{"provider_id": "` + ghID + `", "web_identity_token": `, 400, "the request body is not valid JSON"},
			{"JSON array", "application/json", `["` + ghID + `"]`, 400, "must be a JSON object, not a JSON array"},
			{"provider_id a number", "application/json", `{"provider_id": 1, "web_identity_token": "x"}`, 400, "provider_id must be a string, not a JSON number"},
			{"provider_id not a UUID", "application/json", `{"provider_id": "GHA - deploy", "web_identity_token": "x"}`, 400, `provider_id "GHA - deploy" is not a UUID`},
			{"no token", "application/json", `{"provider_id": "` + ghID + `"}`, 400, "web_identity_token is missing"},
			{"text/plain", "text/plain", string(good), 400, `Content-Type "text/plain" is not supported`},
			{"form", "application/x-www-form-urlencoded", url.Values{"provider_id": {ghID}, "web_identity_token": {jwt}}.Encode(), 400, "is not supported"},
			{"no content type", "", string(good), 400, "the Content-Type header is missing"},
			{"latin1 charset", "application/json; charset=latin1", string(good), 400, `charset "latin1" is not supported`},
			{"body over 64 KiB", "application/json", `{"provider_id": "` + ghID + `", "web_identity_token": "` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than 65536 bytes"},
		} {
			r := do(t, newRequest(t, http.MethodPost, s.URL+"/user/oidc/tokens", c.ct, c.body))
			if r.Status != c.status || !strings.Contains(errMessage(t, r), c.want) {
				t.Errorf("%s: %s, want %d %q", c.name, r, c.status, c.want)
			}
		}
		r := do(t, newRequest(t, http.MethodGet, s.URL+"/user/oidc/tokens", "", ""))
		if r.Status != 405 || r.Header.Get("Allow") != "POST" {
			t.Errorf("GET: %s Allow=%q", r, r.Header.Get("Allow"))
		}
		// RFC 8693: wrong content type, subject_token in the URL, bad grant.
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {jwt},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "client_id": {ghID}}
		r = do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/token", "application/json", string(good)))
		if code, _ := oauthError(t, r); r.Status != 400 || code != "invalid_request" {
			t.Errorf("RFC 8693 JSON body: %s", r)
		}
		r = do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/token?subject_token="+url.QueryEscape(jwt), "application/x-www-form-urlencoded", form.Encode()))
		if code, desc := oauthError(t, r); r.Status != 400 || code != "invalid_request" || !strings.Contains(desc, "treat that token as leaked") {
			t.Errorf("RFC 8693 subject_token in the URL: %s", r)
		}
		bad := url.Values{}
		for k, v := range form {
			bad[k] = v
		}
		bad.Set("grant_type", "client_credentials")
		r = do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/token", "application/x-www-form-urlencoded", bad.Encode()))
		if code, _ := oauthError(t, r); r.Status != 400 || code != "unsupported_grant_type" {
			t.Errorf("RFC 8693 grant_type: %s", r)
		}
		bad = url.Values{}
		for k, v := range form {
			bad[k] = v
		}
		bad.Set("actor_token", jwt)
		bad.Set("actor_token_type", "urn:ietf:params:oauth:token-type:jwt")
		r = do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/token", "application/x-www-form-urlencoded", bad.Encode()))
		if code, _ := oauthError(t, r); r.Status != 400 || code != "invalid_request" {
			t.Errorf("RFC 8693 actor_token: %s", r)
		}
		r = do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/token", "application/x-www-form-urlencoded", form.Encode()+"&subject_token=x"))
		if code, _ := oauthError(t, r); r.Status != 400 || code != "invalid_request" {
			t.Errorf("RFC 8693 repeated subject_token: %s", r)
		}
		w.expectNoNewKeys(t, before)
		// None of that burned the token.
		s.mustExchange(t, ghID, jwt)
	})
}

// ghClaimsFor is ghClaims for another repository (owner/name).
func (w *world) ghClaimsFor(repo string) map[string]any {
	return oidctest.GitHubClaims(w.gh.URL(), ghAudience, repo, ghRef, time.Now())
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
