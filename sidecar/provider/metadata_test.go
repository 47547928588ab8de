package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func validProviders(t *testing.T) []*Provider {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "valid_*.yaml"))
	var out []*Provider
	for _, path := range files {
		f, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.Providers...)
	}
	if len(out) < 5 {
		t.Fatalf("only %d valid providers in testdata", len(out))
	}
	return out
}

func TestMetadataShape(t *testing.T) {
	for _, p := range validProviders(t) {
		m := p.Metadata()
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := MetadataKeys()
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Fatalf("keys = %v, want %v", keys, want)
		}
		// Only the plain types OPA converts directly: no float64, no typed
		// slices, no nil slices that would be null by accident.
		for k, v := range m {
			switch x := v.(type) {
			case string, bool, int:
			case []any:
				for _, e := range x {
					if _, ok := e.(string); !ok {
						t.Errorf("%s: element %#v is %T", k, e, e)
					}
				}
			case nil:
				if k != "workspaces" {
					t.Errorf("%s is nil", k)
				}
			default:
				t.Errorf("%s has type %T", k, v)
			}
		}
		if p.Workspaces == nil && m["workspaces"] != nil {
			t.Errorf("workspaces = %#v, want nil", m["workspaces"])
		}
		if ips, ok := m["ip_restrictions"].([]any); !ok || ips == nil {
			t.Errorf("ip_restrictions = %#v, want a non-nil list", m["ip_restrictions"])
		}
	}
}

// TestMetadataExample checks the document of docs/architecture.md.
func TestMetadataExample(t *testing.T) {
	src := `providers:
  - id: 550e8400-e29b-41d4-a716-446655440000
    name: GHA - octo-repo:deploy
    type: github_actions
    trust_conditions: 'repository_owner is "octo-org" and ref is "refs/heads/main"'
    ip_restrictions: [203.0.113.0/24]
    workspaces: [my-company]
    scopes: [WORKSPACE, EXECUTION_RUN]
`
	f, err := Parse("providers.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(f.Providers[0].Metadata())
	want := `{"allow_token_reuse":false,"audience":"Buddy","denial_detail":"conditions","has_conditions":true,` +
		`"id":"550e8400-e29b-41d4-a716-446655440000","ip_restrictions":["203.0.113.0/24"],` +
		`"issuer":"https://token.actions.githubusercontent.com","lifetime_seconds":600,"max_token_age_seconds":0,` +
		`"max_token_lifetime_seconds":86400,` +
		`"name":"GHA - octo-repo:deploy","policy":"","scopes":["WORKSPACE","EXECUTION_RUN"],"source":"providers.yaml:2",` +
		`"trust_conditions":"repository_owner is \"octo-org\" and ref is \"refs/heads/main\"","type":"github_actions",` +
		`"workspaces":["my-company"]}`
	if string(got) != want {
		t.Errorf("metadata\n got %s\nwant %s", got, want)
	}
}

// TestMetadataRoundTrip proves Metadata → FromMetadata → Metadata is the
// identity, for the Go values and after a JSON round trip (as from a bundle),
// with numbers decoded as float64 and as json.Number.
func TestMetadataRoundTrip(t *testing.T) {
	for _, p := range validProviders(t) {
		m := p.Metadata()
		q, err := FromMetadata(m)
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if got := q.Metadata(); !reflect.DeepEqual(got, m) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", p.ID, got, m)
		}
		if q.Type == CircleCI && q.OrganizationID != p.OrganizationID {
			t.Errorf("%s: organization_id %q, want %q", p.ID, q.OrganizationID, p.OrganizationID)
		}
		if !slices.Equal(q.IPRestrictions, p.IPRestrictions) || q.Lifetime != p.Lifetime || q.MaxTokenAge != p.MaxTokenAge || q.Source.String() != p.Source.Base() {
			t.Errorf("%s: fields differ: %+v vs %+v", p.ID, q, p)
		}
		if (q.Conditions == nil) != (p.Conditions == nil) || (q.Conditions != nil && !q.Conditions.Equal(p.Conditions)) {
			t.Errorf("%s: conditions differ", p.ID)
		}

		b, _ := json.Marshal(m)
		for _, useNumber := range []bool{false, true} {
			dec := json.NewDecoder(bytes.NewReader(b))
			if useNumber {
				dec.UseNumber()
			}
			var fromJSON map[string]any
			if err := dec.Decode(&fromJSON); err != nil {
				t.Fatal(err)
			}
			q, err := FromMetadata(fromJSON)
			if err != nil {
				t.Fatalf("%s (json, UseNumber=%v): %v", p.ID, useNumber, err)
			}
			if got := q.Metadata(); !reflect.DeepEqual(got, m) {
				t.Errorf("%s: JSON round trip (UseNumber=%v)\n got %#v\nwant %#v", p.ID, useNumber, got, m)
			}
		}
	}
}

