package test

import (
	"encoding/base64"
	"encoding/json"
	"os"
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

// TestPolicyEvalSaysWhatItIgnores: policy eval --token says beside the
// decision when the token's issuer or audience is not the provider's (the
// exchange would refuse it before the policy); a boolean condition is
// echoed as written (is false, not is "false"); --json prints the decision
// document as the engine returns it ("reasons": [] on an allow, every field
// of a reason).
func TestPolicyEvalSaysWhatItIgnores(t *testing.T) {
	const gha = "550e8400-e29b-41d4-a716-446655440000"
	claims := map[string]any{}
	data, err := os.ReadFile("../policies/testdata/claims/github_push_main/data.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatal(err)
	}
	claims["iss"], claims["aud"] = "https://evil.example.com", "sts.amazonaws.com"
	payload, _ := json.Marshal(claims)
	b64 := base64.RawURLEncoding.EncodeToString
	jwt := b64([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + b64(payload) + "." + b64([]byte("not-a-signature"))
	_, errOut, _ := runCLI(t, nil, "policy", "eval", "--providers", "../examples/providers.yaml", "--provider", gha, "--token", jwt, "--ip", "203.0.113.7")
	for _, want := range []string{
		`note: the token's issuer "https://evil.example.com" is not this provider's (https://token.actions.githubusercontent.com)`,
		`note: the token's audience ["sts.amazonaws.com"] does not include this provider's ("Buddy")`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing %q:\n%s", want, errOut)
		}
	}

	dir := t.TempDir()
	writeFile(t, dir+"/p.yaml", `providers:
  - id: 9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f
    name: c
    type: circleci
    organization_id: 4f5e9a52-7c1d-4c8e-9a3b-2b6f0d1e8c77
    trust_conditions: 'oidc.circleci.com/ssh-rerun is false'
    scopes: [WORKSPACE]
`)
	writeFile(t, dir+"/c.json", `{"oidc.circleci.com/ssh-rerun": true}`)
	out, _, code := runCLI(t, map[string]string{"LANG": "C.UTF-8"}, "policy", "eval", "--providers", dir+"/p.yaml", "--provider", "9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f", "--claims", dir+"/c.json")
	if code != 3 || !strings.Contains(out, "✗ oidc.circleci.com/ssh-rerun is false\n") {
		t.Errorf("status %d:\n%s", code, out)
	}
	out, _, code = runCLI(t, nil, "policy", "eval", "--providers", dir+"/p.yaml", "--provider", "9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f", "--claims", dir+"/c.json", "--json")
	var deny struct {
		Reasons []map[string]any `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(out), &deny); err != nil || code != 3 || len(deny.Reasons) != 1 {
		t.Fatalf("%d %v\n%s", code, err, out)
	}
	for _, k := range []string{"missing", "actual", "expected", "claim", "operator", "condition", "message", "code"} {
		if _, ok := deny.Reasons[0][k]; !ok {
			t.Errorf("the reason lacks %q: %v", k, deny.Reasons[0])
		}
	}
	out, _, code = runCLI(t, nil, "policy", "eval", "--providers", "../examples/providers.yaml", "--provider", gha,
		"--claims", "../policies/testdata/claims/github_push_main/data.json", "--ip", "203.0.113.7", "--json")
	if code != 0 || !strings.Contains(out, `"reasons": [],`) || strings.Contains(out, "null,\n  \"scopes\"") {
		t.Errorf("allow: %d\n%s", code, out)
	}
}

// TestProviderValidatePositional: `provider validate FILE` works as
// `--providers FILE` does (provider new takes --file, so users try the
// argument); naming the file both ways is a usage error.
func TestProviderValidatePositional(t *testing.T) {
	out, errOut, code := runCLI(t, nil, "provider", "validate", "../examples/providers.yaml")
	if code != 0 || !strings.Contains(out, "../examples/providers.yaml:") || !strings.Contains(out, "valid") {
		t.Fatalf("validate FILE: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCLI(t, nil, "provider", "validate", "../sidecar/provider/testdata/invalid_many.yaml")
	if code != 1 || !strings.Contains(errOut, "invalid_many.yaml:") {
		t.Fatalf("validate an invalid FILE: exit %d, want 1\n%s", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "provider", "validate", "a.yaml", "--providers", "b.yaml")
	if code != 2 || !strings.Contains(errOut, "name the providers file once") {
		t.Fatalf("both: exit %d, want 2\n%s", code, errOut)
	}
}
