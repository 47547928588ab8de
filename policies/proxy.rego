# The proxy decision: may this request go to the upstream API?
#
# Input (see docs/policy.md, "The proxy input"):
#   method, path   the request, path already cleaned
#   route          the matched route {"method", "path", "scopes"}, or null when no route matched
#   vars           the route's path variables, e.g. {"workspace": "acme"}
#   token          the sidecar token's record {"provider_id", "scopes", "workspaces", "ip_restrictions", ...}, or null
#   client_ip      the caller's address
#   time           now, Unix seconds
#
# The first failing check decides, in this order: authentication, provider,
# IP address, route, scopes, workspace. Messages for 401 and the scope 403
# are Buddy's, word for word.
package sidecar.proxy

import data.sidecar.scope

token := input.token if input.token != null

route := input.route if input.route != null

# settings.unknown_routes: "deny" (default) refuses requests that match no
# route; "authenticated" forwards them for any valid token.
default unknown_routes := "deny"

unknown_routes := data.sidecar.settings.unknown_routes

# decision is full_decision, computed for the common case in one rule body
# (two: one for a token limited to workspaces, on a route of one of them;
# one for a token not limited to workspaces): a token without IP
# restrictions, of a configured provider, on a route whose scopes it holds
# (through data.sidecar.scopes.grants, the hierarchy precomputed when the
# bundle is built). Each check is stricter than its part of full_decision,
# so these branches allow only what full_decision allows (proxy_test.rego
# checks both against each other); everything else, every denial included,
# goes to full_decision. They exist because every rule OPA evaluates costs,
# and this runs on every proxied request (docs/benchmarks.md).
decision := {"allow": true, "status": 200, "code": "allowed", "message": ""} if {
	t := input.token
	r := input.route
	is_array(r.scopes)
	data.sidecar.providers[t.provider_id]
	count(t.ip_restrictions) == 0
	every need in r.scopes {
		some have in t.scopes
		need in data.sidecar.scopes.grants[have]
	}
	input.vars.workspace in t.workspaces
} else := {"allow": true, "status": 200, "code": "allowed", "message": ""} if {
	t := input.token
	r := input.route
	is_array(r.scopes)
	data.sidecar.providers[t.provider_id]
	count(t.ip_restrictions) == 0
	every need in r.scopes {
		some have in t.scopes
		need in data.sidecar.scopes.grants[have]
	}
	t.workspaces == null
} else := full_decision

# full_decision: the first failing check decides.
full_decision := deny(401, "unauthenticated", "Wrong authentication data") if {
	not token
} else := deny(401, "unknown_provider", "Wrong authentication data") if {
	# The provider that issued the token was removed from the configuration:
	# its tokens stop working while it is absent (re-adding the same id
	# revives unexpired ones; see docs/policy.md).
	not data.sidecar.providers[token.provider_id]
} else := deny(403, "ip_not_allowed", sprintf("Access from IP address %s is not allowed for this token", [input.client_ip])) if {
	not ip_allowed
} else := deny(403, "route_not_allowed", sprintf("%s %s is not in the sidecar's route table", [input.method, input.path])) if {
	not route
	unknown_routes != "authenticated"
} else := deny(403, "insufficient_scopes", insufficient_message) if {
	route
	count(missing_scopes) > 0
} else := deny(403, "workspace_not_allowed", sprintf("Access to workspace %q is not allowed for this token. Allowed workspaces: [%s]", [input.vars.workspace, concat(", ", token.workspaces)])) if {
	not workspace_allowed
} else := {"allow": true, "status": 200, "code": "allowed", "message": ""}

deny(status, code, message) := {"allow": false, "status": status, "code": code, "message": message}

ip_allowed if count(object.get(token, "ip_restrictions", [])) == 0

ip_allowed if {
	some cidr in token.ip_restrictions
	net.cidr_contains(cidr, input.client_ip)
}

missing_scopes := scope.missing(token.scopes, route.scopes)

# Buddy: "Insufficient scopes. Your token has the following scopes: [A, B].
# This request requires the following scopes: C"
insufficient_message := sprintf(
	"Insufficient scopes. Your token has the following scopes: [%s]. This request requires the following scopes: %s",
	[concat(", ", token.scopes), concat(", ", route.scopes)],
)

# A token limited to workspaces may only reach routes whose {workspace}
# variable names one of them. Routes without the variable are not
# workspace-bound (e.g. GET /user).
workspace_allowed if token.workspaces == null

workspace_allowed if not input.vars.workspace

workspace_allowed if input.vars.workspace in token.workspaces
