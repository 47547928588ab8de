package admin

// This file is the one place the admin API turns a provider's JSON into
// the providers file's YAML and back. The rules are provider.Parse's: a
// provider from the API is validated as the one entry of a providers file,
// so the file and the API cannot disagree. (When sidecar/provider offers a
// JSON decode entry point on its field table, this file switches to it.)

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
)

// FieldError is one problem of a provider sent to the API, at its field
// ("lifetime", "scopes[1]", "trust_conditions"; "" for the whole body).
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// maxBody bounds a provider sent to the API.
const maxBody = 1 << 20

// decodeEntry turns a JSON object in providers.yaml's field names into the
// mapping node of a list entry whose first key is id. A body that names an
// id must name this one (create: none at all).
func decodeEntry(body []byte, id string, create bool) (*yaml.Node, []FieldError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, []FieldError{{"", "the body must be one JSON object: a provider in providers.yaml's field names, e.g. {\"name\": \"deploy\", \"type\": \"github_actions\", ...}"}}
	}
	var n yaml.Node
	if err := yaml.Unmarshal(trimmed, &n); err != nil || len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode {
		return nil, []FieldError{{"", "the body must be one JSON object"}}
	}
	m := n.Content[0]
	var errs []FieldError
	content := []*yaml.Node{str("id"), str(id)}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if seen[k.Value] {
			errs = append(errs, FieldError{k.Value, "given twice; give each field once"})
			continue
		}
		seen[k.Value] = true
		if k.Value == "id" {
			switch {
			case create:
				errs = append(errs, FieldError{"id", "the server chooses a new provider's id; leave id out"})
			case v.Value != id:
				errs = append(errs, FieldError{"id", fmt.Sprintf("%q is not the id in the URL (%s); the id of a provider cannot change", v.Value, id)})
			}
			continue
		}
		blockStyle(k)
		blockStyle(v)
		content = append(content, k, v)
	}
	sortKeys(content[2:])
	m.Content = content
	m.Style = 0
	return m, errs
}

// sortKeys orders key/value pairs as providers.yaml documents its keys
// (provider.Keys); unknown keys (which validation reports) go last.
func sortKeys(kv []*yaml.Node) {
	rank := map[string]int{}
	for i, k := range provider.Keys() {
		rank[k] = i + 1
	}
	type pair struct{ k, v *yaml.Node }
	ps := make([]pair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ps = append(ps, pair{kv[i], kv[i+1]})
	}
	r := func(p pair) int {
		if n, ok := rank[p.k.Value]; ok {
			return n
		}
		return len(rank) + 1
	}
	sort.SliceStable(ps, func(i, j int) bool { return r(ps[i]) < r(ps[j]) })
	for i, p := range ps {
		kv[2*i], kv[2*i+1] = p.k, p.v
	}
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// blockStyle makes JSON's flow collections block YAML; scalars keep their
// tags (a JSON string "true" stays a string) and get the encoder's quoting.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// validateEntry checks entry alone with the providers file's rules and
// returns its errors by field.
func validateEntry(d *doc, entry *yaml.Node) []FieldError {
	text, err := d.render(entry)
	if err != nil {
		return []FieldError{{"", err.Error()}}
	}
	_, err = provider.Parse("provider", []byte("providers:\n"+text))
	return fieldErrors(err, 0)
}

// fieldErrors converts a provider.Parse error into field errors; the
// fields of entry i lose their "providers[i]." prefix.
func fieldErrors(err error, i int) []FieldError {
	if err == nil {
		return nil
	}
	ve, ok := err.(*provider.ValidationError)
	if !ok {
		return []FieldError{{"", err.Error()}}
	}
	prefix := fmt.Sprintf("providers[%d]", i)
	var out []FieldError
	for _, d := range ve.Errors() {
		f := d.Field
		if f == prefix || strings.HasPrefix(f, prefix+".") || strings.HasPrefix(f, prefix+"[") {
			f = strings.TrimPrefix(strings.TrimPrefix(f, prefix), ".")
		}
		out = append(out, FieldError{f, d.Message})
	}
	if len(out) == 0 {
		out = []FieldError{{"", err.Error()}}
	}
	return out
}

// entryJSON is an entry as the file writes it, as JSON: the admin API's
// representation of a provider (what a PUT sends back).
func entryJSON(n *yaml.Node) (map[string]any, error) {
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	for k, x := range v { // YAML-only types (timestamps) become text
		if t, ok := x.(time.Time); ok {
			v[k] = t.Format(time.RFC3339)
		}
	}
	return v, nil
}

// providerJSON is a loaded provider's effective values in providers.yaml's
// field names (a bundle source, which has no file): its yaml-tagged fields,
// durations written as the file writes them.
func providerJSON(p *provider.Provider) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(p).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := v.Field(i)
		switch x := f.Interface().(type) {
		case time.Duration:
			if x != 0 {
				out[name] = provider.FormatLifetime(x)
			}
		case []netip.Prefix:
			l := make([]string, len(x))
			for j, p := range x {
				l[j] = p.String()
			}
			out[name] = l
		case string:
			if x != "" {
				out[name] = x
			}
		default:
			if f.Kind() == reflect.String {
				out[name] = f.String()
			} else {
				out[name] = x
			}
		}
	}
	return out
}
