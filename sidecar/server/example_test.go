package server

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
)

// TestExampleBundle builds bundles/example as its README says (bundle build
// --providers ... --policies policies/ --policies bundles/example/policies/),
// checks that it compiles, that its Rego tests pass, and that the bundle
// file source serves the tarball.
func TestExampleBundle(t *testing.T) {
	ctx := context.Background()
	const root = "../../"
	providers := root + "bundles/example/providers.yaml"
	pols := []string{root + "policies", root + "bundles/example/policies"}
	b, _, err := policy.BuildFromFiles(ctx, policy.Files{Providers: providers, Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Providers) != 3 {
		t.Fatalf("%d providers", len(snap.Providers))
	}

	pf, err := provider.Load(providers)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sum, err := policy.RunTests(ctx, policy.TestOptions{Paths: pols, Providers: pf.Providers, Verbose: true, Out: &out})
	if err != nil || !sum.OK() {
		t.Fatalf("policy tests: %+v %v\n%s", sum, err, out.String())
	}
	if n := strings.Count(out.String(), "data.example_test."); n < 5 {
		t.Fatalf("the example's own tests did not run (%d):\n%s", n, out.String())
	}

	var tarball bytes.Buffer
	if err := policy.WriteBundle(&tarball, b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "example.tar.gz")
	writeAtomic(t, path, tarball.Bytes())
	res, err := (&bundleFileSource{path: path}).Load(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.bundle.Manifest.Revision != b.Manifest.Revision || res.version == "" {
		t.Fatalf("revision %q (want %q), version %q", res.bundle.Manifest.Revision, b.Manifest.Revision, res.version)
	}
	if _, err := policy.Compile(ctx, res.bundle); err != nil {
		t.Fatal(err)
	}
}
