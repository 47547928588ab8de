# Guardrails: rules that apply to every exchange, whatever the provider.
# Add your own "deny contains reason if { ... }" rules here (or in other files
# with this package); a reason is a string or an object with a "message".
# See docs/policy.md, "Extension points".
package sidecar.guardrails

# pull_request_target runs a base-branch workflow with the secrets and
# permissions of the target repository while processing code from a fork:
# never exchange its tokens.
deny contains "GitHub Actions tokens from pull_request_target events are never exchanged" if {
	input.claims.iss == "https://token.actions.githubusercontent.com"
	input.claims.event_name == "pull_request_target"
}

# Example, commented out: refuse every pull_request event.
#
# deny contains "tokens from pull_request events are not exchanged" if {
# 	input.claims.event_name == "pull_request"
# }
