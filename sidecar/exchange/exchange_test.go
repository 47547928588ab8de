package exchange

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

var decisionRE = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

func TestBuddyIssuesToken(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store)
			before := time.Now().Unix()
			rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
			tok := r.issued(rec)
			// The token itself, unquoted: what buddy/login reads (docs/exchange.md).
			if body := rec.Body.String(); body != tok || !strings.HasPrefix(body, "ocs_") {
				t.Errorf("body %q, want the bare token %q", body, tok)
			}
			for k, want := range map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			decision := rec.Header().Get("X-Decision-Id")
			if !decisionRE.MatchString(decision) {
				t.Errorf("X-Decision-Id %q is not a ULID", decision)
			}

			got, err := r.store.Get(context.Background(), token.Hash(tok))
			if err != nil {
				t.Fatalf("Store.Get of the issued token: %v", err)
			}
			if got.IssuedAt < before || got.IssuedAt > time.Now().Unix() {
				t.Errorf("iat %d not within the request", got.IssuedAt)
			}
			want := &token.Record{
				ProviderID:   idDeploy,
				ProviderName: "GHA - deploy",
				Subject:      "repo:octo-org/octo-repo:ref:refs/heads/main",
				Issuer:       provider.GitHubIssuer,
				Claims: map[string]string{
					"repository": "octo-org/octo-repo", "repository_owner": "octo-org", "ref": "refs/heads/main",
					"workflow": "deploy", "actor": "octo-org-bot", "event_name": "push",
					"job_workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
				},
				Scopes:     []string{"WORKSPACE", "EXECUTION_RUN"},
				Workspaces: []string{"my-company"},
				IssuedAt:   got.IssuedAt,
				ExpiresAt:  got.IssuedAt + 5400,
				DecisionID: decision,
			}
			// run_id and sha are derived values: check presence, then compare the rest.
			for _, k := range []string{"run_id", "sha"} {
				if got.Claims[k] == "" {
					t.Errorf("claim %s not recorded", k)
				}
				delete(got.Claims, k)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("record\n got %+v\nwant %+v", got, want)
			}
			if r.redis != nil {
				pttl, err := r.redis.Client().PTTL(context.Background(), token.DefaultKeyPrefix+"tok:"+token.Hash(tok)).Result()
				if err != nil {
					t.Fatal(err)
				}
				if pttl > 90*time.Minute || pttl < 90*time.Minute-5*time.Second {
					t.Errorf("PTTL %s, want ≈ 1h30m (the provider's lifetime)", pttl)
				}
			}
		})
	}
}

func TestTokenEndpointIssuesToken(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store)
			form := exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
			form.Set("subject_token_type", TokenTypeIDToken)
			rec := r.tokenForm(form)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			var resp TokenResponse
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&resp); err != nil {
				t.Fatal(err)
			}
			want := TokenResponse{AccessToken: resp.AccessToken, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer", ExpiresIn: 5400, Scope: "WORKSPACE EXECUTION_RUN"}
			if resp != want {
				t.Errorf("response %+v, want %+v", resp, want)
			}
			if !token.WellFormed(resp.AccessToken) {
				t.Fatalf("access_token %q is not a sidecar token", resp.AccessToken)
			}
			rec2, err := r.store.Get(context.Background(), token.Hash(resp.AccessToken))
			if err != nil {
				t.Fatal(err)
			}
			if rec2.ExpiresAt-rec2.IssuedAt != 5400 || rec2.ProviderID != idDeploy {
				t.Errorf("record %+v", rec2)
			}
			if r.redis != nil {
				pttl := r.redis.Client().PTTL(context.Background(), token.DefaultKeyPrefix+"tok:"+token.Hash(resp.AccessToken)).Val()
				if pttl > 90*time.Minute || pttl < 90*time.Minute-5*time.Second {
					t.Errorf("PTTL %s, want ≈ 1h30m", pttl)
				}
			}
		})
	}
}

// TestProviderTypes exchanges tokens of each provider type (RS256 GitHub,
// ES256 CircleCI without jti, ES384 other) on both endpoints.
func TestProviderTypes(t *testing.T) {
	r := newRig(t, "redis")
	cases := []struct {
		name, id string
		jwt      func() string
		sub      string
		claims   map[string]string
		scopes   []string
		lifetime int64
	}{
		{"github_actions", idDeploy, func() string { return r.ghToken("octo-org/octo-repo", "refs/heads/main") },
			"repo:octo-org/octo-repo:ref:refs/heads/main", nil, []string{"WORKSPACE", "EXECUTION_RUN"}, 5400},
		{"circleci", idCircle, func() string { return r.circleToken(circleProj) },
			"", map[string]string{
				"oidc.circleci.com/project-id": circleProj, "oidc.circleci.com/vcs-ref": "refs/heads/main",
				"oidc.circleci.com/vcs-origin": "github.com/octo-org/octo-repo",
			}, []string{"EXECUTION_INFO"}, 1800},
		{"other", idOther, func() string { return r.otherToken("deployer") },
			"deployer", map[string]string{"repository": "infra/tools"}, []string{"USER_INFO"}, 600},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check := func(tok string) {
				t.Helper()
				rec, err := r.store.Get(context.Background(), token.Hash(tok))
				if err != nil {
					t.Fatal(err)
				}
				if rec.ProviderID != c.id || !slices.Equal(rec.Scopes, c.scopes) || rec.ExpiresAt-rec.IssuedAt != c.lifetime {
					t.Errorf("record %+v", rec)
				}
				if c.sub != "" && rec.Subject != c.sub {
					t.Errorf("sub %q, want %q", rec.Subject, c.sub)
				}
				if c.claims != nil && !reflect.DeepEqual(rec.Claims, c.claims) {
					t.Errorf("claims %v, want %v", rec.Claims, c.claims)
				}
			}
			check(r.issued(r.buddy(c.id, c.jwt())))
			rec := r.tokenForm(exchangeForm(c.id, c.jwt()))
			if rec.Code != http.StatusOK {
				t.Fatalf("RFC 8693: status %d: %s", rec.Code, rec.Body)
			}
			m := decode(t, rec)
			check(m["access_token"].(string))
			if m["expires_in"] != float64(c.lifetime) || m["scope"] != strings.Join(c.scopes, " ") {
				t.Errorf("RFC 8693 response %v", m)
			}
		})
	}
}

