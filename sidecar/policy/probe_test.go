package policy

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestProbeRefusesUndefinedRevision: a revision whose exchange or proxy
// decision is undefined (or fails) for the built-in probe inputs does not
// compile, so a reload keeps the previous revision (issue 11 #13).
func TestProbeRefusesUndefinedRevision(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ file, src, want string }{
		{"exchange.rego", "package sidecar.exchange\n\ndecision := {\"allow\": true} if input.never\n",
			"the policies decide nothing for a probe exchange with an unknown provider_id"},
		{"exchange.rego", "package sidecar.exchange\n\ndecision := {\"allow\": false, \"reasons\": [\"x\"]} if not data.sidecar.providers[input.provider_id]\n",
			"the policies decide nothing for a probe exchange with provider "},
		{"proxy.rego", "package sidecar.proxy\n\ndecision := {\"allow\": false, \"status\": 401, \"code\": \"x\", \"message\": \"x\"} if input.never\n",
			"the policies decide nothing for a probe proxy request without a token (GET /workspaces): policy decision is undefined"},
		{"proxy.rego", "package sidecar.proxy\n\ndecision := {\"allow\": true, \"status\": 200, \"code\": \"x\", \"message\": \"\"}\n",
			"allowed with status 200"}, // consistent, so not this one: see below
	} {
		pols, _ := EmbeddedPolicies(false)
		for i := range pols {
			if pols[i].Path == c.file {
				pols[i].Src = []byte(c.src)
			}
		}
		b, err := Build(ctx, Sources{Providers: manyProviders(t, 2), Policies: pols})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Compile(ctx, b)
		if c.want == "allowed with status 200" {
			// An allow for a request without a token is a decision: the
			// probe checks definedness, not the policy's wisdom.
			if err != nil {
				t.Errorf("%s: %v", c.src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.src, err, c.want)
		}
	}
}

// TestSnapshotFailing: Failing reports a snapshot after FailingAfter
// evaluations failed in a row; one success resets it.
func TestSnapshotFailing(t *testing.T) {
	ctx := context.Background()
	pols, _ := EmbeddedPolicies(false)
	for i := range pols {
		if pols[i].Path == "exchange.rego" {
			pols[i].Src = []byte("package sidecar.exchange\n\ndecision := {\"allow\": false, \"reasons\": [{\"code\": \"x\", \"message\": \"x\"}]} if not input.claims.trigger\n")
		}
	}
	b, err := Build(ctx, Sources{Providers: manyProviders(t, 1), Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	bad := ExchangeInput{ProviderID: "x", Claims: map[string]any{"trigger": true}, Time: time.Now()}
	for i := range FailingAfter {
		if failing, _, _ := s.Failing(); failing {
			t.Fatalf("failing after %d failures", i)
		}
		if _, err := s.Exchange(ctx, bad); err == nil {
			t.Fatal("undefined decision accepted")
		}
	}
	failing, n, last := s.Failing()
	if !failing || n != FailingAfter || !strings.Contains(last, "undefined") {
		t.Fatalf("Failing() = %v, %d, %q", failing, n, last)
	}
	if _, err := s.Exchange(ctx, ExchangeInput{ProviderID: "x", Claims: map[string]any{}, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if failing, n, _ := s.Failing(); failing || n != 0 {
		t.Fatalf("after a success: Failing() = %v, %d", failing, n)
	}
}
