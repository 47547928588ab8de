# The exchange decision: may this verified OIDC token be exchanged for a
# sidecar token, and with which scopes, workspaces and lifetime?
#
# Input (see docs/policy.md, "The exchange input"):
#   provider_id       the provider the caller named
#   claims            the verified token's claims (times as Unix numbers)
#   client_ip         the caller's address
#   time              now, Unix seconds
#   requested_scopes  scopes the caller asked for (RFC 8693 "scope"), or absent
#
# A token is allowed only when every part agrees: the provider exists, its
# generated conditions module allows, its hand-written module (if it names
# one) allows, no guardrail denies, and the client address is allowed.
package sidecar.exchange

import data.sidecar.scope
import data.sidecar.trust

provider := data.sidecar.providers[input.provider_id]

default allow := false

# allow is proven positively, clause by clause; it is never derived from
# "there are no reasons", so a rule that fails to evaluate can only deny.
allow if {
	provider
	conditions_allow
	custom_allow
	not guardrail_denies
	ip_allowed
}

# --- the provider's own trust ---------------------------------------------

conditions_allow if provider.has_conditions == false

# The generated module holds the provider's conditions as a table; the
# trust library evaluates it (sidecar/trust/lib.rego). A provider whose
# module is missing has no table: neither rule holds, so it denies.
conditions_allow if trust.allow(data.sidecar.conditions[input.provider_id].conditions)

conditions_deny := trust.deny(data.sidecar.conditions[input.provider_id].conditions)

custom_allow if provider.policy == ""

custom_allow if data.sidecar.custom[provider.policy].allow == true

guardrail_denies if {
	some _ in data.sidecar.guardrails.deny
}

ip_allowed if count(provider.ip_restrictions) == 0

ip_allowed if {
	some cidr in provider.ip_restrictions
	net.cidr_contains(cidr, input.client_ip)
}

# --- reasons for a denial (evaluated only when allow does not hold) -------

reasons contains r if {
	not allow
	not provider
	r := {"code": "unknown_provider", "message": sprintf("no OIDC provider has the id %q", [input.provider_id])}
}

reasons contains r if {
	not allow
	not conditions_allow
	some r in conditions_deny
}

# A conditions module that neither allows nor explains itself still denies.
reasons contains r if {
	not allow
	provider.has_conditions
	not conditions_allow
	not conditions_explained
	r := {"code": "condition_failed", "message": "the provider's trust conditions did not allow this token"}
}

reasons contains r if {
	not allow
	provider.policy != ""
	some x in data.sidecar.custom[provider.policy].deny
	r := normalize(x, "custom_policy")
}

reasons contains r if {
	not allow
	provider.policy != ""
	not custom_allow
	not custom_explained
	r := {"code": "custom_policy", "message": sprintf("the provider's policy %q did not allow this token", [provider.policy])}
}

reasons contains r if {
	not allow
	provider
	some x in data.sidecar.guardrails.deny
	r := normalize(x, "guardrail")
}

reasons contains r if {
	not allow
	provider
	not ip_allowed
	r := {
		"code": "ip_not_allowed",
		"message": sprintf("requests from %s are not allowed for this provider (IP restrictions: %s)", [input.client_ip, concat(", ", provider.ip_restrictions)]),
	}
}

conditions_explained if {
	some _ in conditions_deny
}

custom_explained if {
	some _ in data.sidecar.custom[provider.policy].deny
}

# normalize turns a bare string reason into a reason object.
normalize(x, code) := {"code": code, "message": x} if is_string(x)

normalize(x, code) := object.union({"code": code}, x) if is_object(x)

# --- what is granted --------------------------------------------------------

# invalid_scopes: requested scopes the provider does not grant.
invalid_scopes contains s if {
	some s in input.requested_scopes
	not scope.covers(provider.scopes, s)
}

default scopes := []

scopes := provider.scopes if not input.requested_scopes

scopes := sort({s | some s in input.requested_scopes}) if input.requested_scopes

# --- the decision -----------------------------------------------------------

# decision is full_decision, computed for the common case in one rule body:
# no requested scopes, a provider with generated conditions and nothing
# else (no hand-written module, no IP restrictions), conditions that are
# all "is" rows the claims meet as plain strings (the first definition of
# trust.holds; any other row goes to full_decision, which runs the library),
# and no guardrail that denies. Each of those checks is stricter than its
# part of allow, so this branch allows only what allow allows, and it
# builds the same document (exchange_test.rego checks both against each
# other). It exists because every rule OPA evaluates costs: it halves the
# time of an exchange decision (docs/benchmarks.md).
decision := {
	"allow": true,
	"reasons": [],
	"scopes": p.scopes,
	"invalid_scopes": [],
	"workspaces": p.workspaces,
	"ip_restrictions": p.ip_restrictions,
	"lifetime_seconds": p.lifetime_seconds,
	"provider_name": p.name,
} if {
	not input.requested_scopes
	p := data.sidecar.providers[input.provider_id]
	p.has_conditions == true
	p.policy == ""
	count(p.ip_restrictions) == 0
	every row in data.sidecar.conditions[input.provider_id].conditions {
		row[1] == "is"
		input.claims[row[0]] == row[2]
	}
	count(data.sidecar.guardrails.deny) == 0
} else := full_decision

# full_decision: the allowed decision comes first and names no reasons, so
# the reasons (and the denial explanations of every module) are evaluated
# only for a denial.
full_decision := {
	"allow": true,
	"reasons": [],
	"scopes": scopes,
	"invalid_scopes": sort(invalid_scopes),
	"workspaces": provider.workspaces,
	"ip_restrictions": provider.ip_restrictions,
	"lifetime_seconds": provider.lifetime_seconds,
	"provider_name": provider.name,
} if {
	allow
} else := {
	"allow": false,
	"reasons": [r | some r in reasons],
	"scopes": scopes,
	"invalid_scopes": sort(invalid_scopes),
	"workspaces": provider.workspaces,
	"ip_restrictions": provider.ip_restrictions,
	"lifetime_seconds": provider.lifetime_seconds,
	"provider_name": provider.name,
} if {
	provider
} else := {
	"allow": false,
	"reasons": [r | some r in reasons],
	"scopes": [],
	"invalid_scopes": [],
	"workspaces": [],
	"ip_restrictions": [],
	"lifetime_seconds": 0,
	"provider_name": "",
}
