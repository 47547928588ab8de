# Tests of the example bundle against its real providers. Run them with the
# shipped policies (which hold the claim fixtures in testdata/):
#   oidc-sidecar policy test -v --providers bundles/example/providers.yaml policies/ bundles/example/policies/
package example_test

import data.sidecar.exchange

main_id := "550e8400-e29b-41d4-a716-446655440000"

deploy_id := "3f2b8c1d-6e4a-4f7b-9c2d-8a1e5b7f0c93"

req(id, claims) := {"provider_id": id, "claims": claims, "client_ip": "203.0.113.7", "time": 1795000001}

test_push_to_main_runs_pipelines if {
	d := exchange.decision with input as req(main_id, data.testdata.claims.github_push_main)
	d.allow
	d.scopes == ["WORKSPACE", "EXECUTION_RUN"]
	d.workspaces == ["my-company"]
}

test_pull_request_is_denied_by_the_ref_condition if {
	d := exchange.decision with input as req(main_id, data.testdata.claims.github_pull_request)
	not d.allow
	some r in d.reasons
	r.code == "condition_failed"
	r.claim == "ref"
}

test_production_environment_deploys if {
	d := exchange.decision with input as req(deploy_id, data.testdata.claims.github_environment_deploy)
	d.allow
	d.lifetime_seconds == 1800
}

test_deploy_outside_the_environment_is_denied_by_the_module if {
	d := exchange.decision with input as req(deploy_id, data.testdata.claims.github_push_main)
	not d.allow
	some r in d.reasons
	r.code == "custom_policy"
	contains(r.message, "add `environment: production`")
}

test_self_hosted_runners_are_refused if {
	claims := object.union(data.testdata.claims.github_push_main, {"runner_environment": "self-hosted"})
	d := exchange.decision with input as req(main_id, claims)
	not d.allow
	some r in d.reasons
	r.code == "self_hosted_runner"
}