func TestBuddyBadRequests(t *testing.T) {
	r := newRig(t, "memory", withOptions(func(o *Options) { o.MaxBodyBytes = 20 << 10 }))
	const ex = `{"provider_id": "<provider uuid>", "web_identity_token": "<OIDC token>"}`
	cases := []struct {
		name, method, ct, body string
		status                 int
		msg                    string
	}{
		{"GET", "GET", "", "", 405,
			"GET /user/oidc/tokens is not supported; send POST /user/oidc/tokens with Content-Type: application/json and the body " + ex},
		{"no content type", "POST", "", `{}`, 400,
			"the Content-Type header is missing; send Content-Type: application/json and send the body as JSON: " + ex},
		{"form content type", "POST", "application/x-www-form-urlencoded", `provider_id=x`, 400,
			`Content-Type "application/x-www-form-urlencoded" is not supported; send Content-Type: application/json and send the body as JSON: ` + ex},
		{"latin1", "POST", "application/json; charset=latin1", `{}`, 400,
			`charset "latin1" is not supported; send UTF-8 (Content-Type: application/json; charset=utf-8)`},
		{"not JSON", "POST", "application/json", `provider_id=1`, 400,
			"the request body is not valid JSON (invalid character 'p' looking for beginning of value); send " + ex},
		{"trailing garbage", "POST", "application/json", `{"provider_id":"x"} {}`, 400,
			"the request body is not valid JSON (invalid character '{' after top-level value); send " + ex},
		{"array", "POST", "application/json", `[1]`, 400,
			"the request body must be a JSON object, not a JSON array; send " + ex},
		{"number id", "POST", "application/json", `{"provider_id": 5, "web_identity_token": "x"}`, 400,
			"provider_id must be a string, not a JSON number; send " + ex},
		{"missing id", "POST", "application/json", `{"web_identity_token": "x"}`, 400,
			"provider_id is missing; set it to the id (a UUID) of the OIDC provider, as in " + ex},
		{"null id", "POST", "application/json", `{"provider_id": null, "web_identity_token": "x"}`, 400,
			"provider_id is missing; set it to the id (a UUID) of the OIDC provider, as in " + ex},
		{"bad id", "POST", "application/json", `{"provider_id": "GHA - deploy", "web_identity_token": "x"}`, 400,
			`provider_id "GHA - deploy" is not a UUID; use the provider's id, e.g. 550e8400-e29b-41d4-a716-446655440000`},
		{"missing token", "POST", "application/json", `{"provider_id": "` + idDeploy + `"}`, 400,
			"web_identity_token is missing; set it to the OIDC token (a JWT) your CI provider issued, as in " + ex},
		{"too large", "POST", "application/json", `{"provider_id": "` + strings.Repeat("x", 21<<10) + `"}`, 413,
			"the request body is larger than 20480 bytes; send only " + ex},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := r.do(r.main, c.method, BuddyPath, c.ct, c.body)
			if msg := buddyError(t, rec, c.status); msg != c.msg {
				t.Errorf("message\n got %s\nwant %s", msg, c.msg)
			}
			if c.status == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow %q", rec.Header().Get("Allow"))
			}
		})
	}

	t.Run("unknown fields and charset are fine", func(t *testing.T) {
		body := fmt.Sprintf(`{"provider_id": %q, "web_identity_token": %q, "extra": {"a": [1]}}`,
			strings.ToUpper(idDeploy), r.ghToken("octo-org/octo-repo", "refs/heads/main"))
		r.issued(r.do(r.main, "POST", BuddyPath, "application/json; charset=UTF-8", body))
	})
}

func TestTokenEndpointBadRequests(t *testing.T) {
	r := newRig(t, "memory")
	jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	edit := func(f func(url.Values)) url.Values {
		v := exchangeForm(idDeploy, jwt)
		f(v)
		return v
	}
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
		desc   string
	}{
		{"no grant_type", edit(func(v url.Values) { v.Del("grant_type") }), 400, "invalid_request",
			"grant_type is missing; send grant_type=urn:ietf:params:oauth:grant-type:token-exchange"},
		{"client_credentials", edit(func(v url.Values) { v.Set("grant_type", "client_credentials") }), 400, "unsupported_grant_type",
			`grant_type "client_credentials" is not supported; this endpoint only does token exchange: grant_type=urn:ietf:params:oauth:grant-type:token-exchange`},
		{"no subject_token", edit(func(v url.Values) { v.Del("subject_token") }), 400, "invalid_request",
			"subject_token is missing; send the OIDC token (a JWT) your CI provider issued"},
		{"no subject_token_type", edit(func(v url.Values) { v.Del("subject_token_type") }), 400, "invalid_request",
			"subject_token_type is missing; send subject_token_type=urn:ietf:params:oauth:token-type:jwt"},
		{"access token subject", edit(func(v url.Values) { v.Set("subject_token_type", TokenTypeAccessToken) }), 400, "invalid_request",
			`subject_token_type "urn:ietf:params:oauth:token-type:access_token" is not supported; the subject token must be an OIDC token: send urn:ietf:params:oauth:token-type:jwt or urn:ietf:params:oauth:token-type:id_token`},
		{"refresh token requested", edit(func(v url.Values) { v.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), 400, "invalid_request",
			`requested_token_type "urn:ietf:params:oauth:token-type:refresh_token" is not supported; omit it or send urn:ietf:params:oauth:token-type:access_token`},
		{"actor token", edit(func(v url.Values) { v.Set("actor_token", "x") }), 400, "invalid_request",
			"delegation (actor_token) is not supported; omit actor_token and actor_token_type"},
		{"no client_id", edit(func(v url.Values) { v.Del("client_id") }), 400, "invalid_request",
			"client_id is missing; set it to the id (a UUID) of the OIDC provider"},
		{"bad client_id", edit(func(v url.Values) { v.Set("client_id", "deploy") }), 400, "invalid_request",
			`client_id "deploy" is not a UUID; set it to the id of the OIDC provider, e.g. 550e8400-e29b-41d4-a716-446655440000`},
		{"repeated", edit(func(v url.Values) { v.Add("client_id", idDeploy) }), 400, "invalid_request",
			"parameter client_id is repeated; send it once"},
		{"unknown client", edit(func(v url.Values) { v.Set("client_id", idUnknown) }), 401, "invalid_client", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := oauthError(t, r.tokenForm(c.form), c.status, c.code)
			if c.desc != "" && d != c.desc {
				t.Errorf("description\n got %s\nwant %s", d, c.desc)
			}
		})
	}
	t.Run("JSON body", func(t *testing.T) {
		d := oauthError(t, r.do(r.main, "POST", TokenPath, "application/json", `{}`), 400, "invalid_request")
		if d != `Content-Type "application/json" is not supported; send Content-Type: application/x-www-form-urlencoded and form-encode the parameters in the body` {
			t.Errorf("description %s", d)
		}
	})
	t.Run("subject_token in the URL", func(t *testing.T) {
		d := oauthError(t, r.do(r.main, "POST", TokenPath+"?subject_token=x", "application/x-www-form-urlencoded", exchangeForm(idDeploy, jwt).Encode()), 400, "invalid_request")
		if !strings.HasPrefix(d, "subject_token must be sent in the form body, not in the URL") {
			t.Errorf("description %s", d)
		}
	})
	t.Run("GET", func(t *testing.T) {
		rec := r.do(r.main, "GET", TokenPath, "", "")
		oauthError(t, rec, 405, "invalid_request")
		if rec.Header().Get("Allow") != "POST" {
			t.Errorf("Allow %q", rec.Header().Get("Allow"))
		}
	})
	t.Run("too large", func(t *testing.T) {
		oauthError(t, r.do(r.main, "POST", TokenPath, "application/x-www-form-urlencoded", "subject_token="+strings.Repeat("a", 70<<10)), 413, "invalid_request")
	})
}

