package test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	ipID      = "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a99" // ip_restrictions 203.0.113.0/24
	genericID = "4d3c2b1a-0f9e-4e7d-8c6b-5a4f3e2d1c0b" // denial_detail: generic
	maxAgeID  = "5e4d3c2b-1a0f-4f8e-9d7c-6b5a4f3e2d1c" // max_token_age: 1m
	reuseID   = "6f5e4d3c-2b1a-4a9f-8e8d-7c6b5a4f3e2d" // allow_token_reuse: true
)

func (w *world) featureProviders() string {
	return fmt.Sprintf(`  - id: %[1]s
    name: GHA-like - office only
    type: other
    issuer: %[5]s
    audience: Buddy
    trust_conditions: 'repository_owner is "octo-org"'
    ip_restrictions: [203.0.113.0/24]
    scopes: [WORKSPACE]
  - id: %[2]s
    name: GHA-like - generic denials
    type: other
    issuer: %[5]s
    audience: Buddy
    trust_conditions: 'repository_owner is "octo-org" and ref is "refs/heads/main"'
    denial_detail: generic
    scopes: [WORKSPACE]
  - id: %[3]s
    name: GHA-like - fresh tokens only
    type: other
    issuer: %[5]s
    audience: Buddy
    trust_conditions: 'repository_owner is "octo-org"'
    max_token_age: 1m
    scopes: [WORKSPACE]
  - id: %[4]s
    name: GHA-like - reusable
    type: other
    issuer: %[5]s
    audience: Buddy
    trust_conditions: 'repository_owner is "octo-org"'
    allow_token_reuse: true
    scopes: [WORKSPACE]
`, ipID, genericID, maxAgeID, reuseID, w.gh.URL())
}

// TestProviderFeatures: IP restrictions (and X-Forwarded-For from an
// untrusted peer), denial_detail: generic, max_token_age and
// allow_token_reuse, through the built binary.
func TestProviderFeatures(t *testing.T) {
	w := newWorld(t, worldOpts{})
	writeFile(t, w.providers, w.providersYAML(w.featureProviders()))
	s := startSidecar(t, w.config(), nil)
	projects := "/workspaces/" + workspace + "/projects"

	t.Run("IP restrictions", func(t *testing.T) {
		before := w.keys(t)
		r := s.exchangeBuddy(t, ipID, w.ghToken(t, nil))
		expectError(t, r, http.StatusForbidden, `OIDC token rejected by provider "GHA-like - office only": `, "127.0.0.1", "203.0.113.0/24", "exchange from an allowed network")
		// A client cannot claim another address: 127.0.0.1 is no trusted proxy.
		body := fmt.Sprintf(`{"provider_id":%q,"web_identity_token":%q}`, ipID, w.ghToken(t, nil))
		req := newRequest(t, http.MethodPost, s.URL+"/user/oidc/tokens", "application/json", body)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("X-Real-Ip", "203.0.113.7")
		req.Header.Set("Forwarded", "for=203.0.113.7")
		expectError(t, do(t, req), http.StatusForbidden, "127.0.0.1")
		w.expectNoNewKeys(t, before)
	})

	t.Run("denial_detail generic", func(t *testing.T) {
		r := s.exchangeBuddy(t, genericID, w.ghToken(t, func(c map[string]any) { c["ref"] = "refs/heads/dev" }))
		msg := expectError(t, r, http.StatusUnauthorized, `OIDC token rejected by provider "GHA-like - generic denials": the token did not satisfy the provider's trust conditions (decision `)
		if strings.Contains(msg, "ref") && strings.Contains(msg, "refs/heads") {
			t.Errorf("a generic denial names the condition or the value: %q", msg)
		}
		r = s.exchangeBuddy(t, genericID, w.ghToken(t, func(c map[string]any) { c["iss"] = "https://evil.example" }))
		msg = expectError(t, r, http.StatusUnauthorized, "its iss claim is not the provider's issuer")
		if strings.Contains(msg, "evil.example") || strings.Contains(msg, w.gh.URL()) {
			t.Errorf("a generic iss denial quotes values: %q", msg)
		}
		r = s.exchangeBuddy(t, genericID, w.ghToken(t, func(c map[string]any) { c["aud"] = "sts.amazonaws.com" }))
		msg = expectError(t, r, http.StatusUnauthorized, "its aud claim does not contain the provider's audience")
		if strings.Contains(msg, "sts.amazonaws.com") || strings.Contains(msg, "Buddy") {
			t.Errorf("a generic aud denial quotes values: %q", msg)
		}
		// The audit log has the actual value.
		if lines := s.logs.Lines(`"outcome":"denied"`, genericID, `refs/heads/dev`); len(lines) == 0 {
			t.Error("the audit log does not record the actual claim value of a generic denial")
		}
	})

	t.Run("max_token_age", func(t *testing.T) {
		now := time.Now().Unix()
		r := s.exchangeBuddy(t, maxAgeID, w.ghToken(t, func(c map[string]any) { c["iat"], c["nbf"] = now-300, now-300 }))
		expectError(t, r, http.StatusUnauthorized, "old, more than the maximum age 60s", "request a fresh token")
		s.mustExchange(t, maxAgeID, w.ghToken(t, nil))
	})

	t.Run("allow_token_reuse", func(t *testing.T) {
		before := w.keys(t)
		jwt := w.ghToken(t, nil)
		a, b := s.mustExchange(t, reuseID, jwt), s.mustExchange(t, reuseID, jwt)
		if a == b {
			t.Fatal("two exchanges returned the same token")
		}
		added := w.newKeys(t, before)
		if len(added) != 2 || !contains(added, tokenKey(a)) || !contains(added, tokenKey(b)) {
			t.Fatalf("keys added %v, want the two tokens and no replay claim", added)
		}
		// Reuse is per provider: the same JWT is still claimed once elsewhere.
		s.mustExchange(t, maxAgeID, jwt)
		expectError(t, s.exchangeBuddy(t, maxAgeID, jwt), http.StatusUnauthorized, "already exchanged")
		expectStatus(t, s.call(t, http.MethodGet, projects, a), http.StatusOK)
		expectStatus(t, s.call(t, http.MethodGet, projects, b), http.StatusOK)
	})
}

