package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "providers.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("providers.schema.json: %v", err)
	}
	return s
}

func path(m any, keys ...string) any {
	for _, k := range keys {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

func strList(t *testing.T, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("not a list: %#v", v)
	}
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = x.(string)
	}
	return out
}

// TestSchemaCurrent checks that docs/providers.schema.json is what Schema
// generates from the field table; -update (or go generate) rewrites it.
func TestSchemaCurrent(t *testing.T) {
	file := filepath.Join("..", "..", filepath.FromSlash(SchemaPath))
	if *update {
		if err := os.WriteFile(file, Schema(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Schema()) {
		t.Errorf("%s is not what the field table generates; run go generate ./sidecar/provider/ (or go test ./sidecar/provider/ -run TestSchemaCurrent -update)", SchemaPath)
	}
}

func containsAll(l, want []string) bool {
	for _, w := range want {
		if !slices.Contains(l, w) {
			return false
		}
	}
	return true
}

// compileSchema compiles docs/providers.schema.json with a JSON Schema
// validator (santhosh-tekuri/jsonschema, draft 2020-12).
func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("providers.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("providers.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// toJSON turns a value decoded from YAML into what the validator expects
// (numbers as float64 or json.Number, maps with string keys).
func toJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSchemaMatchesTypes checks that docs/providers.schema.json describes
// exactly the keys of Provider and the enums of the Go constants.
func TestSchemaMatchesTypes(t *testing.T) {
	s := loadSchema(t)
	if got := path(s, "$schema"); got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", got)
	}
	props, _ := path(s, "$defs", "provider", "properties").(map[string]any)
	var schemaKeys []string
	for k, v := range props {
		schemaKeys = append(schemaKeys, k)
		if d, _ := path(v, "description").(string); d == "" {
			t.Errorf("schema property %s has no description", k)
		}
	}
	sort.Strings(schemaKeys)
	goKeys := Keys()
	sort.Strings(goKeys)
	if !slices.Equal(schemaKeys, goKeys) {
		t.Errorf("schema provider properties = %v\nProvider yaml keys      = %v", schemaKeys, goKeys)
	}
	if got := strList(t, path(s, "$defs", "provider", "required")); !slices.Equal(got, []string{"id", "name", "type", "scopes"}) {
		t.Errorf("required = %v", got)
	}

	var types []string
	for _, ty := range Types() {
		types = append(types, string(ty))
	}
	if got := strList(t, path(props, "type", "enum")); !slices.Equal(got, types) {
		t.Errorf("type enum = %v, want %v", got, types)
	}
	var dd []string
	for _, d := range DenialDetails() {
		dd = append(dd, string(d))
	}
	if got := strList(t, path(props, "denial_detail", "enum")); !slices.Equal(got, dd) {
		t.Errorf("denial_detail enum = %v, want %v", got, dd)
	}
	if got := path(props, "denial_detail", "default"); got != string(DenialConditions) {
		t.Errorf("denial_detail default = %v", got)
	}
	if got := strList(t, path(s, "$defs", "scope", "enum")); !slices.Equal(got, scope.All()) {
		t.Errorf("scope enum = %v\nwant %v", got, scope.All())
	}
	var lts []string
	for _, d := range Lifetimes() {
		lts = append(lts, FormatLifetime(d))
	}
	if got := strList(t, path(props, "lifetime", "enum")); len(got) < len(lts) || !slices.Equal(got[:len(lts)], lts) && !containsAll(got, lts) {
		t.Errorf("lifetime enum = %v, want %v among them", got, lts)
	}
	for _, bad := range []string{"15m", "ten", "600"} {
		if slices.Contains(strList(t, path(props, "lifetime", "enum")), bad) {
			t.Errorf("lifetime enum has %q", bad)
		}
	}
	if got := path(props, "lifetime", "default"); got != FormatLifetime(DefaultLifetime) {
		t.Errorf("lifetime default = %v", got)
	}
	if got := path(s, "$defs", "provider", "allOf"); !strings.Contains(fmt.Sprint(got), GitHubIssuer) {
		t.Errorf("schema does not pin the github_actions issuer to %s", GitHubIssuer)
	}
	// The pattern for policy names is the loader's.
	if got := path(props, "policy", "pattern"); got != policyRE.String() {
		t.Errorf("policy pattern = %v, want %s", got, policyRE)
	}
	if got := path(props, "workspaces", "items", "pattern"); got != workspaceRE.String() {
		t.Errorf("workspaces pattern = %v, want %s", got, workspaceRE)
	}
}

// examples returns the files that must be valid, as name → content: the
// valid testdata files and every ```yaml block of docs/providers.md.
func examples(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join("testdata", "valid_*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "providers.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	n := 0
	for _, m := range re.FindAllSubmatch(doc, -1) {
		n++
		out[fmt.Sprintf("providers.md example %d", n)] = m[1]
	}
	if n < 4 {
		t.Errorf("docs/providers.md has %d yaml examples, want one per type and one with anchors", n)
	}
	return out
}

// TestExamplesValid loads every example with Parse (no errors) and checks it
// against the JSON schema.
func TestExamplesValid(t *testing.T) {
	s := compileSchema(t)
	for name, data := range examples(t) {
		if _, err := Parse(name, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := s.Validate(toJSON(t, v)); err != nil {
			t.Errorf("%s does not match the schema:\n%v", name, err)
		}
	}
}

// TestSchemaRejects makes sure the schema check is not vacuous.
func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	base := "providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: x\n    scopes: [WORKSPACE]\n"
	tests := map[string]string{
		"unknown key":      base + "    type: github_actions\n    lifetme: 1h\n",
		"bad type":         base + "    type: github\n",
		"unknown scope":    "providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: x\n    type: other\n    issuer: https://x\n    scopes: [WORKSPACES]\n",
		"circleci no org":  base + "    type: circleci\n",
		"other no issuer":  base + "    type: other\n",
		"gha with org":     base + "    type: github_actions\n    organization_id: 550e8400-e29b-41d4-a716-446655440000\n",
		"bad lifetime":     base + "    type: github_actions\n    lifetime: ten\n",
		"upper-case uuid":  "providers:\n  - id: 550E8400-E29B-41D4-A716-446655440000\n    name: x\n    type: github_actions\n    scopes: [WORKSPACE]\n",
		"unknown toplevel": base + "    type: github_actions\nsettings: {}\n",
		"bool as string":   base + "    type: github_actions\n    allow_token_reuse: \"yes\"\n",
		"null providers":   "providers:\n",
		"lifetime 15m":     base + "    type: github_actions\n    lifetime: 15m\n",
		"nil uuid":         "providers:\n  - id: 00000000-0000-0000-0000-000000000000\n    name: x\n    type: github_actions\n    scopes: [WORKSPACE]\n",
		"rego keyword":     base + "    type: github_actions\n    policy: not\n",
		"fractional age":   base + "    type: github_actions\n    max_token_age: 1500ms\n",
		"negative age":     base + "    type: github_actions\n    max_token_age: -5m\n",
		"zero lifetime":    base + "    type: github_actions\n    max_token_lifetime: 0s\n",
		"blank name":       "providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: \"\"\n    type: github_actions\n    scopes: [WORKSPACE]\n",
	}
	for name, src := range tests {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := s.Validate(toJSON(t, v)); err == nil {
			t.Errorf("%s: the schema accepts\n%s", name, src)
		}
	}
}

// TestDocsListEveryKey checks that the field table of docs/providers.md has
// a row for every key.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "providers.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(doc), "\n| `"+k+"` |") {
			t.Errorf("docs/providers.md has no table row for %s", k)
		}
	}
}