// TestVerificationFailures uses a fixed clock so messages are exact.
func TestVerificationFailures(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	r := newRig(t, "memory", withClock(func() time.Time { return now }))
	expired := r.ghToken("octo-org/octo-repo", "refs/heads/main", func(c map[string]any) {
		c["iat"], c["nbf"], c["exp"] = now.Unix()-900, now.Unix()-900, now.Unix()-600
	})
	old := r.ghToken("octo-org/octo-repo", "refs/heads/main", func(c map[string]any) {
		c["iat"], c["nbf"] = now.Unix()-300, now.Unix()-300
	})
	wrongAud := r.ghToken("octo-org/octo-repo", "refs/heads/main", func(c map[string]any) { c["aud"] = "sts.amazonaws.com" })
	wrongAudGeneric := r.ghToken("octo-org/octo-repo", "refs/tags/v1", func(c map[string]any) { c["aud"] = "sts.amazonaws.com" })
	foreign := oidctest.Start(t)
	forged := oidctest.MustSign(t, foreign, oidctest.GitHubClaims(provider.GitHubIssuer, "Buddy", "octo-org/octo-repo", "refs/heads/main", now))

	cases := []struct {
		name, id, jwt, msg string
	}{
		{"expired", idDeploy, expired,
			"OIDC token rejected: token expired at 2026-01-01T11:50:00Z (now 2026-01-01T12:00:00Z, leeway 60s); request a fresh token from your CI provider right before the exchange"},
		{"too old", idMaxAge, old,
			"OIDC token rejected: token issued at 2026-01-01T11:55:00Z is 300s old, more than the maximum age 60s (now 2026-01-01T12:00:00Z, leeway 60s); request a fresh token from your CI provider right before the exchange"},
		{"wrong audience", idDeploy, wrongAud,
			`OIDC token rejected: aud ["sts.amazonaws.com"] does not contain "Buddy"; request the OIDC token with audience "Buddy"`},
		{"wrong audience, generic", idGeneric, wrongAudGeneric,
			"OIDC token rejected: its aud claim does not contain the provider's audience"},
		{"wrong issuer", idOther, r.ghToken("octo-org/octo-repo", "refs/heads/main"), ""},
		{"unknown key", idDeploy, forged, ""},
		{"garbage", idDeploy, "not-a-jwt", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := buddyError(t, r.buddy(c.id, c.jwt), 401)
			if c.msg != "" && msg != c.msg {
				t.Errorf("message\n got %s\nwant %s", msg, c.msg)
			}
			if !strings.HasPrefix(msg, "OIDC token rejected: ") {
				t.Errorf("message %s", msg)
			}
			if strings.Contains(msg, c.jwt) {
				t.Errorf("message echoes the token")
			}
			d := oauthError(t, r.tokenForm(exchangeForm(c.id, c.jwt)), 400, "invalid_request")
			if d != msg {
				t.Errorf("RFC 8693 description %q differs from the Buddy message %q", d, msg)
			}
		})
	}
	t.Run("unknown provider", func(t *testing.T) {
		msg := buddyError(t, r.buddy(idUnknown, expired), 401)
		want := regexp.MustCompile(`^no OIDC provider has the id ` + idUnknown + `; check provider_id: it must be the id of a provider configured in the sidecar's providers file \(decision [0-9A-Z]{26}\)$`)
		if !want.MatchString(msg) {
			t.Errorf("message %s", msg)
		}
	})
}

func TestTrustDenials(t *testing.T) {
	r := newRig(t, "memory")
	t.Run("conditions named, actual values not", func(t *testing.T) {
		rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/dev"))
		msg := buddyError(t, rec, 401)
		want := `OIDC token rejected by provider "GHA - deploy": this trust condition failed: ref is "refs/heads/main" (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if msg != want {
			t.Errorf("message\n got %s\nwant %s", msg, want)
		}
		if strings.Contains(msg, "refs/heads/dev") {
			t.Error("the message carries the actual claim value")
		}
		// The audit log has the actual value.
		evs := r.audit.events(t)
		last := evs[len(evs)-1]
		reasons, _ := json.Marshal(last["reasons"])
		if !strings.Contains(string(reasons), `"actual":"refs/heads/dev"`) {
			t.Errorf("audit reasons %s lack the actual value", reasons)
		}
	})
	t.Run("several conditions", func(t *testing.T) {
		rec := r.buddy(idDeploy, r.ghToken("evil-org/octo-repo", "refs/heads/dev"))
		msg := buddyError(t, rec, 401)
		want := `OIDC token rejected by provider "GHA - deploy": these trust conditions failed: repository_owner is "octo-org"; ref is "refs/heads/main" (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if msg != want {
			t.Errorf("message\n got %s\nwant %s", msg, want)
		}
	})
	t.Run("missing claim", func(t *testing.T) {
		rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main", func(c map[string]any) { delete(c, "ref") }))
		msg := buddyError(t, rec, 401)
		if !strings.Contains(msg, `this trust condition failed: ref is "refs/heads/main" (claim missing) (decision `) {
			t.Errorf("message %s", msg)
		}
	})
	t.Run("guardrail", func(t *testing.T) {
		rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main", func(c map[string]any) { c["event_name"] = "pull_request_target" }))
		msg := buddyError(t, rec, 401)
		want := `OIDC token rejected by provider "GHA - deploy": GitHub Actions tokens from pull_request_target events are never exchanged (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if msg != want {
			t.Errorf("message\n got %s\nwant %s", msg, want)
		}
	})
	t.Run("generic", func(t *testing.T) {
		rec := r.buddy(idGeneric, r.ghToken("octo-org/octo-repo", "refs/heads/dev"))
		msg := buddyError(t, rec, 401)
		want := `OIDC token rejected by provider "GHA - release": the token did not satisfy the provider's trust conditions (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if msg != want {
			t.Errorf("message\n got %s\nwant %s", msg, want)
		}
		d := oauthError(t, r.tokenForm(exchangeForm(idGeneric, r.ghToken("octo-org/octo-repo", "refs/heads/dev"))), 400, "invalid_request")
		if strings.Contains(d, "ref") || strings.Contains(d, "refs/") {
			t.Errorf("generic description names a condition or value: %s", d)
		}
	})
	t.Run("RFC 8693", func(t *testing.T) {
		rec := r.tokenForm(exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/dev")))
		d := oauthError(t, rec, 400, "invalid_request")
		want := `OIDC token rejected by provider "GHA - deploy": this trust condition failed: ref is "refs/heads/main" (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if d != want {
			t.Errorf("description\n got %s\nwant %s", d, want)
		}
	})
}

func TestIPRestrictions(t *testing.T) {
	proxies, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, "memory", withOptions(func(o *Options) { o.Clients = proxies }))
	jwt := func() string { return r.ghToken("octo-org/octo-repo", "refs/heads/main") }

	t.Run("allowed address", func(t *testing.T) {
		tok := r.issued(r.buddy(idOffice, jwt(), from("203.0.113.7:5000")))
		rec, err := r.store.Get(context.Background(), token.Hash(tok))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.IPRestrictions, []string{"203.0.113.0/24", "2001:db8::/32"}) {
			t.Errorf("ip_restrictions %v", rec.IPRestrictions)
		}
	})
	t.Run("allowed IPv6", func(t *testing.T) {
		r.issued(r.buddy(idOffice, jwt(), from("[2001:db8::5]:5000")))
	})
	t.Run("other address", func(t *testing.T) {
		rec := r.buddy(idOffice, jwt(), from("198.51.100.1:5000"))
		msg := buddyError(t, rec, 403)
		want := `OIDC token rejected by provider "GHA - office": requests from 198.51.100.1 are not allowed for this provider (IP restrictions: 203.0.113.0/24, 2001:db8::/32); exchange from an allowed network (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if msg != want {
			t.Errorf("message\n got %s\nwant %s", msg, want)
		}
		oauthError(t, r.tokenForm(exchangeForm(idOffice, jwt()), from("198.51.100.1:5000")), 400, "invalid_request")
	})
	t.Run("X-Forwarded-For from a trusted proxy", func(t *testing.T) {
		r.issued(r.buddy(idOffice, jwt(), from("10.1.2.3:5000"), header("X-Forwarded-For", "203.0.113.9")))
		buddyError(t, r.buddy(idOffice, jwt(), from("10.1.2.3:5000"), header("X-Forwarded-For", "198.51.100.1")), 403)
	})
	t.Run("X-Forwarded-For from anyone else is ignored", func(t *testing.T) {
		msg := buddyError(t, r.buddy(idOffice, jwt(), from("198.51.100.1:5000"), header("X-Forwarded-For", "203.0.113.9")), 403)
		if !strings.Contains(msg, "requests from 198.51.100.1 ") {
			t.Errorf("message %s", msg)
		}
	})
	t.Run("IP and conditions both fail: 401", func(t *testing.T) {
		buddyError(t, r.buddy(idOffice, r.ghToken("evil-org/x", "refs/heads/main"), from("198.51.100.1:5000")), 401)
	})
}

func TestReplay(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store)
			jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
			r.issued(r.buddy(idDeploy, jwt))
			if msg := buddyError(t, r.buddy(idDeploy, jwt), 401); msg != replayMessage {
				t.Errorf("message %q", msg)
			}
			if d := oauthError(t, r.tokenForm(exchangeForm(idDeploy, jwt)), 400, "invalid_request"); d != replayMessage {
				t.Errorf("description %q", d)
			}
			if r.redis != nil {
				if keys := r.tokenKeys(); len(keys) != 1 {
					t.Errorf("redis holds %d token keys, want 1: %v", len(keys), keys)
				}
				once, _ := r.redis.Client().Keys(context.Background(), token.DefaultKeyPrefix+"once:jti:*").Result()
				if len(once) != 1 {
					t.Fatalf("replay keys %v", once)
				}
				pttl := r.redis.Client().PTTL(context.Background(), once[0]).Val()
				// exp is now+300s, leeway 60s.
				if pttl > 360*time.Second || pttl < 350*time.Second {
					t.Errorf("replay key PTTL %s, want ≈ exp + leeway - now = 360s", pttl)
				}
			}
			// A token without jti (CircleCI) is guarded by its hash.
			circle := r.circleToken(circleProj)
			r.issued(r.buddy(idCircle, circle))
			if msg := buddyError(t, r.buddy(idCircle, circle), 401); msg != replayMessage {
				t.Errorf("message %q", msg)
			}
		})
	}
}

