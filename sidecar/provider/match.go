package provider

import (
	"fmt"
	"slices"
)

// TokenMismatch lists how the iss and aud claims of a token differ from what
// p accepts — what the exchange checks before any policy runs, and what
// `policy eval --token` (which does not verify the token) must not pass
// over in silence. Nil when both match (aud is not checked when p has no
// audience).
func (p *Provider) TokenMismatch(claims map[string]any) []string {
	var out []string
	switch iss, ok := claims["iss"].(string); {
	case !ok:
		out = append(out, fmt.Sprintf("the token has no iss claim; provider %s accepts only tokens from %s", p.ID, p.Issuer))
	case iss != p.Issuer:
		out = append(out, fmt.Sprintf("the token's issuer %q is not this provider's (%s): the exchange would refuse it before any policy runs", iss, p.Issuer))
	}
	if p.Audience == "" {
		return out
	}
	var auds []string
	switch a := claims["aud"].(type) {
	case string:
		auds = []string{a}
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok {
				auds = append(auds, s)
			}
		}
	}
	if !slices.Contains(auds, p.Audience) {
		out = append(out, fmt.Sprintf("the token's audience %q does not include this provider's (%q): the exchange would refuse it before any policy runs", auds, p.Audience))
	}
	return out
}
