package policy

import (
	"context"
	"fmt"
	"os"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

// Files names the files a bundle is built from: what `serve` (without a
// bundle), `bundle build`, `policy test` and `policy eval` read.
type Files struct {
	Providers string   // providers.yaml; "" = no providers
	Policies  []string // Rego files or directories; nil = the embedded policies
	Routes    string   // route table CSV; "" = Buddy's
	Settings  Settings
	Revision  string // "" = a content hash
}

// Load reads the files into Sources. warnings are the providers file's
// warnings, one line each; they are returned with an error too when the
// providers file loaded and a later file did not.
func (f Files) Load() (src Sources, warnings []string, err error) {
	src = Sources{Settings: f.Settings, Revision: f.Revision}
	if f.Providers != "" {
		pf, err := provider.Load(f.Providers)
		if err != nil {
			return Sources{}, nil, err
		}
		src.Providers = pf.Providers
		for _, w := range pf.Warnings {
			warnings = append(warnings, w.String())
		}
	}
	if len(f.Policies) > 0 {
		if src.Policies, err = LoadPolicies(f.Policies, false); err != nil {
			return Sources{}, warnings, err
		}
	}
	if f.Routes != "" {
		if src.Routes, err = routes.Load(f.Routes, scope.Known); err != nil {
			return Sources{}, warnings, err
		}
	}
	return src, warnings, nil
}

// BuildFromFiles loads the files and builds their bundle (Load, then Build).
func BuildFromFiles(ctx context.Context, f Files) (b *bundle.Bundle, warnings []string, err error) {
	src, warnings, err := f.Load()
	if err != nil {
		return nil, warnings, err
	}
	b, err = Build(ctx, src)
	return b, warnings, err
}

// CompileFiles loads the files, builds their bundle and compiles it.
func CompileFiles(ctx context.Context, f Files) (s *Snapshot, warnings []string, err error) {
	b, warnings, err := BuildFromFiles(ctx, f)
	if err != nil {
		return nil, warnings, err
	}
	s, err = Compile(ctx, b)
	return s, warnings, err
}

// ReadClaimsFile is ReadClaims on a file; errors name the file.
func ReadClaimsFile(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	claims, err := ReadClaims(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return claims, nil
}