func TestAllowTokenReuse(t *testing.T) {
	r := newRig(t, "redis")
	jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	a := r.issued(r.buddy(idReuse, jwt))
	b := r.issued(r.buddy(idReuse, jwt))
	if a == b {
		t.Error("two exchanges returned the same token")
	}
	if keys := r.tokenKeys(); len(keys) != 2 {
		t.Errorf("redis holds %d token keys, want 2", len(keys))
	}
	if once, _ := r.redis.Client().Keys(context.Background(), token.DefaultKeyPrefix+"once:*").Result(); len(once) != 0 {
		t.Errorf("replay keys written for a reuse provider: %v", once)
	}
}

func TestScopes(t *testing.T) {
	r := newRig(t, "memory")
	withScope := func(id, jwt, scope string) url.Values {
		v := exchangeForm(id, jwt)
		v.Set("scope", scope)
		return v
	}
	t.Run("narrowing through the hierarchy", func(t *testing.T) {
		// The provider grants EXECUTION_RUN, which implies EXECUTION_INFO.
		rec := r.tokenForm(withScope(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), "EXECUTION_INFO  EXECUTION_INFO"))
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		m := decode(t, rec)
		if m["scope"] != "EXECUTION_INFO" {
			t.Errorf("scope %v", m["scope"])
		}
		got, err := r.store.Get(context.Background(), token.Hash(m["access_token"].(string)))
		if err != nil || !slices.Equal(got.Scopes, []string{"EXECUTION_INFO"}) {
			t.Errorf("record scopes %v (%v)", got, err)
		}
	})
	t.Run("empty scope means the provider's scopes", func(t *testing.T) {
		m := decode(t, r.tokenForm(withScope(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), "")))
		if m["scope"] != "WORKSPACE EXECUTION_RUN" {
			t.Errorf("scope %v", m["scope"])
		}
	})
	t.Run("invalid_scope does not burn the OIDC token", func(t *testing.T) {
		jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
		rec := r.tokenForm(withScope(idDeploy, jwt, "WORKSPACE PROJECT_DELETE"))
		d := oauthError(t, rec, 400, "invalid_scope")
		want := `provider "GHA - deploy" does not grant the requested scope PROJECT_DELETE; request only scopes among WORKSPACE EXECUTION_RUN (decision ` + rec.Header().Get("X-Decision-Id") + `)`
		if d != want {
			t.Errorf("description\n got %s\nwant %s", d, want)
		}
		if rec := r.tokenForm(withScope(idDeploy, jwt, "WORKSPACE")); rec.Code != 200 {
			t.Errorf("retry with a valid scope: %d %s", rec.Code, rec.Body)
		}
	})
}

func TestRateLimits(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			t.Run("per IP", func(t *testing.T) {
				r := newRig(t, store, withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 2, Window: time.Hour} }))
				r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
				buddyError(t, r.buddy(idDeploy, "garbage"), 401)
				// The third request is refused before the token is even looked at.
				rec := r.buddy(idDeploy, "garbage")
				msg := buddyError(t, rec, 429)
				ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
				if err != nil || ra < 1 || ra > 3600 {
					t.Errorf("Retry-After %q", rec.Header().Get("Retry-After"))
				}
				want := fmt.Sprintf("too many token exchanges from 192.0.2.10: at most 2 per 1h; retry in %s", fmtDur(time.Duration(ra)*time.Second))
				if msg != want {
					t.Errorf("message\n got %s\nwant %s", msg, want)
				}
				rec = r.tokenForm(exchangeForm(idDeploy, "garbage"))
				oauthError(t, rec, 429, "temporarily_unavailable")
				if rec.Header().Get("Retry-After") == "" {
					t.Error("no Retry-After")
				}
				// Another address is not limited.
				r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from("192.0.2.11:1")))
			})
			t.Run("per provider", func(t *testing.T) {
				r := newRig(t, store, withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 100, PerProvider: 1, Window: time.Minute} }))
				r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from("192.0.2.1:1")))
				msg := buddyError(t, r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from("192.0.2.2:1")), 429)
				if !strings.HasPrefix(msg, "too many token exchanges for provider "+idDeploy+": at most 1 per 1m; retry in ") {
					t.Errorf("message %s", msg)
				}
				// Other providers are not limited.
				r.issued(r.buddy(idReuse, r.ghToken("octo-org/octo-repo", "refs/heads/main"), from("192.0.2.2:1")))
			})
		})
	}
}