// TestHotReload edits providers.yaml under a running sidecar: a broken
// edit is rejected (the old revision serves), removing a provider makes its
// tokens stop working at once, and adding one makes it usable — no restart.
func TestHotReload(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), nil)
	_, ready := s.readyz(t)
	rev0 := ready["revision"]
	projects := "/workspaces/" + workspace + "/projects"
	ccTok := s.mustExchange(t, ccID, sign(t, w.cc, w.ccClaims()))
	ghTok := s.mustExchange(t, ghID, w.ghToken(t, nil))
	expectStatus(t, s.call(t, http.MethodGet, projects+"/web/pipelines/7/executions", ccTok), http.StatusOK)

	orig, err := os.ReadFile(w.providers)
	if err != nil {
		t.Fatal(err)
	}
	// A broken edit: rejected, the old revision keeps serving.
	errBase := s.metric(t, `oidc_sidecar_policy_reloads_total{result="error"}`)
	writeFile(t, w.providers, strings.Replace(string(orig), "lifetime: 10m", "lifetime: 15m", 1))
	await(t, awaitTimeout, "the broken edit to be rejected", func() bool {
		return s.metric(t, `oidc_sidecar_policy_reloads_total{result="error"}`) > errBase
	})
	st, ready := s.readyz(t)
	if st != http.StatusOK || ready["revision"] != rev0 || !strings.Contains(fmt.Sprint(ready["last_reload_error"]), "not a Buddy lifetime preset") {
		t.Errorf("/readyz after a broken edit: %d %v", st, ready)
	}
	expectStatus(t, s.call(t, http.MethodGet, projects, ghTok), http.StatusOK)

	// Remove the CircleCI-shaped provider.
	i := strings.Index(string(orig), "  - id: "+ccID)
	j := strings.Index(string(orig), "  - id: "+genID)
	writeFile(t, w.providers, string(orig[:i])+string(orig[j:]))
	await(t, awaitTimeout, "a new revision without the provider", func() bool {
		_, r := s.readyz(t)
		return r["revision"] != rev0 && r["providers"] == float64(2)
	})
	n := w.upstreamCount()
	expectError(t, s.call(t, http.MethodGet, projects+"/web/pipelines/7/executions", ccTok), http.StatusUnauthorized, "Wrong authentication data")
	w.expectUpstreamUntouched(t, n)
	expectError(t, s.exchangeBuddy(t, ccID, sign(t, w.cc, w.ccClaims())), http.StatusUnauthorized, "no OIDC provider has the id "+ccID)
	expectStatus(t, s.call(t, http.MethodGet, projects, ghTok), http.StatusOK) // others unaffected

	// Put it back: usable again without a restart.
	writeFile(t, w.providers, string(orig))
	await(t, awaitTimeout, "the provider to come back", func() bool {
		_, r := s.readyz(t)
		return r["providers"] == float64(3)
	})
	fresh := s.mustExchange(t, ccID, sign(t, w.cc, w.ccClaims()))
	expectStatus(t, s.call(t, http.MethodGet, projects+"/web/pipelines/7/executions", fresh), http.StatusOK)
}
