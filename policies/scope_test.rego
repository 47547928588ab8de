package sidecar.scope_test

import data.sidecar.scope

implies := {
	"EXECUTION_MANAGE": ["EXECUTION_RUN"],
	"EXECUTION_RUN": ["EXECUTION_INFO"],
	"EXECUTION_INFO": [],
	"MANAGE_EMAILS": ["USER_EMAIL"],
	"USER_EMAIL": [],
	"WORKSPACE": [],
}

test_closure_is_transitive if {
	scope.closure(["EXECUTION_MANAGE"]) == {"EXECUTION_MANAGE", "EXECUTION_RUN", "EXECUTION_INFO"} with data.sidecar.scopes.implies as implies
}

test_lower_scope_does_not_cover_higher if {
	not scope.covers(["EXECUTION_INFO"], "EXECUTION_RUN") with data.sidecar.scopes.implies as implies
}

test_missing_lists_uncovered_scopes if {
	scope.missing(["EXECUTION_RUN", "USER_EMAIL"], ["EXECUTION_INFO", "MANAGE_EMAILS", "WORKSPACE"]) == {"MANAGE_EMAILS", "WORKSPACE"} with data.sidecar.scopes.implies as implies
}