// TestRedisDown: with Redis gone every endpoint answers 503 quickly and never
// issues a token; after a restart the same handler works again.
func TestRedisDown(t *testing.T) {
	r := newRig(t, "redis", withRedisTimeout(token.DefaultTimeout), withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 100} }))
	tok := r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
	r.redis.Stop()

	for _, limits := range []bool{true, false} {
		if !limits {
			r.h.limits.PerIP = 0 // reach the replay claim instead of the rate limit
		}
		start := time.Now()
		rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
		if el := time.Since(start); el > time.Second {
			t.Errorf("503 took %s", el)
		}
		msg := buddyError(t, rec, 503)
		if want := "the token store is unavailable, so no token was issued; retry in a few seconds (decision " + rec.Header().Get("X-Decision-Id") + ")"; msg != want {
			t.Errorf("message\n got %s\nwant %s", msg, want)
		}
		start = time.Now()
		oauthError(t, r.tokenForm(exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))), 503, "temporarily_unavailable")
		if el := time.Since(start); el > time.Second {
			t.Errorf("503 took %s", el)
		}
	}
	if d := oauthError(t, r.introspect(tok), 503, "temporarily_unavailable"); !strings.Contains(d, "state is unknown") {
		t.Errorf("introspection: %s", d)
	}
	if d := oauthError(t, r.revoke(tok), 503, "temporarily_unavailable"); !strings.Contains(d, "NOT revoked") {
		t.Errorf("revocation: %s", d)
	}

	r.redis.Restart()
	r.h.limits.PerIP = 100
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
		if rec.Code == 200 {
			r.issued(rec)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after restart: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	events := r.audit.events(t)
	unavailable := 0
	for _, e := range events {
		if e["outcome"] == "unavailable" {
			unavailable++
		}
	}
	if unavailable < 4 {
		t.Errorf("%d unavailable events, want at least 4", unavailable)
	}
}

// TestRedisHung: a Redis that accepts connections but never answers costs
// one store timeout (250ms), then 503.
func TestRedisHung(t *testing.T) {
	r := newRig(t, "redis", withRedisTimeout(token.DefaultTimeout))
	r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
	r.redis.Pause()
	jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	start := time.Now()
	buddyError(t, r.buddy(idDeploy, jwt), 503)
	if el := time.Since(start); el > time.Second {
		t.Errorf("503 took %s", el)
	}
	r.redis.Resume()
	// The claim was sent before the timeout, so Redis may well have applied
	// it when it resumed. The exchange's release (Unclaim with its owner) was
	// sent while Redis was paused too and may run before or after the claim:
	// that OIDC token may stay claimed (fail closed) or be free again; a
	// fresh one works.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
		if rec.Code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Resume: %d %s", rec.Code, rec.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rec := r.buddy(idDeploy, jwt); rec.Code != 200 && rec.Code != 401 {
		t.Errorf("the token whose claim timed out: %d %s", rec.Code, rec.Body)
	}
}

// failingStore fails Save on demand.
type failingStore struct {
	token.Store
	failSave atomic.Bool
}

func (f *failingStore) Save(ctx context.Context, hash string, rec *token.Record, ttl time.Duration) error {
	if f.failSave.Load() {
		return fmt.Errorf("%w: injected Save failure", token.ErrUnavailable)
	}
	return f.Store.Save(ctx, hash, rec, ttl)
}

func TestSaveFailureReleasesReplayClaim(t *testing.T) {
	fs := &failingStore{}
	r := newRig(t, "redis", withStoreWrapper(func(s token.Store) token.Store { fs.Store = s; return fs }))
	jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	fs.failSave.Store(true)
	buddyError(t, r.buddy(idDeploy, jwt), 503)
	if keys := r.tokenKeys(); len(keys) != 0 {
		t.Errorf("token keys after a failed save: %v", keys)
	}
	fs.failSave.Store(false)
	r.issued(r.buddy(idDeploy, jwt)) // the OIDC token was not burned
}

// lostReplyStore applies ClaimOnce for real and then, on demand, reports an
// error as if the reply had been lost (timeout, connection reset): the claim
// is stored although the exchange sees a failure.
type lostReplyStore struct {
	token.Store
	loseReply   atomic.Bool
	failUnclaim atomic.Bool
	onClaim     func() // runs after the real claim, before the lost reply

	mu            sync.Mutex
	claimOwners   []string
	unclaimOwners []string
	unclaimCtxErr []error
}

func (s *lostReplyStore) ClaimOnce(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	s.claimOwners = append(s.claimOwners, owner)
	s.mu.Unlock()
	first, err := s.Store.ClaimOnce(ctx, key, owner, ttl)
	if err != nil || !s.loseReply.Load() {
		return first, err
	}
	if s.onClaim != nil {
		s.onClaim()
	}
	return false, fmt.Errorf("%w: redis EVALSHA (claim): i/o timeout (injected: the reply was lost)", token.ErrUnavailable)
}

func (s *lostReplyStore) Unclaim(ctx context.Context, key, owner string) error {
	s.mu.Lock()
	s.unclaimOwners = append(s.unclaimOwners, owner)
	s.unclaimCtxErr = append(s.unclaimCtxErr, ctx.Err())
	s.mu.Unlock()
	if s.failUnclaim.Load() {
		return fmt.Errorf("%w: injected Unclaim failure", token.ErrUnavailable)
	}
	return s.Store.Unclaim(ctx, key, owner)
}

// withContext runs the request under ctx.
func withContext(ctx context.Context) reqOption {
	return func(r *http.Request) { *r = *r.WithContext(ctx) }
}

