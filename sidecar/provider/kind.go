package provider

import (
	"fmt"
	"slices"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

// Kind holds the rules of one provider type: which issuer and audience its
// tokens carry and which fields it needs. Parse and FromMetadata call
// Validate after the fields common to all types have been decoded, then set
// p.Issuer and p.Audience to Issuer(p) and Audience(p).
type Kind interface {
	// Type is the provider type the Kind handles.
	Type() Type
	// Issuer returns the effective issuer of p.
	Issuer(p *Provider) string
	// Audience returns the effective audience of p ("" = not checked).
	Audience(p *Provider) string
	// Validate checks the type-specific rules on p as configured (before
	// Issuer and Audience are applied) and calls report once per problem,
	// with the field's key ("issuer", "trust_conditions", ...), a message
	// that says how to fix it, and whether it is only a warning. Validate
	// must be idempotent: running it on a provider whose Issuer and
	// Audience already hold the effective values reports no new errors.
	Validate(p *Provider, report func(field, msg string, warning bool))
}

var kinds = map[Type]Kind{
	GitHubActions: githubActions{},
	CircleCI:      circleCI{},
	Other:         other{},
}

// KindOf returns the Kind of provider type t.
func KindOf(t Type) (Kind, bool) {
	k, ok := kinds[t]
	return k, ok
}

// ownerClaims are the claims a github_actions provider must pin with "is".
var ownerClaims = []string{"repository_owner", "repository_owner_id"}

// conditionsFailed reports whether p has trust conditions that did not parse
// (so nothing can be said about what they pin).
func conditionsFailed(p *Provider) bool {
	return p.Conditions == nil && strings.TrimSpace(p.TrustConditions) != ""
}

type githubActions struct{}

func (githubActions) Type() Type                { return GitHubActions }
func (githubActions) Issuer(p *Provider) string { return GitHubIssuer }
func (githubActions) Audience(p *Provider) string {
	if p.Audience == "" {
		return DefaultGitHubAudience
	}
	return p.Audience
}

func (githubActions) Validate(p *Provider, report func(field, msg string, warning bool)) {
	switch p.Issuer {
	case "":
	case GitHubIssuer:
		report("issuer", "github_actions providers always use "+GitHubIssuer+"; remove issuer", true)
	default:
		report("issuer", fmt.Sprintf("github_actions providers always use %s; %q cannot be set here: remove issuer, or use type: other for a different issuer", GitHubIssuer, p.Issuer), false)
	}
	if p.OrganizationID != "" {
		report("organization_id", "organization_id applies to circleci providers only; remove it", false)
	}
	if conditionsFailed(p) {
		return
	}
	if p.Conditions != nil {
		weak := false
		for _, c := range p.Conditions.Conditions {
			if c.Op != trust.OpIs || !slices.Contains(ownerClaims, c.Claim) {
				continue
			}
			if msg := weakPin(c.Claim, c.Values[0]); msg != "" {
				report("trust_conditions", fmt.Sprintf("%s does not pin an owner: %s", c.String(), msg), false)
				weak = true
			}
		}
		if weak || p.Conditions.Pins(ownerClaims...) {
			return
		}
	}
	if p.Policy != "" {
		report("trust_conditions", fmt.Sprintf(`the conditions do not pin repository_owner or repository_owner_id with "is"; policy %q (package sidecar.custom.%s) must pin the owner itself, or any repository on GitHub can get a token`, p.Policy, p.Policy), true)
		return
	}
	report("trust_conditions", `github_actions providers must pin the repository owner: add repository_owner is "<org>" (or repository_owner_id is "<id>"); Buddy requires it, and without it any repository on GitHub can get a token`, false)
}

// weakPin says why v cannot be the value of an owner pin on claim, or "".
// A pin must be a literal owner: "" matches only an empty claim, "*" is
// not a glob under "is" (and no owner is called "*"), true/false are not
// names; such a "pin" states nothing about who owns the repository.
func weakPin(claim, v string) string {
	if claim == "repository_owner_id" {
		if v == "" || v[0] == '0' || strings.Trim(v, "0123456789") != "" {
			return `repository_owner_id is GitHub's numeric id of the owner, e.g. repository_owner_id is "123456"`
		}
		return ""
	}
	switch {
	case v == "true" || v == "false":
		return `a boolean is not an owner name; write the owner's name, e.g. repository_owner is "octo-org" (or pin repository_owner_id)`
	case !githubOwner(v):
		return `a pin must be the owner's literal name (letters, digits, "-" and "_"; "is" takes no wildcards), e.g. repository_owner is "octo-org"`
	}
	return ""
}

// githubOwner reports whether v is shaped like a GitHub user or
// organization name: letters, digits, hyphens (and "_" of Enterprise
// Managed Users), starting with a letter or digit, at most 100 characters.
func githubOwner(v string) bool {
	if v == "" || len(v) > 100 || v[0] == '-' || v[0] == '_' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

type circleCI struct{}

func (circleCI) Type() Type                  { return CircleCI }
func (circleCI) Issuer(p *Provider) string   { return CircleCIIssuerPrefix + p.OrganizationID }
func (circleCI) Audience(p *Provider) string { return p.OrganizationID }

func (c circleCI) Validate(p *Provider, report func(field, msg string, warning bool)) {
	org := p.OrganizationID
	if org == "" {
		report("organization_id", "circleci providers need organization_id: the CircleCI organization UUID (CircleCI → Organization Settings → Organization ID)", false)
	} else if msg := checkUUID(org); msg != "" {
		report("organization_id", msg+" (CircleCI → Organization Settings → Organization ID)", false)
		return
	}
	switch {
	case p.Issuer == "":
	case org != "" && p.Issuer == c.Issuer(p):
		report("issuer", "circleci providers derive the issuer from organization_id; remove issuer", true)
	default:
		report("issuer", fmt.Sprintf("circleci providers always use %s<organization_id>; %q cannot be set here: remove issuer", CircleCIIssuerPrefix, p.Issuer), false)
	}
	switch {
	case p.Audience == "":
	case p.Audience == org:
		report("audience", "circleci providers always use organization_id as the audience; remove audience", true)
	default:
		report("audience", fmt.Sprintf("circleci providers always use organization_id as the audience; %q cannot be set here: remove audience", p.Audience), false)
	}
}

type other struct{}

func (other) Type() Type                  { return Other }
func (other) Issuer(p *Provider) string   { return p.Issuer }
func (other) Audience(p *Provider) string { return p.Audience }

func (other) Validate(p *Provider, report func(field, msg string, warning bool)) {
	if p.OrganizationID != "" {
		report("organization_id", "organization_id applies to circleci providers only; remove it", false)
	}
	if p.Issuer == "" {
		report("issuer", "other providers need issuer: your OIDC provider's issuer URL, exactly as its tokens' iss claim has it (https://...)", false)
	} else {
		for _, pr := range checkIssuer(p.Issuer) {
			report("issuer", pr.msg, pr.warning)
		}
		switch {
		case p.Issuer == GitHubIssuer || p.Issuer == GitHubIssuer+"/":
			report("issuer", "this is GitHub Actions' issuer: use type: github_actions, which makes sure the conditions pin the repository owner", false)
		case strings.HasPrefix(p.Issuer, CircleCIIssuerPrefix):
			report("issuer", "this is a CircleCI issuer: use type: circleci with organization_id", false)
		}
	}
	if p.Audience == "" {
		report("audience", "no audience: the token's aud claim is not checked, so tokens minted for other services are accepted too; set audience to the value your CI sends", true)
	}
	if strings.TrimSpace(p.TrustConditions) == "" && p.Policy == "" {
		from := "the issuer"
		if p.Issuer != "" {
			from = p.Issuer
		}
		report("trust_conditions", "no trust_conditions and no policy: any token from "+from+" is accepted; add conditions on the claims that identify your pipelines", true)
	}
}
