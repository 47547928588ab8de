package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/providerid"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

//go:generate go test -run TestSchemaCurrent -update .

// SchemaPath is where the repository keeps the generated schema, relative
// to its root.
const SchemaPath = "docs/providers.schema.json"

// Schema returns the JSON Schema (draft 2020-12) of providers.yaml,
// generated from the field table; docs/providers.schema.json is its output
// (a test keeps it current; `go generate ./sidecar/provider/` rewrites it).
// It enforces what the loader does where JSON Schema can say it (enums,
// patterns, required keys, the per-type rules); the loader checks more
// (trust-condition syntax, duplicate ids, the github_actions owner pin,
// issuer URL rules).
func Schema() []byte {
	props := map[string]any{}
	var required []any
	for _, f := range fields {
		s := f.schema()
		s["description"] = f.doc
		if f.def != "" {
			switch f.typ {
			case tBool:
				s["default"] = f.def == "true"
			default:
				s["default"] = f.def
			}
		}
		props[f.key] = s
		if f.required != "" {
			required = append(required, f.key)
		}
	}
	var scopes []any
	for _, s := range scope.All() {
		scopes = append(scopes, s)
	}
	ifType := func(t Type, then map[string]any) map[string]any {
		return obj(
			"if", obj("properties", obj("type", obj("const", string(t))), "required", []any{"type"}),
			"then", then)
	}
	notRequired := func(keys ...string) map[string]any {
		var l []any
		for _, k := range keys {
			l = append(l, obj("required", []any{k}))
		}
		if len(l) == 1 {
			return obj("not", l[0])
		}
		return obj("not", obj("anyOf", l))
	}
	withNot := func(m, not map[string]any) map[string]any {
		m["not"] = not["not"]
		return m
	}
	doc := obj(
		"$schema", "https://json-schema.org/draft/2020-12/schema",
		"$id", "https://github.com/oidc-sidecar/oidc-sidecar/docs/providers.schema.json",
		"title", "oidc-sidecar providers file",
		"description", "The OIDC identity providers the sidecar trusts. Reference: docs/providers.md. Generated from the provider field table (sidecar/provider/fields.go): do not edit. The sidecar's loader checks more than this schema can (trust-condition syntax, duplicate ids, the github_actions owner pin, issuer URL rules) and reports every problem with file:line:col.",
		"type", "object",
		"required", []any{"providers"},
		"properties", obj("providers", obj(
			"type", "array",
			"description", "The providers. Each needs id, name, type and scopes. An empty list is allowed: every exchange is then refused.",
			"items", ref("provider"))),
		"patternProperties", obj("^x-", obj(
			"description", "Extension keys are ignored by the loader; use them to hold your own YAML anchors (x-defaults: &defaults ...).")),
		"additionalProperties", false,
		"$defs", obj(
			"uuid", obj(
				"type", "string",
				"pattern", "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
				"not", obj("const", "00000000-0000-0000-0000-000000000000"),
				"examples", []any{providerid.Example}),
			"scope", obj("type", "string", "enum", scopes),
			"provider", obj(
				"type", "object",
				"required", required,
				"additionalProperties", false,
				"properties", props,
				"allOf", []any{
					ifType(GitHubActions, withNot(obj("properties", obj("issuer", obj("const", GitHubIssuer))), notRequired("organization_id"))),
					ifType(CircleCI, withNot(obj("required", []any{"organization_id"}), notRequired("issuer", "audience"))),
					ifType(Other, withNot(obj("required", []any{"issuer"}), notRequired("organization_id"))),
				}),
		),
	)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		panic(err) // the document is built from plain values
	}
	return escapeInvisible(b.Bytes())
}

// escapeInvisible writes the invisible characters encoding/json leaves as
// they are (C1 controls, format characters such as U+FEFF or the
// bidirectional controls of the name pattern) as \uXXXX escapes, so that
// the schema file shows them. They occur only inside strings.
func escapeInvisible(b []byte) []byte {
	var out bytes.Buffer
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r >= 0x80 && (unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r)) && r <= 0xffff {
			fmt.Fprintf(&out, `\u%04x`, r)
		} else {
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.Bytes()
}

// obj builds a JSON object from key, value pairs.
func obj(kv ...any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func ref(def string) map[string]any { return obj("$ref", "#/$defs/"+def) }

func policySchema() map[string]any {
	var kw []any
	for _, k := range regoKeywords {
		kw = append(kw, k)
	}
	return obj("type", "string", "pattern", policyRE.String(), "maxLength", 63, "not", obj("enum", kw))
}

func workspaceSchema() map[string]any {
	return obj("type", "string", "pattern", workspaceRE.String())
}