// TestClaimReplyLost: the store applied the replay claim but its reply was
// lost. The exchange answers 503 (never an allow) and releases its own claim,
// so the client's retry with the same OIDC token succeeds.
func TestClaimReplyLost(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			ls := &lostReplyStore{}
			r := newRig(t, store, withStoreWrapper(func(s token.Store) token.Store { ls.Store = s; return ls }))
			jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")

			// The client gives up (its context is cancelled) while the claim's
			// reply is lost: the release must not use the dead context.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ls.onClaim = cancel
			ls.loseReply.Store(true)
			rec := r.buddy(idDeploy, jwt, withContext(ctx))
			msg := buddyError(t, rec, 503)
			if want := "the token store is unavailable, so no token was issued; retry in a few seconds (decision " + rec.Header().Get("X-Decision-Id") + ")"; msg != want {
				t.Errorf("message\n got %s\nwant %s", msg, want)
			}
			ls.mu.Lock()
			claims, unclaims, ctxErrs := slices.Clone(ls.claimOwners), slices.Clone(ls.unclaimOwners), slices.Clone(ls.unclaimCtxErr)
			ls.mu.Unlock()
			if len(claims) != 1 || len(unclaims) != 1 || unclaims[0] != claims[0] || len(claims[0]) != 32 {
				t.Fatalf("claim owners %q, unclaim owners %q: want one release with the claim's owner", claims, unclaims)
			}
			if ctxErrs[0] != nil {
				t.Errorf("Unclaim ran on a dead context: %v", ctxErrs[0])
			}
			if r.redis != nil {
				if once, _ := r.redis.Client().Keys(context.Background(), token.DefaultKeyPrefix+"once:*").Result(); len(once) != 0 {
					t.Errorf("replay keys after the release: %v", once)
				}
				if keys := r.tokenKeys(); len(keys) != 0 {
					t.Errorf("token keys after a 503: %v", keys)
				}
			}

			// The retry with the same OIDC token works, and the guard holds after it.
			ls.loseReply.Store(false)
			ls.onClaim = nil
			r.issued(r.buddy(idDeploy, jwt))
			if msg := buddyError(t, r.buddy(idDeploy, jwt), 401); msg != replayMessage {
				t.Errorf("replay after the retry: %q", msg)
			}
			// RFC 8693 endpoint: same behaviour.
			jwt2 := r.ghToken("octo-org/octo-repo", "refs/heads/main")
			ls.loseReply.Store(true)
			oauthError(t, r.tokenForm(exchangeForm(idDeploy, jwt2)), 503, "temporarily_unavailable")
			ls.loseReply.Store(false)
			if rec := r.tokenForm(exchangeForm(idDeploy, jwt2)); rec.Code != 200 {
				t.Errorf("RFC 8693 retry: %d %s", rec.Code, rec.Body)
			}
		})
	}

	// When the release fails too, the token stays claimed: the retry is
	// refused as a replay. Fail closed, never an allow.
	t.Run("release fails", func(t *testing.T) {
		ls := &lostReplyStore{}
		r := newRig(t, "memory", withStoreWrapper(func(s token.Store) token.Store { ls.Store = s; return ls }))
		jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
		ls.loseReply.Store(true)
		ls.failUnclaim.Store(true)
		buddyError(t, r.buddy(idDeploy, jwt), 503)
		if !strings.Contains(r.logs.String(), "could not release the replay claim") {
			t.Errorf("no log line about the failed release:\n%s", r.logs)
		}
		ls.loseReply.Store(false)
		ls.failUnclaim.Store(false)
		if msg := buddyError(t, r.buddy(idDeploy, jwt), 401); msg != replayMessage {
			t.Errorf("retry after a failed release: %q", msg)
		}
	})

	// A lost reply never releases another exchange's claim: the first
	// exchange won; a replay whose claim "fails" must not free the token.
	t.Run("replay with a lost reply keeps the winner's claim", func(t *testing.T) {
		ls := &lostReplyStore{}
		r := newRig(t, "memory", withStoreWrapper(func(s token.Store) token.Store { ls.Store = s; return ls }))
		jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
		r.issued(r.buddy(idDeploy, jwt))
		ls.loseReply.Store(true)
		buddyError(t, r.buddy(idDeploy, jwt), 503)
		ls.loseReply.Store(false)
		if msg := buddyError(t, r.buddy(idDeploy, jwt), 401); msg != replayMessage {
			t.Errorf("third exchange of one token: %q, want the replay refusal", msg)
		}
	})
}

func TestPolicyNotLoaded(t *testing.T) {
	r := newRig(t, "memory", withoutPolicy())
	rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
	msg := buddyError(t, rec, 503)
	if !strings.HasPrefix(msg, "no policy is loaded yet, so no token can be issued; retry in a few seconds") {
		t.Errorf("message %s", msg)
	}
	oauthError(t, r.tokenForm(exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))), 503, "temporarily_unavailable")
	// Loading a policy makes the same handler work.
	r.engine.Swap(r.w.snap)
	r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
}

func TestIssuerUnavailable(t *testing.T) {
	down := oidctest.Start(t)
	down.SetDown(true)
	f, err := provider.Parse("p.yaml", []byte(`providers:
  - id: `+idOther+`
    name: flaky
    type: other
    issuer: `+down.URL()+`
    audience: x
    trust_conditions: sub exists
    scopes: [USER_INFO]
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Build(context.Background(), policy.Sources{Providers: f.Providers})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, "memory")
	r.engine.Swap(snap)
	now := time.Now().Unix()
	jwt := oidctest.MustSign(t, down, map[string]any{"iss": down.URL(), "aud": "x", "sub": "s", "iat": now, "exp": now + 60})
	msg := buddyError(t, r.buddy(idOther, jwt), 503)
	if !strings.HasPrefix(msg, "the keys of the OIDC issuer "+down.URL()+" could not be fetched (") {
		t.Errorf("message %s", msg)
	}
}

func TestIntrospection(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store)
			tok := r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
			rec := r.introspect(tok, header("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8"))
			if rec.Code != 200 || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("status %d %v: %s", rec.Code, rec.Header(), rec.Body)
			}
			m := decode(t, rec)
			stored, _ := r.store.Get(context.Background(), token.Hash(tok))
			want := map[string]any{
				"active": true, "scope": "WORKSPACE EXECUTION_RUN", "client_id": idDeploy,
				"sub": "repo:octo-org/octo-repo:ref:refs/heads/main", "iss": provider.GitHubIssuer,
				"exp": float64(stored.ExpiresAt), "iat": float64(stored.IssuedAt), "token_type": "Bearer",
				"provider_name": "GHA - deploy", "workspaces": []any{"my-company"}, "ip_restrictions": []any{},
				"decision_id": stored.DecisionID,
			}
			for k, v := range stored.Claims {
				want[k] = v
			}
			if !reflect.DeepEqual(m, want) {
				t.Errorf("introspection\n got %v\nwant %v", m, want)
			}

			inactive := func(name, tok string) {
				t.Helper()
				rec := r.introspect(tok)
				if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"active":false}` {
					t.Errorf("%s: %d %s, want exactly {\"active\":false}", name, rec.Code, rec.Body)
				}
			}
			unknown, _, _ := token.New()
			inactive("unknown", unknown)
			inactive("malformed", "ocs_nope")
			inactive("a JWT", r.ghToken("octo-org/octo-repo", "refs/heads/main"))

			for name, auth := range map[string]string{"no header": "", "wrong token": "Bearer nope", "basic": "Basic " + adminToken, "prefix": "Bearer " + adminToken[:5]} {
				req := r.do(r.admin, "POST", IntrospectPath, "application/x-www-form-urlencoded", "token="+tok, func(q *http.Request) {
					if auth != "" {
						q.Header.Set("Authorization", auth)
					}
				})
				oauthError(t, req, 401, "invalid_token")
				if !strings.HasPrefix(req.Header().Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("%s: WWW-Authenticate %q", name, req.Header().Get("WWW-Authenticate"))
				}
			}
			oauthError(t, r.do(r.admin, "POST", IntrospectPath, "application/x-www-form-urlencoded", "", header("Authorization", "Bearer "+adminToken)), 400, "invalid_request")

			if rec := r.revoke(tok); rec.Code != 200 {
				t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
			}
			inactive("revoked", tok)
		})
	}
	t.Run("expired", func(t *testing.T) {
		var now atomic.Int64
		now.Store(time.Now().Unix())
		clock := func() time.Time { return time.Unix(now.Load(), 0) }
		r := newRig(t, "memory", withClock(clock))
		tok := r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
		if m := decode(t, r.introspect(tok)); m["active"] != true {
			t.Fatalf("not active: %v", m)
		}
		now.Add(5401)
		if rec := r.introspect(tok); strings.TrimSpace(rec.Body.String()) != `{"active":false}` {
			t.Errorf("after the lifetime: %s", rec.Body)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		r := newRig(t, "memory", withOptions(func(o *Options) { o.AdminToken = "" }))
		oauthError(t, r.introspect("x"), 404, "not_found")
	})
	// A client certificate the admin listener verified is the second way
	// to hold the admin credential; an unverified one (or none) is not.
	t.Run("client certificate", func(t *testing.T) {
		for _, adminTok := range []string{"", adminToken} {
			r := newRig(t, "memory", withOptions(func(o *Options) { o.AdminToken = adminTok; o.AdminClientCert = true }))
			tok := r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
			verified := func(req *http.Request) {
				req.Header.Del("Authorization")
				req.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
			}
			if m := decode(t, r.introspect(tok, verified)); m["active"] != true {
				t.Errorf("admin token %q, verified client certificate: %v", adminTok, m)
			}
			unverified := func(req *http.Request) {
				req.Header.Del("Authorization")
				req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
			}
			msg := oauthError(t, r.introspect(tok, unverified), 401, "invalid_token")
			if !strings.Contains(msg, "client certificate") {
				t.Errorf("401 message %q does not mention the client certificate", msg)
			}
		}
	})
}

