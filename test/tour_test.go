package test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTree copies the regular files under src to dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTourServeStep runs README.md's step 4 as written, from a directory
// holding a copy of examples/ and nothing else (no Redis anywhere):
//
//	bin/oidc-sidecar bundle build --providers examples/providers.yaml -o bundles/prod.tar.gz
//	BUDDY_TOKEN=... bin/oidc-sidecar serve --config examples/sidecar.yaml --bundle bundles/prod.tar.gz
//
// The sidecar must become ready (embedded store) and serve the bundle's
// revision; the only ports changed are the listeners (other tests run in
// parallel), through the documented environment overrides.
func TestTourServeStep(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{
		"bin/oidc-sidecar bundle build --providers examples/providers.yaml -o bundles/prod.tar.gz",
		"bin/oidc-sidecar serve --config examples/sidecar.yaml --bundle bundles/prod.tar.gz",
	} {
		if !strings.Contains(string(readme), step) {
			t.Fatalf("README.md's tour no longer says %q; update this test with it", step)
		}
	}
	dir := t.TempDir()
	copyTree(t, "../examples", filepath.Join(dir, "examples"))

	out, errOut, code := runCLIIn(t, dir, nil, "bundle", "build", "--providers", "examples/providers.yaml", "-o", "bundles/prod.tar.gz")
	if code != 0 {
		t.Fatalf("bundle build: %d\n%s%s", code, out, errOut)
	}
	mainAddr, adminAddr := freeAddr(t), freeAddr(t)
	s, err := launchSidecar(t, dir, mainAddr, adminAddr, map[string]string{
		"OIDC_SIDECAR_LISTEN": mainAddr, "OIDC_SIDECAR_ADMIN_LISTEN": adminAddr,
	}, "examples/sidecar.yaml --bundle bundles/prod.tar.gz",
		"serve", "--config", "examples/sidecar.yaml", "--bundle", "bundles/prod.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	status, body := s.readyz(t)
	rev, _ := body["revision"].(string)
	if status != http.StatusOK || rev == "" || !strings.Contains(out, "revision "+rev) {
		t.Fatalf("/readyz %d %v; bundle build said %q", status, body, out)
	}
	// An unauthenticated call reaches the proxy and gets Buddy's 401.
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/my-company/projects", ""), http.StatusUnauthorized)
	if s.Stop() != 0 {
		t.Fatalf("exit status %d; logs:\n%s", s.exitCode, s.logs.String())
	}
	logs := s.logs.String()
	if !strings.Contains(logs, `"msg":"no redis configured`) {
		t.Errorf("the embedded store's warning is missing:\n%s", logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a log line that is not JSON: %s", line)
		}
	}
}
