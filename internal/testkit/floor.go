package testkit

import (
	"context"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// FloorModule is the module of performance-floors.md B.2: one provider's
// trust condition as plain Rego, the least a decision can evaluate.
const FloorModule = "package providers.p0\n\ndefault allow := false\n\nallow if {\n\tinput.claims.repository_owner == \"octo-org\"\n\tinput.claims.ref == \"refs/heads/main\"\n}\n"

// FloorQuery prepares data.providers.p0.allow over FloorModule: the
// prepared-query floor the benchmarks compare decisions with. Evaluate it
// with rego.EvalInput(map[string]any{"claims": claims, "provider": "p0"})
// (the input converted on every evaluation, as B.2 measured it).
func FloorQuery(ctx context.Context) (rego.PreparedEvalQuery, error) {
	return rego.New(rego.Query("data.providers.p0.allow"), rego.Module("p0.rego", FloorModule), rego.Store(inmem.New())).PrepareForEval(ctx)
}