// The JSON-string form (buddy_response: json_string) for clients that
// JSON-decode the body; errors are the same in both forms.
func TestBuddyJSONStringResponse(t *testing.T) {
	r := newRig(t, "memory", withOptions(func(o *Options) { o.BuddyResponse = BuddyResponseJSONString }))
	rec := r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))
	tok := r.issued(rec)
	if body := rec.Body.String(); body != `"`+tok+`"` {
		t.Errorf("body %q, want the JSON string %q", body, `"`+tok+`"`)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	buddyError(t, r.buddy(idDeploy, "not-a-jwt"), http.StatusUnauthorized)

	if _, err := New(Options{Engine: r.opts.Engine, Verifier: r.opts.Verifier, Store: r.opts.Store, BuddyResponse: "json"}); err == nil || !strings.Contains(err.Error(), `"json" is not "text" or "json_string"`) {
		t.Errorf("New with BuddyResponse json: %v", err)
	}
}

func TestRevocation(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			r := newRig(t, store)
			tok := r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
			rec := r.revoke(tok)
			if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("revoke: %d %v %q", rec.Code, rec.Header(), rec.Body)
			}
			if _, err := r.store.Get(context.Background(), token.Hash(tok)); !errors.Is(err, token.ErrNotFound) {
				t.Errorf("Get after revocation: %v", err)
			}
			if r.redis != nil && len(r.tokenKeys()) != 0 {
				t.Error("token key still in redis")
			}
			// No oracle: revoked-again, unknown and garbage tokens all get 200.
			unknown, _, _ := token.New()
			for _, v := range []string{tok, unknown, "garbage", strings.Repeat("x", 5000)} {
				if rec := r.revoke(v); rec.Code != 200 {
					t.Errorf("revoke %.10q: %d", v, rec.Code)
				}
			}
			oauthError(t, r.do(r.main, "POST", RevokePath, "application/x-www-form-urlencoded", "token_type_hint=access_token"), 400, "invalid_request")
			oauthError(t, r.do(r.main, "GET", RevokePath, "", ""), 405, "invalid_request")
		})
	}
}

// TestAuditLog checks one event per exchange request, its fields, and that
// no credential ever reaches the log.
func TestAuditLog(t *testing.T) {
	r := newRig(t, "redis", withOptions(func(o *Options) { o.RateLimits = RateLimits{PerIP: 5, Window: time.Hour} }))
	good := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	denied := r.ghToken("octo-org/octo-repo", "refs/heads/dev")
	var secrets []string
	tok := r.issued(r.buddy(idDeploy, good)) // issued
	secrets = append(secrets, good, denied, tok, adminToken)
	buddyError(t, r.buddy(idDeploy, good), 401)                                                    // replayed
	buddyError(t, r.buddy(idDeploy, denied), 401)                                                  // denied
	buddyError(t, r.buddy(idDeploy, good[:len(good)-4]+"AAAA"), 401)                               // invalid_token
	r.do(r.main, "POST", BuddyPath, "application/json", `{"provider_id":"x"}`)                     // bad_request
	rec := r.tokenForm(exchangeForm(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))) // issued
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	tok2 := decode(t, rec)["access_token"].(string)
	secrets = append(secrets, tok2)
	buddyError(t, r.buddy(idDeploy, good), 429) // rate_limited
	r.introspect(tok)
	r.revoke(tok2)

	evs := r.audit.events(t)
	var exchanges []map[string]any
	for _, e := range evs {
		if e["event"] == "exchange" {
			exchanges = append(exchanges, e)
		}
	}
	outcomes := make([]string, len(exchanges))
	for i, e := range exchanges {
		outcomes[i], _ = e["outcome"].(string)
	}
	want := []string{"issued", "replayed", "denied", "invalid_token", "bad_request", "issued", "rate_limited"}
	if !slices.Equal(outcomes, want) {
		t.Fatalf("outcomes %v, want %v (one event per request)", outcomes, want)
	}
	first := exchanges[0]
	for k, v := range map[string]any{
		"event": "exchange", "endpoint": "buddy", "provider_id": idDeploy, "provider_name": "GHA - deploy",
		"sub": "repo:octo-org/octo-repo:ref:refs/heads/main", "repository": "octo-org/octo-repo", "ref": "refs/heads/main",
		"client_ip": "192.0.2.10", "revision": "test-rev-1", "token_hash_prefix": token.Hash(tok)[:12],
	} {
		if first[k] != v {
			t.Errorf("issued event: %s = %v, want %v", k, first[k], v)
		}
	}
	if _, ok := first["decision_id"]; !ok {
		t.Errorf("issued event lacks decision_id")
	}
	// Milliseconds as a number, like the proxy's line (docs/exchange.md).
	if ms, ok := first["duration_ms"].(float64); !ok || ms < 0 {
		t.Errorf("issued event: duration_ms = %v, want a number of milliseconds", first["duration_ms"])
	}
	// OPA decision-log names: path, result (the decision document),
	// bundles.<name>.revision, timestamp.
	if first["path"] != "sidecar/exchange/decision" ||
		fmt.Sprint(first["bundles"]) != "map[sidecar:map[revision:test-rev-1]]" {
		t.Errorf("issued event: path %v, bundles %v", first["path"], first["bundles"])
	}
	if res, _ := first["result"].(map[string]any); res["allow"] != true || fmt.Sprint(res["reasons"]) != "[]" || res["scopes"] == nil {
		t.Errorf("issued event: result %v", first["result"])
	}
	if ts, _ := first["timestamp"].(string); !strings.HasSuffix(ts, "Z") {
		t.Errorf("issued event: timestamp %v", first["timestamp"])
	}
	if res, _ := exchanges[2]["result"].(map[string]any); res["allow"] != false || !strings.Contains(fmt.Sprint(res["reasons"]), "condition_failed") {
		t.Errorf("denied event: result %v", exchanges[2]["result"])
	}
	if _, ok := exchanges[4]["result"]; ok { // a 400: no decision was made
		t.Errorf("bad_request event has a result: %v", exchanges[4])
	}
	if exchanges[5]["endpoint"] != "rfc8693" {
		t.Errorf("endpoint %v", exchanges[5]["endpoint"])
	}
	reasons, _ := json.Marshal(exchanges[2]["reasons"])
	if !strings.Contains(string(reasons), `"code":"condition_failed"`) || !strings.Contains(string(reasons), `"actual":"refs/heads/dev"`) {
		t.Errorf("denied event reasons %s", reasons)
	}
	if exchanges[3]["oidc_error"] != "bad_signature" {
		t.Errorf("invalid_token event: oidc_error %v", exchanges[3]["oidc_error"])
	}

	all := r.audit.String() + r.logs.String()
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("the logs contain a credential (%.12s...)", s)
		}
	}
	// Nor any part of the JWTs (their signatures especially).
	for _, jwt := range []string{good, denied} {
		for _, part := range strings.Split(jwt, ".") {
			if strings.Contains(all, part) {
				t.Errorf("the logs contain a JWT segment %.16s...", part)
			}
		}
	}
}

