package provider

import (
	"fmt"
	"slices"
	"strings"
)

// The claims the tokens of a provider type carry, from the issuers'
// documentation — the full sets, not only the shortlists Buddy's forms
// offer. A condition on any other claim can never be met (a missing claim
// never satisfies a condition), so a misspelling such as `reff is "..."`
// would make the provider deny every token; validation warns about it with
// the closest known claim.
var knownClaims = map[Type][]string{
	// docs.github.com/en/actions/reference/security/oidc ("OIDC token
	// claims"): the standard claims and the custom claims GitHub provides.
	// repo_property_<name> claims (repository custom properties an
	// organization or enterprise includes) are accepted by their prefix.
	GitHubActions: {
		"aud", "iss", "sub", "exp", "iat", "jti", "nbf",
		"actor", "actor_id", "base_ref", "check_run_id", "enterprise", "enterprise_id",
		"environment", "environment_node_id", "event_name", "head_ref",
		"job_workflow_ref", "job_workflow_sha", "ref", "ref_protected", "ref_type",
		"repository", "repository_id", "repository_owner", "repository_owner_id", "repository_visibility",
		"run_attempt", "run_id", "run_number", "runner_environment",
		"sha", "workflow", "workflow_ref", "workflow_sha",
	},
	// circleci.com/docs/guides/permissions-authentication/openid-connect-tokens/:
	// the standard claims and the additional oidc.circleci.com/ claims.
	CircleCI: {
		"aud", "iss", "sub", "exp", "iat", "nbf",
		"oidc.circleci.com/org-id", "oidc.circleci.com/project-id", "oidc.circleci.com/context-ids",
		"oidc.circleci.com/vcs-origin", "oidc.circleci.com/vcs-ref", "oidc.circleci.com/ssh-rerun",
		"oidc.circleci.com/job-id", "oidc.circleci.com/pipeline-id", "oidc.circleci.com/pipeline-definition-id",
		"oidc.circleci.com/workflow-id",
	},
}

// claimPrefixes are families of claims known by their prefix.
var claimPrefixes = map[Type][]string{GitHubActions: {"repo_property_"}}

// KnownClaims returns the claims tokens of type t carry (nil: any claim,
// as for other).
func KnownClaims(t Type) []string { return slices.Clone(knownClaims[t]) }

// unknownClaim returns a warning for a condition on claim if tokens of type
// t do not carry it, "" otherwise.
func unknownClaim(t Type, claim string) string {
	known := knownClaims[t]
	if known == nil || slices.Contains(known, claim) {
		return ""
	}
	for _, p := range claimPrefixes[t] {
		if strings.HasPrefix(claim, p) && len(claim) > len(p) {
			return ""
		}
	}
	// CircleCI's claims are usually written without their namespace.
	candidates := known
	if t == CircleCI && !strings.Contains(claim, "/") {
		if c := "oidc.circleci.com/" + claim; slices.Contains(known, c) {
			return fmt.Sprintf("%s tokens have no claim %q, so this condition can never be met; did you mean %s?", t, claim, c)
		}
	}
	msg := fmt.Sprintf("%s tokens have no claim %q, so this condition can never be met", t, claim)
	if sug := suggest(claim, candidates); sug != "" {
		return msg + "; did you mean " + sug + "?"
	}
	return msg + " (docs/providers.md lists the claims)"
}
