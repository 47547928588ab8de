# An additional guardrail: it joins the shipped ones in policies/guardrails.rego
# (same package) and applies to every exchange, whatever the provider.
package sidecar.guardrails

# Self-hosted runners may run code other than the workflow's (a persistent
# runner keeps state between jobs): their tokens are not exchanged.
deny contains {"code": "self_hosted_runner", "message": "tokens from self-hosted GitHub Actions runners are not exchanged"} if {
	input.claims.iss == "https://token.actions.githubusercontent.com"
	input.claims.runner_environment == "self-hosted"
}
