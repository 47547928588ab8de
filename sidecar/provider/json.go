package provider

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem of a provider given as JSON (DecodeJSON):
// Field is the key, "scopes[1]" for a list item, or "" for the body as a
// whole.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
}

// DecodeJSON decodes and validates one provider given as a JSON object in
// providers.yaml's keys, as the admin API receives it, through the same
// field table and validator as Parse (a JSON object is a YAML mapping, so
// the file's parser reads it). On errors it returns nil and every problem,
// warnings included; otherwise the provider, with defaults applied, and
// its warnings. Checks across providers (duplicate ids) are the caller's.
func DecodeJSON(body []byte) (*Provider, []FieldError) {
	if len(body) > MaxFileSize {
		return nil, []FieldError{{Message: fmt.Sprintf("the body is %d bytes; the limit is %d (4 MiB)", len(body), MaxFileSize)}}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, []FieldError{{Message: fmt.Sprintf("not valid JSON: %v", err)}}
	}
	if !bytes.HasPrefix(compact.Bytes(), []byte("{")) {
		return nil, []FieldError{{Message: "the body must be a JSON object with the provider's keys (id, name, type, scopes, ...)"}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(compact.Bytes(), &doc); err != nil || len(doc.Content) != 1 {
		return nil, []FieldError{{Message: fmt.Sprintf("the body could not be read (%v); send a JSON object", err)}}
	}
	ps := &parser{src: compact.Bytes(), budget: nodeBudget + compact.Len(), ids: map[ID]idUse{}, seen: map[string]bool{}}
	p := ps.provider(0, doc.Content[0])
	out := make([]FieldError, 0, len(ps.diags))
	failed := p == nil
	for _, d := range optionDiagnostics(ps.diags) {
		failed = failed || !d.Warning
		out = append(out, FieldError{Field: d.Field, Message: d.Message, Warning: d.Warning})
	}
	if failed {
		return nil, out
	}
	return p, out
}