func TestFromMetadataErrors(t *testing.T) {
	base := func() map[string]any {
		f, err := Load(filepath.Join("testdata", "valid_github.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return f.Providers[0].Metadata()
	}
	circle := func() map[string]any {
		f, err := Load(filepath.Join("testdata", "valid_circleci.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return f.Providers[0].Metadata()
	}
	tests := []struct {
		name   string
		doc    map[string]any
		change func(m map[string]any)
		want   string
	}{
		{"missing key", base(), func(m map[string]any) { delete(m, "scopes") }, "scopes: missing"},
		{"unknown key", base(), func(m map[string]any) { m["lifetime"] = "10m" }, "lifetime: unknown key"},
		{"bad id", base(), func(m map[string]any) { m["id"] = "nope" }, `id: "nope" is not a UUID`},
		{"bad type", base(), func(m map[string]any) { m["type"] = "gitlab" }, `type: unknown type "gitlab"`},
		{"lifetime not preset", base(), func(m map[string]any) { m["lifetime_seconds"] = 900 }, `lifetime_seconds: "15m" is not a Buddy lifetime preset`},
		{"lifetime fraction", base(), func(m map[string]any) { m["lifetime_seconds"] = 600.5 }, "lifetime_seconds: must be a whole number of seconds, found 600.5"},
		{"lifetime string", base(), func(m map[string]any) { m["lifetime_seconds"] = "600" }, "lifetime_seconds: must be a whole number of seconds"},
		{"huge number", base(), func(m map[string]any) { m["max_token_age_seconds"] = json.Number("99999999999999999999") }, "max_token_age_seconds: must be a whole number"},
		{"scope", base(), func(m map[string]any) { m["scopes"] = []any{"WORKSPACE", "NOPE"} }, `scopes[1]: unknown scope "NOPE"`},
		{"scope type", base(), func(m map[string]any) { m["scopes"] = []any{1} }, "scopes[0]: must be a string, found int"},
		{"scopes empty", base(), func(m map[string]any) { m["scopes"] = []any{} }, "scopes: empty"},
		{"scopes null", base(), func(m map[string]any) { m["scopes"] = nil }, "scopes: must be a list of strings"},
		{"workspaces empty", base(), func(m map[string]any) { m["workspaces"] = []any{} }, "workspaces: an empty list allows no workspace"},
		{"ip not canonical", base(), func(m map[string]any) { m["ip_restrictions"] = []any{"10.1.2.3/8"} }, `ip_restrictions[0]: "10.1.2.3/8" is not in canonical form 10.0.0.0/8`},
		{"ip bad", base(), func(m map[string]any) { m["ip_restrictions"] = []any{"x"} }, `ip_restrictions[0]: "x" is not an IP address`},
		{"has_conditions lies", base(), func(m map[string]any) { m["has_conditions"] = false }, "has_conditions: is false, but trust_conditions has 2 condition(s)"},
		{"conditions syntax", base(), func(m map[string]any) { m["trust_conditions"] = "ref equals x" }, "trust_conditions: line 1, column 5"},
		{"github issuer", base(), func(m map[string]any) { m["issuer"] = "https://evil.example.com" }, "issuer: github_actions providers always use"},
		{"github unpinned", base(), func(m map[string]any) {
			m["trust_conditions"] = `ref is "refs/heads/main"`
			m["has_conditions"] = true
		}, "trust_conditions: github_actions providers must pin the repository owner"},
		{"circleci issuer", circle(), func(m map[string]any) { m["issuer"] = "https://oidc.circleci.com/org/other" }, "issuer: circleci providers always use"},
		{"circleci audience", circle(), func(m map[string]any) { m["audience"] = "not-a-uuid" }, `audience: "not-a-uuid" is not a UUID`},
		{"denial", base(), func(m map[string]any) { m["denial_detail"] = "all" }, `denial_detail: unknown denial_detail "all"`},
		{"policy", base(), func(m map[string]any) { m["policy"] = "Bad-Name" }, `policy: "Bad-Name" is not a valid policy name`},
		{"bool", base(), func(m map[string]any) { m["allow_token_reuse"] = "true" }, "allow_token_reuse: must be a boolean, found string"},
		{"max age negative", base(), func(m map[string]any) { m["max_token_age_seconds"] = -1 }, "max_token_age_seconds: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(tt.doc)
			_, err := FromMetadata(tt.doc)
			var me *ValidationError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n%s\ndoes not contain\n%s", err, tt.want)
			}
		})
	}
	// Every problem at once.
	_, err := FromMetadata(map[string]any{"id": 5, "x": 1})
	if err == nil || !strings.Contains(err.Error(), "id: must be a string") || !strings.Contains(err.Error(), "x: unknown key") || !strings.Contains(err.Error(), "scopes: missing") {
		t.Errorf("err = %v", err)
	}
	if _, err := FromMetadata(nil); err == nil {
		t.Error("FromMetadata(nil) succeeded")
	}
}

func TestParsePos(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Pos
	}{
		{"providers.yaml:3", Pos{"providers.yaml", 3}},
		{"c:/x/providers.yaml:12", Pos{"c:/x/providers.yaml", 12}},
		{"providers.yaml", Pos{"providers.yaml", 0}},
		{"a:b", Pos{"a:b", 0}},
		{"a:-1", Pos{"a:-1", 0}},
		{"a:01", Pos{"a:01", 0}},
		{"", Pos{}},
	} {
		if got := parsePos(tt.in); got != tt.want {
			t.Errorf("parsePos(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if tt.want.String() != tt.in {
			t.Errorf("%+v.String() = %q, want %q", tt.want, tt.want.String(), tt.in)
		}
	}
}

// A bundle built before max_token_lifetime_seconds existed still loads,
// with the default lifetime cap.
func TestFromMetadataWithoutMaxTokenLifetime(t *testing.T) {
	for _, p := range validProviders(t) {
		m := p.Metadata()
		delete(m, "max_token_lifetime_seconds")
		q, err := FromMetadata(m)
		if err != nil {
			t.Fatalf("%s: a document without max_token_lifetime_seconds: %v", p.ID, err)
		}
		if got := q.EffectiveMaxTokenLifetime(); got != DefaultMaxTokenLifetime {
			t.Errorf("%s: max token lifetime %v, want the default %v", p.ID, got, DefaultMaxTokenLifetime)
		}
	}
}

func TestTokenMismatch(t *testing.T) {
	p := &Provider{ID: "x", Issuer: GitHubIssuer, Audience: "Buddy"}
	if m := p.TokenMismatch(map[string]any{"iss": GitHubIssuer, "aud": []any{"other", "Buddy"}}); m != nil {
		t.Fatalf("%v", m)
	}
	m := p.TokenMismatch(map[string]any{"iss": "https://evil.example.com", "aud": "sts.amazonaws.com"})
	if len(m) != 2 || !strings.Contains(m[0], `issuer "https://evil.example.com" is not this provider's`) || !strings.Contains(m[1], `audience ["sts.amazonaws.com"] does not include this provider's ("Buddy")`) {
		t.Fatalf("%q", m)
	}
	if m := (&Provider{Issuer: "https://i"}).TokenMismatch(map[string]any{"iss": "https://i", "aud": "anything"}); m != nil {
		t.Fatalf("no audience configured: %v", m)
	}
}
