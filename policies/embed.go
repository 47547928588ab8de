// Package policies embeds the hand-written Rego that ships with
// oidc-sidecar: the exchange and proxy entry points, the scope hierarchy
// logic, the default guardrails, their unit tests and the claim fixtures
// the tests use. It is the policy set `serve` uses when the configuration
// names none.
package policies

import "embed"

// FS holds every .rego file of this directory (tests included) and testdata/.
//
//go:embed *.rego testdata
var FS embed.FS
