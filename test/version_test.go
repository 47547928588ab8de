package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestVersionCommand: `version --json` is one JSON object; --version and
// `version` print the same line. Built from a clone (a .git directory; the
// go command does not read a worktree's .git file), the binary knows its
// commit without any -ldflags stamp.
func TestVersionCommand(t *testing.T) {
	out, errOut, code := runCLI(t, nil, "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: %d %s", code, errOut)
	}
	var info struct {
		Version   string `json:"version"`
		Revision  string `json:"revision"`
		Modified  *bool  `json:"modified"`
		GoVersion string `json:"go_version"`
		Platform  string `json:"platform"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if info.Version == "" || info.Modified == nil || info.GoVersion != runtime.Version() || info.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("%+v", info)
	}
	line, _, _ := runCLI(t, nil, "version")
	flag, _, _ := runCLI(t, nil, "--version")
	if line != flag || !strings.HasPrefix(line, "oidc-sidecar "+info.Version+" (") {
		t.Fatalf("version %q, --version %q", line, flag)
	}
	// The toolchain records the commit only when building in a git
	// checkout (not a worktree) without -buildvcs=false (which `go env -w`
	// may set, so ask go env rather than the environment).
	goflags, _ := exec.Command("go", "env", "GOFLAGS").Output()
	if st, err := os.Stat("../.git"); err == nil && st.IsDir() && !strings.Contains(string(goflags), "-buildvcs=false") {
		head, err := exec.Command("git", "-C", "..", "rev-parse", "HEAD").Output()
		if err == nil && info.Revision != strings.TrimSpace(string(head)) {
			t.Fatalf("revision %q, HEAD %s", info.Revision, head)
		}
	}
}
