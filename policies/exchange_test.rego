package sidecar.exchange_test

import data.sidecar.exchange

scopes := {"implies": {
	"EXECUTION_MANAGE": ["EXECUTION_RUN"],
	"EXECUTION_RUN": ["EXECUTION_INFO"],
	"EXECUTION_INFO": [],
	"WORKSPACE": [],
	"REPOSITORY_WRITE": ["REPOSITORY_READ"],
	"REPOSITORY_READ": [],
}}

gha := {
	"id": "p1",
	"name": "GHA - octo-repo:deploy",
	"type": "github_actions",
	"issuer": "https://token.actions.githubusercontent.com",
	"audience": "Buddy",
	"lifetime_seconds": 600,
	"scopes": ["WORKSPACE", "EXECUTION_RUN"],
	"workspaces": ["acme"],
	"ip_restrictions": [],
	"has_conditions": true,
	"policy": "",
	"denial_detail": "conditions",
}

# Generated modules hold a table of [claim, operator, expected, text] rows.
owner_row := ["repository_owner", "is", "octo-org", `repository_owner is "octo-org"`]

ref_row := ["ref", "is", "refs/heads/main", `ref is "refs/heads/main"`]

conditions_ok := {"p1": {"conditions": [owner_row]}}

ref_reason := {
	"code": "condition_failed",
	"condition": "ref is \"refs/heads/main\"",
	"claim": "ref",
	"operator": "is",
	"expected": "refs/heads/main",
	"actual": "refs/pull/42/merge",
	"missing": false,
	"message": "ref is \"refs/heads/main\" (actual: \"refs/pull/42/merge\")",
	"clause": 2,
}

conditions_bad := {"p1": {"conditions": [owner_row, ref_row]}}

req(claims) := {"provider_id": "p1", "claims": claims, "client_ip": "203.0.113.7", "time": 1795000001}

test_push_to_main_is_allowed_with_the_providers_grant if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.scopes as scopes
	d.allow
	d.reasons == []
	d.scopes == ["WORKSPACE", "EXECUTION_RUN"]
	d.workspaces == ["acme"]
	d.lifetime_seconds == 600
	d.provider_name == "GHA - octo-repo:deploy"
}

test_failing_condition_denies_with_its_reason if {
	d := exchange.decision with input as req(data.testdata.claims.github_pull_request)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_bad
		with data.sidecar.scopes as scopes
	not d.allow
	d.reasons == [ref_reason]
}

test_conditions_module_missing_denies if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as {}
		with data.sidecar.scopes as scopes
	not d.allow
	d.reasons[0].code == "condition_failed"
}

# A row the library does not know (here an unknown operator) never holds:
# the token is denied and the row is named.
test_unknown_operator_row_denies if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as {"p1": {"conditions": [owner_row, ["ref", "equals", "refs/heads/main", "ref equals main"]]}}
		with data.sidecar.scopes as scopes
	not d.allow
	d.reasons[0].condition == "ref equals main"
}

# An empty table (a provider whose conditions were all removed) allows.
test_empty_table_allows if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as {"p1": {"conditions": []}}
		with data.sidecar.scopes as scopes
	d.allow
}

test_unknown_provider_is_denied if {
	d := exchange.decision with input as object.union(req(data.testdata.claims.github_push_main), {"provider_id": "nope"})
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
	not d.allow
	d.reasons == [{"code": "unknown_provider", "message": "no OIDC provider has the id \"nope\""}]
	d.scopes == []
}

test_pull_request_target_is_refused_by_the_default_guardrail if {
	claims := object.union(data.testdata.claims.github_push_main, {"event_name": "pull_request_target"})
	d := exchange.decision with input as req(claims)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.scopes as scopes
	not d.allow
	d.reasons == [{"code": "guardrail", "message": "GitHub Actions tokens from pull_request_target events are never exchanged"}]
}

test_pull_request_from_same_repo_passes_the_default_guardrails if {
	d := exchange.decision with input as req(data.testdata.claims.github_pull_request)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.scopes as scopes
	d.allow
}

test_guardrail_object_reason_keeps_its_fields if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.guardrails.deny as {{"message": "frozen", "code": "freeze"}}
	d.reasons == [{"code": "freeze", "message": "frozen"}]
}

restricted := object.union(gha, {"ip_restrictions": ["203.0.113.0/24", "2001:db8::/32"]})

test_ip_inside_restriction_is_allowed if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": restricted}
		with data.sidecar.conditions as conditions_ok
	d.allow
}

test_ipv6_inside_restriction_is_allowed if {
	d := exchange.decision with input as object.union(req(data.testdata.claims.github_push_main), {"client_ip": "2001:db8::7"})
		with data.sidecar.providers as {"p1": restricted}
		with data.sidecar.conditions as conditions_ok
	d.allow
}

test_ip_outside_restriction_is_denied if {
	d := exchange.decision with input as object.union(req(data.testdata.claims.github_push_main), {"client_ip": "198.51.100.1"})
		with data.sidecar.providers as {"p1": restricted}
		with data.sidecar.conditions as conditions_ok
	not d.allow
	d.reasons == [{
		"code": "ip_not_allowed",
		"message": "requests from 198.51.100.1 are not allowed for this provider (IP restrictions: 203.0.113.0/24, 2001:db8::/32)",
	}]
}

