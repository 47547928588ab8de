package test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// TestBundleBuildFile: bundle build writes a world-readable 0644 tarball
// (as opa build does) whatever the umask's effect on temporary files, and
// the same providers file named two ways gives identical bytes.
func TestBundleBuildFile(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs("../examples/providers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sums [][32]byte
	for i, p := range []string{"../examples/providers.yaml", abs} {
		out := filepath.Join(dir, "b"+string(rune('0'+i))+".tar.gz")
		if _, errOut, code := runCLI(t, nil, "bundle", "build", "--providers", p, "-o", out); code != 0 {
			t.Fatalf("bundle build: %d %s", code, errOut)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", out, st.Mode().Perm())
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha256.Sum256(data))
	}
	if sums[0] != sums[1] {
		t.Errorf("the same providers file named two ways gave different bundles")
	}
}