// TestConcurrentReplay: 50 parallel exchanges of one OIDC token, one wins.
func TestConcurrentReplay(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			// A generous store timeout: this test is about the replay guard,
			// and 50 racing requests on a loaded -race machine can be slow.
			r := newRig(t, store, withRedisTimeout(10*time.Second))
			jwt := r.ghToken("octo-org/octo-repo", "refs/heads/main")
			r.issued(r.buddy(idReuse, jwt)) // fetch the issuer's keys first
			var wg sync.WaitGroup
			var ok, replayed, other atomic.Int32
			start := make(chan struct{})
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					var rec *httptest.ResponseRecorder
					if i%2 == 0 {
						rec = r.buddy(idDeploy, jwt)
					} else {
						rec = r.tokenForm(exchangeForm(idDeploy, jwt))
					}
					switch rec.Code {
					case 200:
						ok.Add(1)
					case 401, 400:
						replayed.Add(1)
					default:
						other.Add(1)
						t.Errorf("status %d: %s", rec.Code, rec.Body)
					}
				}()
			}
			close(start)
			wg.Wait()
			if ok.Load() != 1 || replayed.Load() != 49 || other.Load() != 0 {
				t.Errorf("200: %d, replayed: %d, other: %d; want 1/49/0", ok.Load(), replayed.Load(), other.Load())
			}
			if r.redis != nil && len(r.tokenKeys()) != 2 {
				t.Errorf("redis holds %d tokens, want 2 (the warm-up's and the winner's)", len(r.tokenKeys()))
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	if _, err := New(Options{}); err == nil || err.Error() != "exchange: Options.Engine, Options.Verifier, Options.Store must be set" {
		t.Errorf("New(Options{}) = %v", err)
	}
	r := newRig(t, "memory")
	base := Options{Engine: r.engine, Verifier: r.h.verifier, Store: r.store}
	bad := base
	bad.RateLimits = RateLimits{PerIP: -1}
	if _, err := New(bad); err == nil {
		t.Error("negative rate limit accepted")
	}
	bad = base
	bad.RateLimits = RateLimits{PerIP: 1, Window: time.Millisecond}
	if _, err := New(bad); err == nil {
		t.Error("1ms window accepted")
	}
	h, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	if h.leeway != time.Minute || h.maxBody != DefaultMaxBodyBytes || h.limits.Window != time.Minute || h.admin != nil {
		t.Errorf("defaults: %+v", h)
	}
}

func TestDecisionID(t *testing.T) {
	now := time.UnixMilli(1767225600123)
	a, b := newDecisionID(now), newDecisionID(now.Add(time.Millisecond))
	if !decisionRE.MatchString(a) || !decisionRE.MatchString(b) || a[:10] >= b[:10] {
		t.Errorf("ids %s %s: want ULIDs that sort by time", a, b)
	}
	if c := newDecisionID(now); c[:10] != a[:10] || c[10:] == a[10:] {
		t.Errorf("same millisecond: %s %s, want the same time part and different random parts", a, c)
	}
	if a[:10] != "01KDVDNA3V" {
		t.Errorf("time part %s for %d ms", a[:10], now.UnixMilli())
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", 1500 * time.Millisecond: "2s", 59 * time.Second: "59s", time.Minute: "1m",
		61 * time.Second: "61s", 90 * time.Minute: "1h30m", time.Hour: "1h",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestMetrics(t *testing.T) {
	m := metrics.New()
	r := newRig(t, "memory", withOptions(func(o *Options) { o.Metrics = m }))
	r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main")))
	buddyError(t, r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/dev")), 401)
	buddyError(t, r.buddy(idUnknown, "x"), 401)
	buddyError(t, r.buddy("9"+idUnknown[1:], "x"), 401)

	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			labels := []string{}
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			switch f.GetName() {
			case "oidc_sidecar_exchanges_total", "oidc_sidecar_exchange_denials_total":
				got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = mt.GetCounter().GetValue()
			case "oidc_sidecar_policy_eval_duration_seconds":
				got[f.GetName()+"_count{"+strings.Join(labels, ",")+"}"] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"oidc_sidecar_exchanges_total{outcome=issued,provider=" + idDeploy + "}":                 1,
		"oidc_sidecar_exchanges_total{outcome=denied,provider=" + idDeploy + "}":                 1,
		"oidc_sidecar_exchanges_total{outcome=denied,provider=unknown}":                          2,
		"oidc_sidecar_exchange_denials_total{provider=" + idDeploy + ",reason=condition_failed}": 1,
		"oidc_sidecar_exchange_denials_total{provider=unknown,reason=unknown_provider}":          2,
		"oidc_sidecar_policy_eval_duration_seconds_count{query=exchange}":                        2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics\n got %v\nwant %v", got, want)
	}
}
