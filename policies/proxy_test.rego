package sidecar.proxy_test

import data.sidecar.proxy

# grants is what `bundle build` precomputes from implies: every scope that
# holding the key grants, the key included.
scopes := {
	"implies": {
		"EXECUTION_MANAGE": ["EXECUTION_RUN"],
		"EXECUTION_RUN": ["EXECUTION_INFO"],
		"EXECUTION_INFO": [],
		"WORKSPACE": [],
	},
	"grants": {
		"EXECUTION_MANAGE": ["EXECUTION_INFO", "EXECUTION_MANAGE", "EXECUTION_RUN"],
		"EXECUTION_RUN": ["EXECUTION_INFO", "EXECUTION_RUN"],
		"EXECUTION_INFO": ["EXECUTION_INFO"],
		"WORKSPACE": ["WORKSPACE"],
	},
}

providers := {"p1": {"id": "p1"}}

tok := {
	"provider_id": "p1",
	"sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
	"scopes": ["WORKSPACE", "EXECUTION_INFO"],
	"workspaces": ["acme"],
	"ip_restrictions": [],
}

run_route := {"method": "POST", "path": "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions", "scopes": ["EXECUTION_RUN"]}

list_route := {"method": "GET", "path": "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions", "scopes": ["EXECUTION_INFO"]}

user_route := {"method": "GET", "path": "/user", "scopes": []}

req(route, vars, token) := {
	"method": route.method,
	"path": "/workspaces/acme/projects/web/pipelines/7/executions",
	"route": route,
	"vars": vars,
	"token": token,
	"client_ip": "203.0.113.7",
	"time": 1795000001,
}

acme := {"workspace": "acme", "project": "web", "pipeline": "7"}

decide(request) := d if {
	d := proxy.decision with input as request
		with data.sidecar.providers as providers
		with data.sidecar.scopes as scopes
}

test_no_token_is_401_wrong_authentication_data if {
	decide(req(list_route, acme, null)) == {"allow": false, "status": 401, "code": "unauthenticated", "message": "Wrong authentication data"}
}

test_token_of_a_removed_provider_is_401 if {
	d := decide(req(list_route, acme, object.union(tok, {"provider_id": "gone"})))
	d.status == 401
	d.message == "Wrong authentication data"
}

test_allowed_read if {
	decide(req(list_route, acme, tok)) == {"allow": true, "status": 200, "code": "allowed", "message": ""}
}

test_scope_one_level_too_low_gets_buddys_message if {
	d := decide(req(run_route, acme, tok))
	d.status == 403
	d.code == "insufficient_scopes"
	d.message == "Insufficient scopes. Your token has the following scopes: [WORKSPACE, EXECUTION_INFO]. This request requires the following scopes: EXECUTION_RUN"
}

test_higher_scope_covers_lower_route if {
	d := decide(req(list_route, acme, object.union(tok, {"scopes": ["EXECUTION_MANAGE"]})))
	d.allow
}

test_other_workspace_is_403 if {
	d := decide(req(list_route, object.union(acme, {"workspace": "globex"}), tok))
	d.status == 403
	d.code == "workspace_not_allowed"
	d.message == "Access to workspace \"globex\" is not allowed for this token. Allowed workspaces: [acme]"
}

test_token_for_all_workspaces_reaches_any if {
	d := decide(req(list_route, object.union(acme, {"workspace": "globex"}), object.union(tok, {"workspaces": null})))
	d.allow
}

test_route_without_workspace_variable_is_not_workspace_bound if {
	d := decide(req(user_route, {}, object.union(tok, {"scopes": []})))
	d.allow
}

test_ip_restriction_applies_on_every_use if {
	d := decide(req(list_route, acme, object.union(tok, {"ip_restrictions": ["10.0.0.0/8"]})))
	d.status == 403
	d.code == "ip_not_allowed"
	d.message == "Access from IP address 203.0.113.7 is not allowed for this token"
}

test_unknown_route_is_denied_by_default if {
	d := decide(object.union(req(list_route, {}, tok), {"route": null, "method": "GET", "path": "/secret"}))
	d.status == 403
	d.code == "route_not_allowed"
	d.message == "GET /secret is not in the sidecar's route table"
}

test_unknown_route_can_be_opened_to_any_valid_token if {
	d := proxy.decision with input as object.union(req(list_route, {}, tok), {"route": null})
		with data.sidecar.providers as providers
		with data.sidecar.settings as {"unknown_routes": "authenticated"}
	d.allow
}

test_authentication_is_checked_before_the_route if {
	d := decide(object.union(req(list_route, {}, null), {"route": null}))
	d.status == 401
}

# decision computes the common allowed case in one rule body; for every kind
# of request it must give exactly full_decision.
test_decision_equals_full_decision if {
	tokens := [
		null,
		tok,
		object.union(tok, {"provider_id": "gone"}),
		object.union(tok, {"scopes": ["WORKSPACE", "EXECUTION_MANAGE"]}),
		object.union(tok, {"scopes": []}),
		object.union(tok, {"workspaces": null}),
		object.union(tok, {"workspaces": ["other"]}),
		object.union(tok, {"ip_restrictions": ["203.0.113.0/24"]}),
		object.union(tok, {"ip_restrictions": ["198.51.100.0/24"]}),
	]
	routes := [null, list_route, run_route, user_route, {"method": "GET", "path": "/x", "scopes": ["UNKNOWN_SCOPE"]}]
	varss := [{}, acme, {"workspace": "other"}]
	every t in tokens {
		every r in routes {
			every v in varss {
				every mode in ["deny", "authenticated"] {
					fast := proxy.decision with input as object.union(req(list_route, v, t), {"route": r})
						with data.sidecar.providers as providers
						with data.sidecar.scopes as scopes
						with data.sidecar.settings.unknown_routes as mode
					full := proxy.full_decision with input as object.union(req(list_route, v, t), {"route": r})
						with data.sidecar.providers as providers
						with data.sidecar.scopes as scopes
						with data.sidecar.settings.unknown_routes as mode
					fast == full
				}
			}
		}
	}
}

# Without grants (a hand-built bundle), every request takes full_decision and
# the hierarchy still applies.
test_missing_grants_falls_back_to_the_hierarchy if {
	d := proxy.decision with input as req(list_route, acme, object.union(tok, {"scopes": ["WORKSPACE", "EXECUTION_MANAGE"]}))
		with data.sidecar.providers as providers
		with data.sidecar.scopes as object.remove(scopes, ["grants"])
	d.allow
}
