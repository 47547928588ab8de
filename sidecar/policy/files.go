package policy

import (
	"context"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

// BuildFromFiles builds a bundle from a providers file, policy paths (nil:
// the embedded policies), a route table CSV ("": Buddy's) and settings.
// revision "" means a content hash. It is what `serve` and `bundle build` do.
func BuildFromFiles(ctx context.Context, providersPath string, policyPaths []string, routesPath string, settings Settings, revision string) (*bundle.Bundle, error) {
	pf, err := provider.Load(providersPath)
	if err != nil {
		return nil, err
	}
	var pols []File
	if len(policyPaths) > 0 {
		if pols, err = LoadPolicies(policyPaths, false); err != nil {
			return nil, err
		}
	}
	var rts []routes.Route
	if routesPath != "" {
		if rts, err = routes.Load(routesPath, scope.Known); err != nil {
			return nil, err
		}
	}
	return Build(ctx, Sources{Providers: pf.Providers, Policies: pols, Routes: rts, Settings: settings, Revision: revision})
}
