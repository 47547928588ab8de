package test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
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

// TestProviderNewMessages: provider new on a file that does not exist yet
// writes the schema line; its option errors do not speak of an invalid
// file; warnings carry "warning:" once.
func TestProviderNewMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "providers.yaml")
	_, errOut, code := runCLI(t, nil, "provider", "new", "--file", path, "--type", "other", "--name", "x", "--scopes", "WORKSPACE")
	if code == 0 || !strings.Contains(errOut, "the new provider is invalid: 1 error") || strings.Contains(errOut, "providers file") {
		t.Fatalf("status %d:\n%s", code, errOut)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("an invalid provider created the file: %v", err)
	}
	out, errOut, code := runCLI(t, nil, "provider", "new", "--file", path, "--type", "other", "--name", "x",
		"--issuer", "https://gitlab.example.com", "--scopes", "WORKSPACE", "--conditions", "sub exists")
	if code != 0 {
		t.Fatalf("status %d: %s", code, errOut)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "# yaml-language-server: $schema=") || !strings.Contains(string(data), strings.TrimSpace(out)) {
		t.Fatalf("new file:\n%s", data)
	}
	_, errOut, code = runCLI(t, nil, "provider", "validate", "--providers", path)
	if code != 0 || !strings.Contains(errOut, "providers.yaml:3:5: warning: providers[0].audience:") || strings.Count(errOut, "warning:") != 1 {
		t.Fatalf("status %d:\n%s", code, errOut)
	}
}

// TestExitStatuses: usage errors exit 2 with a pointer to --help, runtime
// errors 1; --help says so.
func TestExitStatuses(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"policy", "nope"}, 2, `unknown command "nope" for "oidc-sidecar policy"`},
		{[]string{"serve", "--nope"}, 2, "unknown flag: --nope"},
		{[]string{"policy", "eval", "--claims", "x.json"}, 2, `required flag(s) "provider" not set`},
		{[]string{"policy", "eval", "--provider", "x"}, 2, "give exactly one of --claims"},
		{[]string{"bundle", "inspect"}, 2, "accepts 1 arg(s)"},
		{[]string{"login", "--sidecar-url", "https://x", "--provider-id", "y"}, 2, `--provider-id "y" is not a UUID`},
		{[]string{"bundle", "inspect", "/nonexistent/b.tar.gz"}, 1, "no such file"},
		{[]string{"serve", "--config", "/nonexistent/sidecar.yaml"}, 1, "no such file"},
		{[]string{"provider", "validate", "--providers", "/nonexistent/p.yaml"}, 1, "no such file"},
	} {
		_, errOut, code := runCLI(t, nil, c.args...)
		if code != c.code || !strings.Contains(errOut, c.says) {
			t.Errorf("%v: status %d (want %d):\n%s", c.args, code, c.code, errOut)
		}
		if (code == 2) != strings.Contains(errOut, "--help' for usage.") {
			t.Errorf("%v: the pointer to --help:\n%s", c.args, errOut)
		}
	}
	out, _, _ := runCLI(t, nil, "--help")
	if !strings.Contains(out, "Exit status: 0 on success; 1 when the command fails") || !strings.Contains(out, "2 for a usage error") {
		t.Errorf("--help does not state the exit statuses:\n%s", out)
	}
}
