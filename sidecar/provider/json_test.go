package provider

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecodeJSON(t *testing.T) {
	p, errs := DecodeJSON([]byte(`{
		"id": "550e8400-e29b-41d4-a716-446655440000",
		"name": "GHA \u2013 deploy",
		"type": "github_actions",
		"lifetime": "1h",
		"trust_conditions": "repository_owner is \"octo-org\"",
		"scopes": ["WORKSPACE", "EXECUTION_RUN"],
		"workspaces": ["my-company"],
		"allow_token_reuse": true
	}`))
	if p == nil {
		t.Fatalf("errors: %+v", errs)
	}
	if len(errs) != 0 {
		t.Errorf("unexpected problems: %+v", errs)
	}
	if p.ID != "550e8400-e29b-41d4-a716-446655440000" || p.Name != "GHA – deploy" || p.Lifetime != time.Hour ||
		p.Issuer != GitHubIssuer || p.Audience != DefaultGitHubAudience || !p.AllowTokenReuse ||
		p.MaxTokenLifetime != DefaultMaxTokenLifetime || p.DenialDetail != DenialConditions ||
		!slices.Equal(p.Scopes, []string{"WORKSPACE", "EXECUTION_RUN"}) || p.Conditions == nil {
		t.Errorf("provider = %+v", p)
	}
}

// The admin API gets the same rules and messages as the file, per field.
func TestDecodeJSONErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       []FieldError
	}{
		{"not json", `{"id": `, []FieldError{{Message: "not valid JSON: unexpected end of JSON input"}}},
		{"not an object", `["x"]`, []FieldError{{Message: "the body must be a JSON object with the provider's keys (id, name, type, scopes, ...)"}}},
		{"empty object", `{}`, []FieldError{
			{Field: "type", Message: "missing; use github_actions, circleci or other"},
			{Field: "id", Message: "missing; every provider needs a UUID, e.g. 550e8400-e29b-41d4-a716-446655440000 (uuidgen makes one; `oidc-sidecar provider new` adds one for you)"},
			{Field: "name", Message: `missing; give the provider a label, e.g. "GHA - octo-repo:deploy"`},
			{Field: "scopes", Message: "missing; list the Buddy scopes issued tokens get, e.g. [WORKSPACE, EXECUTION_RUN]"},
		}},
		{"values", `{"id": "550E8400-E29B-41D4-A716-446655440000", "name": "x", "type": "other", "issuer": "https://ci.example.com",
			"audience": "a", "trust_conditions": "sub exists", "lifetime": "15m", "allow_token_reuse": "true", "max_token_age": 60,
			"scopes": ["WORKSPACE", "NOPE", 3], "lifetme": "1h"}`, []FieldError{
			{Field: "lifetme", Message: "unknown key \"lifetme\"; did you mean lifetime?"},
			{Field: "id", Message: `"550E8400-E29B-41D4-A716-446655440000" is not in canonical form; write 550e8400-e29b-41d4-a716-446655440000`},
			{Field: "lifetime", Message: `"15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`},
			{Field: "scopes[1]", Message: `unknown scope "NOPE"; see the scope table in docs/providers.md`},
			{Field: "scopes[2]", Message: `unknown scope "3"; see the scope table in docs/providers.md`}, // a number is a YAML scalar, as in the file
			{Field: "allow_token_reuse", Message: `must be true or false, found "true"`},
			{Field: "max_token_age", Message: `"60" is not a duration; write e.g. 5m or 1h (0s = no limit)`},
		}},
		{"duplicate key", `{"id": "550e8400-e29b-41d4-a716-446655440000", "id": "550e8400-e29b-41d4-a716-446655440001", "name": "x", "type": "github_actions", "trust_conditions": "repository_owner is \"o\"", "scopes": ["WORKSPACE"]}`,
			[]FieldError{{Field: "id", Message: "duplicate key; the first id: is on line 1: keep one"}}},
		{"warning only is fine, error is not", `{"id": "550e8400-e29b-41d4-a716-446655440000", "name": "x", "type": "other", "issuer": "https://ci.example.com/", "scopes": ["WORKSPACE"], "workspaces": []}`, []FieldError{
			{Field: "workspaces", Message: "an empty list allows no workspace at all; omit workspaces to allow all of them, or list the handles"},
			{Field: "issuer", Message: `"https://ci.example.com/" ends with a slash; the iss claim must match it exactly, and most issuers have none`, Warning: true},
			{Field: "audience", Message: "no audience: the token's aud claim is not checked, so tokens minted for other services are accepted too; set audience to the value your CI sends", Warning: true},
			{Field: "trust_conditions", Message: "no trust_conditions and no policy: any token from https://ci.example.com/ is accepted; add conditions on the claims that identify your pipelines", Warning: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := DecodeJSON([]byte(tt.body))
			if p != nil {
				t.Errorf("DecodeJSON accepted %s", tt.body)
			}
			if !reflect.DeepEqual(errs, tt.want) {
				g, _ := json.MarshalIndent(errs, "", "  ")
				t.Errorf("errors:\n%s", g)
			}
		})
	}
}

// DecodeJSON accepts what Parse accepts: every valid provider of the
// golden files, written as JSON in the file's keys, decodes to the same
// metadata.
func TestDecodeJSONMatchesParse(t *testing.T) {
	for _, p := range validProviders(t) {
		body := map[string]any{}
		for _, f := range fields {
			switch f.key {
			case "organization_id":
				if p.OrganizationID != "" {
					body[f.key] = p.OrganizationID
				}
			case "issuer":
				if p.Type == Other {
					body[f.key] = f.meta(p)
				}
			case "audience":
				if p.Type != CircleCI {
					body[f.key] = f.meta(p)
				}
			case "lifetime":
				body[f.key] = FormatLifetime(p.Lifetime)
			case "max_token_age":
				body[f.key] = p.MaxTokenAge.String()
			case "max_token_lifetime":
				body[f.key] = p.EffectiveMaxTokenLifetime().String()
			case "policy":
				if p.Policy != "" {
					body[f.key] = p.Policy
				}
			default:
				if v := f.meta(p); v != nil {
					body[f.key] = v
				}
			}
		}
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		q, errs := DecodeJSON(b)
		for _, e := range errs {
			if !e.Warning {
				t.Fatalf("%s: %s: %s\n%s", p.ID, e.Field, e.Message, b)
			}
		}
		q.Source = p.Source
		if got, want := q.Metadata(), p.Metadata(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: DecodeJSON gives\n%v\nParse gives\n%v", p.ID, got, want)
		}
	}
	if _, errs := DecodeJSON([]byte(strings.Repeat(" ", MaxFileSize+1))); len(errs) != 1 {
		t.Errorf("oversized body: %+v", errs)
	}
}