// schemaAccepts reports whether the schema accepts a providers file: a
// file that is not one YAML document cannot be.
func schemaAccepts(t *testing.T, s *jsonschema.Schema, data []byte) (bool, error) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		return false, err
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return false, fmt.Errorf("a second YAML document")
	}
	err := s.Validate(toJSON(t, v))
	return err == nil, err
}

// TestSchemaAgreesWithLoader runs every golden file, and one-key changes of
// a valid provider, through both the generated schema and Parse: they must
// agree on valid and invalid (docs/providers.schema.json enforces what the
// loader does).
func TestSchemaAgreesWithLoader(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, loadErr := Parse(f, data)
		ok, why := schemaAccepts(t, s, data)
		if ok != (loadErr == nil) {
			t.Errorf("%s: schema accepts = %v (%v), loader accepts = %v (%v)", f, ok, why, loadErr == nil, loadErr)
		}
	}
	base := "providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: x\n    type: github_actions\n    trust_conditions: repository_owner is \"o\"\n    scopes: [WORKSPACE]\n"
	for _, line := range []string{
		"", "lifetime: 15m", "lifetime: 90m", "lifetime: 1h30m", "lifetime: 600s", "lifetime: ten", "lifetime: 600",
		"max_token_age: 0s", "max_token_age: 5m", "max_token_age: 1500ms", "max_token_age: -5m", "max_token_age: 1h30m",
		"max_token_lifetime: 0s", "max_token_lifetime: 1h", "max_token_lifetime: forever",
		"denial_detail: generic", "denial_detail: all", "policy: my_policy", "policy: not", "policy: Bad",
		"workspaces: [my-company]", `workspaces: ["*"]`, "workspaces: []", "scopes2: x",
		"allow_token_reuse: true", `allow_token_reuse: "yes"`, "ip_restrictions: [10.0.0.0/8]", "ip_restrictions: [x]",
		"organization_id: 9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", "issuer: https://token.actions.githubusercontent.com",
		"issuer: https://evil.example.com", "audience: Buddy",
	} {
		src := base
		if line != "" {
			src += "    " + line + "\n"
		}
		_, loadErr := Parse("p.yaml", []byte(src))
		ok, why := schemaAccepts(t, s, []byte(src))
		if ok != (loadErr == nil) {
			t.Errorf("%q: schema accepts = %v (%v), loader accepts = %v (%v)", line, ok, why, loadErr == nil, loadErr)
		}
	}
}
