package test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestFormatJSON: provider validate, bundle inspect and policy test speak
// JSON with --format json (policy test like opa test --format json: an
// array of results with package, name, location, and fail/error when so).
func TestFormatJSON(t *testing.T) {
	out, errOut, code := runCLI(t, nil, "provider", "validate", "--providers", "../examples/providers.yaml", "--format", "json")
	var v struct {
		Valid       bool `json:"valid"`
		Providers   int  `json:"providers"`
		Errors      int  `json:"errors"`
		Diagnostics []struct {
			Line     int    `json:"line"`
			Column   int    `json:"column"`
			Field    string `json:"field"`
			Message  string `json:"message"`
			Severity string `json:"severity"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || !v.Valid || v.Providers != 4 || len(v.Diagnostics) != 0 {
		t.Fatalf("validate: %d %v %+v\n%s%s", code, err, v, out, errOut)
	}
	out, _, code = runCLI(t, nil, "provider", "validate", "--providers", "../sidecar/provider/testdata/invalid_many.yaml", "--format", "json")
	v.Valid = true
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 1 || v.Valid || v.Errors == 0 || v.Diagnostics[0].Line == 0 ||
		v.Diagnostics[0].Field == "" || v.Diagnostics[0].Severity != "error" {
		t.Fatalf("validate (invalid): %d %v %+v", code, err, v)
	}

	bundle := t.TempDir() + "/b.tar.gz"
	if _, errOut, code := runCLI(t, nil, "bundle", "build", "--providers", "../examples/providers.yaml", "-o", bundle); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code = runCLI(t, nil, "bundle", "inspect", bundle, "--format", "json")
	var b struct {
		Revision  string           `json:"revision"`
		Roots     []string         `json:"roots"`
		Modules   []string         `json:"modules"`
		Providers []map[string]any `json:"providers"`
		Routes    int              `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &b); err != nil || code != 0 || !strings.HasPrefix(b.Revision, "sha256-") ||
		len(b.Roots) != 1 || len(b.Modules) == 0 || len(b.Providers) != 4 || b.Providers[0]["id"] == "" || b.Routes < 10 {
		t.Fatalf("inspect: %d %v %+v\n%s", code, err, b, errOut)
	}

	out, errOut, code = runCLI(t, nil, "policy", "test", "--format", "json", "--providers", "../bundles/example/providers.yaml",
		"../policies", "../bundles/example/policies")
	var results []struct {
		Package  string `json:"package"`
		Name     string `json:"name"`
		Location struct {
			File string `json:"file"`
			Row  int    `json:"row"`
		} `json:"location"`
		Fail  bool `json:"fail"`
		Error any  `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != 0 || len(results) < 20 {
		t.Fatalf("policy test: %d %v (%d results)\n%s", code, err, len(results), errOut)
	}
	for _, r := range results {
		if !strings.HasPrefix(r.Package, "data.") || !strings.HasPrefix(r.Name, "test_") || r.Location.Row == 0 || r.Fail || r.Error != nil {
			t.Errorf("result %+v", r)
		}
	}
	if _, errOut, code := runCLI(t, nil, "bundle", "inspect", bundle, "--format", "yaml"); code != 2 || !strings.Contains(errOut, `--format "yaml": use pretty or json`) {
		t.Errorf("--format yaml: %d %s", code, errOut)
	}
}

// TestMarksFollowTheLocale: ✓/✗ in a UTF-8 locale, ASCII otherwise; no
// colour codes ever (NO_COLOR holds whatever it is set to).
func TestMarksFollowTheLocale(t *testing.T) {
	args := []string{"policy", "eval", "--providers", "../examples/providers.yaml", "--provider", "550e8400-e29b-41d4-a716-446655440000",
		"--claims", "../policies/testdata/claims/github_pull_request/data.json"}
	for _, c := range []struct {
		env  map[string]string
		mark string
	}{
		{map[string]string{"LANG": "en_US.UTF-8"}, `✗ ref is "refs/heads/main"`},
		{map[string]string{"LANG": "C", "NO_COLOR": "1"}, `[x] ref is "refs/heads/main"`},
		{map[string]string{}, `[x] ref is "refs/heads/main"`},
	} {
		out, errOut, code := runCLI(t, c.env, args...)
		if code != 3 || !strings.Contains(out, c.mark) {
			t.Errorf("%v: status %d, want 3 and %q:\n%s%s", c.env, code, c.mark, out, errOut)
		}
		if strings.Contains(out+errOut, "\x1b[") {
			t.Errorf("%v: colour codes in the output", c.env)
		}
		if c.env["LANG"] != "en_US.UTF-8" && strings.ContainsAny(out, "✓✗") {
			t.Errorf("%v: non-ASCII marks:\n%s", c.env, out)
		}
	}
}

// TestCompletionOfFlagValues: shell completion (cobra's __complete, which
// the scripts of `oidc-sidecar completion` call) completes --type, the last
// item of --scopes, and --provider from the providers file.
func TestCompletionOfFlagValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"provider", "new", "--type", ""}, []string{"github_actions", "circleci", "other"}},
		{[]string{"provider", "new", "--scopes", "WORKSPACE,EXECUTION_R"}, []string{"WORKSPACE,EXECUTION_RUN"}},
		{[]string{"policy", "eval", "--providers", "../examples/providers.yaml", "--provider", "9b"}, []string{"9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f\tCircleCI - octo-repo deploy"}},
		{[]string{"policy", "eval", "--scope", "EXECUTION_"}, []string{"EXECUTION_INFO", "EXECUTION_MANAGE", "EXECUTION_RUN"}},
	} {
		out, errOut, code := runCLI(t, nil, append([]string{"__complete"}, c.args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := lines[:len(lines)-1] // the last line is the directive
		if code != 0 || strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%v: %d\n%s\nwant\n%s\n%s", c.args, code, strings.Join(got, "\n"), strings.Join(c.want, "\n"), errOut)
		}
	}
}
