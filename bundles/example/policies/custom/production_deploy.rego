# A provider's own module: providers.yaml names it with
# `policy: production_deploy`. The exchange needs allow == true here AND the
# provider's trust conditions; every deny reason is reported on a denial.
package sidecar.custom.production_deploy

default allow := false

allow if {
	input.claims.environment == "production"
	input.claims.ref == "refs/heads/main"
	input.claims.event_name != "pull_request"
}

deny contains "deployments must run in the GitHub environment \"production\"" if {
	input.claims.environment != "production"
}

deny contains "the production environment is unset for this job; add `environment: production` to the deploy job" if {
	not input.claims.environment
}

deny contains sprintf("production deployments run from refs/heads/main only, not %s", [input.claims.ref]) if {
	input.claims.ref != "refs/heads/main"
}

deny contains "pull requests never deploy to production" if {
	input.claims.event_name == "pull_request"
}