custom := object.union(gha, {"has_conditions": false, "policy": "deploy"})

test_custom_policy_denial_is_reported if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": custom}
		with data.sidecar.custom as {"deploy": {"allow": false, "deny": {"deployments need an environment"}}}
	not d.allow
	d.reasons == [{"code": "custom_policy", "message": "deployments need an environment"}]
}

test_custom_policy_allow_is_honoured if {
	d := exchange.decision with input as req(data.testdata.claims.github_environment_deploy)
		with data.sidecar.providers as {"p1": custom}
		with data.sidecar.custom as {"deploy": {"allow": true}}
	d.allow
}

test_missing_custom_policy_denies if {
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": custom}
		with data.sidecar.custom as {}
	not d.allow
	d.reasons == [{"code": "custom_policy", "message": "the provider's policy \"deploy\" did not allow this token"}]
}

test_conditions_and_custom_policy_must_both_allow if {
	both := object.union(gha, {"policy": "deploy"})
	d := exchange.decision with input as req(data.testdata.claims.github_push_main)
		with data.sidecar.providers as {"p1": both}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.custom as {"deploy": {"allow": false, "deny": {"no"}}}
	not d.allow
}

test_provider_without_conditions_or_policy_allows if {
	other := object.union(gha, {"type": "other", "has_conditions": false})
	d := exchange.decision with input as req(data.testdata.claims.circleci_main)
		with data.sidecar.providers as {"p1": other}
	d.allow
}

test_requested_scopes_narrow_the_grant_through_the_hierarchy if {
	d := exchange.decision with input as object.union(req(data.testdata.claims.github_push_main), {"requested_scopes": ["EXECUTION_INFO"]})
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.scopes as scopes
	d.allow
	d.scopes == ["EXECUTION_INFO"]
	d.invalid_scopes == []
}

test_requested_scope_beyond_the_grant_is_invalid if {
	d := exchange.decision with input as object.union(req(data.testdata.claims.github_push_main), {"requested_scopes": ["EXECUTION_RUN", "EXECUTION_MANAGE"]})
		with data.sidecar.providers as {"p1": gha}
		with data.sidecar.conditions as conditions_ok
		with data.sidecar.scopes as scopes
	d.invalid_scopes == ["EXECUTION_MANAGE"]
}

# decision computes the common case in one rule body; it must give exactly
# full_decision for every kind of input, allowed or denied.
equivalence_cases := [
	{"claims": data.testdata.claims.github_push_main, "provider": gha, "conditions": conditions_ok},
	{"claims": data.testdata.claims.github_push_main, "provider": gha, "conditions": conditions_bad},
	{"claims": data.testdata.claims.github_pull_request, "provider": gha, "conditions": conditions_bad},
	{"claims": data.testdata.claims.github_push_main, "provider": gha, "conditions": {}},
	{"claims": data.testdata.claims.github_push_main, "provider": object.union(gha, {"has_conditions": false}), "conditions": {}},
	{"claims": data.testdata.claims.github_push_main, "provider": object.union(gha, {"ip_restrictions": ["203.0.113.0/24"]}), "conditions": conditions_ok},
	{"claims": data.testdata.claims.github_push_main, "provider": object.union(gha, {"ip_restrictions": ["198.51.100.0/24"]}), "conditions": conditions_ok},
	{"claims": data.testdata.claims.github_push_main, "provider": object.union(gha, {"policy": "deploy"}), "conditions": conditions_ok},
	{"claims": object.union(data.testdata.claims.github_push_main, {"event_name": "pull_request_target"}), "provider": gha, "conditions": conditions_ok},
	{"claims": data.testdata.claims.github_push_main, "provider": gha, "conditions": conditions_ok, "requested_scopes": ["EXECUTION_INFO"]},
	{"claims": data.testdata.claims.github_push_main, "provider": gha, "conditions": conditions_ok, "requested_scopes": ["REPOSITORY_READ"]},
	{"claims": data.testdata.claims.circleci_main, "provider": gha, "conditions": conditions_ok},
	{"claims": {}, "provider": gha, "conditions": conditions_ok},
]

test_decision_equals_full_decision if {
	every c in equivalence_cases {
		x := object.union(req(c.claims), object.filter(c, ["requested_scopes"]))
		fast := exchange.decision with input as x
			with data.sidecar.providers as {"p1": c.provider}
			with data.sidecar.conditions as c.conditions
			with data.sidecar.custom as {"deploy": {"allow": true}}
			with data.sidecar.scopes as scopes
		full := exchange.full_decision with input as x
			with data.sidecar.providers as {"p1": c.provider}
			with data.sidecar.conditions as c.conditions
			with data.sidecar.custom as {"deploy": {"allow": true}}
			with data.sidecar.scopes as scopes
		fast == full
	}
}

# The cases above take both branches of decision.
test_equivalence_cases_cover_allow_and_deny if {
	outcomes := {d.allow |
		some c in equivalence_cases
		d := exchange.full_decision with input as object.union(req(c.claims), object.filter(c, ["requested_scopes"]))
			with data.sidecar.providers as {"p1": c.provider}
			with data.sidecar.conditions as c.conditions
			with data.sidecar.custom as {"deploy": {"allow": true}}
			with data.sidecar.scopes as scopes
	}
	outcomes == {true, false}
}
