package provider

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

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
	anyOf, _ := path(props, "lifetime", "anyOf").([]any)
	if len(anyOf) == 0 || !slices.Equal(strList(t, path(anyOf[0], "enum")), lts) {
		t.Errorf("lifetime enum = %v, want %v", anyOf, lts)
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
	s := loadSchema(t)
	for name, data := range examples(t) {
		if _, err := Parse(name, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if errs := validate(s, s, v, "$"); len(errs) > 0 {
			t.Errorf("%s does not match the schema:\n%s", name, strings.Join(errs, "\n"))
		}
	}
}

// TestSchemaRejects makes sure the schema check is not vacuous.
func TestSchemaRejects(t *testing.T) {
	s := loadSchema(t)
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
		"no providers":     "providers: []\n",
	}
	for name, src := range tests {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if errs := validate(s, s, v, "$"); len(errs) == 0 {
			t.Errorf("%s: the schema accepts\n%s", name, src)
		}
	}
}

// validate is a small JSON Schema (2020-12) checker for the keywords
// providers.schema.json uses. It returns the problems found.
func validate(root, schema any, v any, at string) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return nil // true schema
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := s["$ref"].(string); ok {
		target := root
		for _, k := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			target = path(target, k)
		}
		if target == nil {
			fail("unresolved $ref %s", ref)
		}
		errs = append(errs, validate(root, target, v, at)...)
	}
	if ty, ok := s["type"].(string); ok {
		okType := false
		switch ty {
		case "object":
			_, okType = v.(map[string]any)
		case "array":
			_, okType = v.([]any)
		case "string":
			_, okType = v.(string)
		case "boolean":
			_, okType = v.(bool)
		default:
			fail("validator does not know type %s", ty)
		}
		if !okType {
			fail("want %s, got %#v", ty, v)
			return errs
		}
	}
	if e, ok := s["enum"].([]any); ok && !slices.Contains(e, v) {
		fail("%#v not in enum", v)
	}
	if c, ok := s["const"]; ok && c != v {
		fail("%#v is not %#v", v, c)
	}
	if str, ok := v.(string); ok {
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			fail("%q does not match %s", str, p)
		}
		if n, ok := s["minLength"].(float64); ok && len([]rune(str)) < int(n) {
			fail("shorter than %v", n)
		}
		if n, ok := s["maxLength"].(float64); ok && len([]rune(str)) > int(n) {
			fail("longer than %v", n)
		}
	}
	if l, ok := v.([]any); ok {
		if n, ok := s["minItems"].(float64); ok && len(l) < int(n) {
			fail("fewer than %v items", n)
		}
		if items, ok := s["items"]; ok {
			for i, x := range l {
				errs = append(errs, validate(root, items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	if m, ok := v.(map[string]any); ok {
		props, _ := s["properties"].(map[string]any)
		pats, _ := s["patternProperties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := m[r.(string)]; !ok {
					fail("missing %s", r)
				}
			}
		}
		for k, x := range m {
			matched := false
			if ps, ok := props[k]; ok {
				matched = true
				errs = append(errs, validate(root, ps, x, at+"."+k)...)
			}
			for p, ps := range pats {
				if regexp.MustCompile(p).MatchString(k) {
					matched = true
					errs = append(errs, validate(root, ps, x, at+"."+k)...)
				}
			}
			if !matched && s["additionalProperties"] == false {
				fail("unknown key %s", k)
			}
		}
	}
	if l, ok := s["allOf"].([]any); ok {
		for _, sub := range l {
			errs = append(errs, validate(root, sub, v, at)...)
		}
	}
	if l, ok := s["anyOf"].([]any); ok {
		matched := false
		for _, sub := range l {
			if len(validate(root, sub, v, at)) == 0 {
				matched = true
			}
		}
		if !matched {
			fail("matches none of anyOf")
		}
	}
	if n, ok := s["not"]; ok && len(validate(root, n, v, at)) == 0 {
		fail("matches a schema it must not (not: %v)", n)
	}
	if cond, ok := s["if"]; ok && len(validate(root, cond, v, at)) == 0 {
		if then, ok := s["then"]; ok {
			errs = append(errs, validate(root, then, v, at)...)
		}
	}
	return errs
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
