package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
)

// TestReadyzReportsRevisionFailingEveryEvaluation: a revision that passes
// the load-time probes but fails every real exchange (here a guardrail
// that errors on any token with repository_owner) makes /readyz 503 after
// policy.FailingAfter failed evaluations in a row, and a success clears it
// (issue 11 #13).
func TestReadyzReportsRevisionFailingEveryEvaluation(t *testing.T) {
	h := newRig(t, rigOptions{configure: func(h *rig) {
		dir := filepath.Join(h.dir, "policies")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		pols, err := policy.EmbeddedPolicies(false)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range pols {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f.Src, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		bad := "package sidecar.guardrails\n\ndeny contains sprintf(\"%v\", [to_number(input.claims.repository_owner)]) if input.claims.repository_owner\n"
		if err := os.WriteFile(filepath.Join(dir, "broken.rego"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		h.cfg.Policies = []string{dir}
	}})
	if status, r := h.readyz(); status != http.StatusOK {
		t.Fatalf("/readyz before any request: %d %+v", status, r)
	}
	for i := range policy.FailingAfter {
		if status, body, _, err := h.exchange(provA, h.jwt(h.iss, "octo-org")); err != nil || status != http.StatusServiceUnavailable {
			t.Fatalf("exchange %d: %d %s %v", i, status, body, err)
		}
	}
	status, r := h.readyz()
	if status != http.StatusServiceUnavailable || r.Status != "not ready" || len(r.Problems) != 1 ||
		!strings.Contains(r.Problems[0], "has failed its last 20 policy evaluations, with no success since") || !strings.Contains(r.Problems[0], "to_number") {
		t.Fatalf("/readyz after %d failed evaluations: %d %+v", policy.FailingAfter, status, r)
	}
	// One decision that evaluates (the proxy's 401 for a request without
	// a token) clears it.
	if status, body := h.do(http.MethodGet, h.base+"/workspaces", "", "", nil); status != http.StatusUnauthorized {
		t.Fatalf("proxied request without token: %d %s", status, body)
	}
	if status, r := h.readyz(); status != http.StatusOK {
		t.Fatalf("/readyz after a successful evaluation: %d %+v", status, r)
	}
}
