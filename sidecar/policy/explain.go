package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/glyph"
)

// ReadClaims decodes a JSON object of claims, keeping numbers as
// json.Number so times stay Unix numbers in the policy input.
func ReadClaims(r io.Reader) (map[string]any, error) {
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("claims must be one JSON object: %w", err)
	}
	if claims == nil {
		return nil, fmt.Errorf("claims must be one JSON object, found null")
	}
	if dec.More() {
		return nil, fmt.Errorf("claims must be one JSON object; found more after it")
	}
	return claims, nil
}

// Explain writes a decision for people: the outcome, what is granted, and
// for a denial every failing condition with the claim's actual value.
func (d *ExchangeDecision) Explain(w io.Writer, providerID string) {
	name := d.ProviderName
	if name == "" {
		name = "(unknown provider)"
	}
	fmt.Fprintf(w, "provider:   %s (%s)\n", name, providerID)
	fmt.Fprintf(w, "revision:   %s\n", d.Revision)
	if d.Allow {
		fmt.Fprintf(w, "decision:   ALLOW\n")
		fmt.Fprintf(w, "scopes:     %s\n", strings.Join(d.Scopes, ", "))
		ws := "all workspaces"
		if d.Workspaces != nil {
			ws = strings.Join(d.Workspaces, ", ")
		}
		fmt.Fprintf(w, "workspaces: %s\n", ws)
		if len(d.IPRestrictions) > 0 {
			fmt.Fprintf(w, "ip:         %s\n", strings.Join(d.IPRestrictions, ", "))
		}
		fmt.Fprintf(w, "lifetime:   %s\n", time.Duration(d.LifetimeSeconds)*time.Second)
		if len(d.InvalidScopes) > 0 {
			fmt.Fprintf(w, "invalid requested scopes: %s (the provider does not grant them)\n", strings.Join(d.InvalidScopes, ", "))
		}
		return
	}
	fmt.Fprintf(w, "decision:   DENY (%d reason(s))\n", len(d.Reasons))
	for _, r := range d.Reasons {
		switch {
		case r.Condition != "":
			fmt.Fprintf(w, "  %s %s\n", glyph.Default.Fail, r.Condition)
			if r.Missing {
				fmt.Fprintf(w, "      claim %s is missing from the token\n", r.Claim)
			} else {
				actual, _ := json.Marshal(r.Actual)
				fmt.Fprintf(w, "      claim %s = %s\n", r.Claim, actual)
			}
		default:
			fmt.Fprintf(w, "  %s [%s] %s\n", glyph.Default.Fail, r.Code, r.Message)
		}
	}
}
