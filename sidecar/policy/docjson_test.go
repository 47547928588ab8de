package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// wantDocumentJSON is what the audit line carried before DocumentJSON:
// Document's value through a json.Encoder without HTML escaping (slog's
// JSON handler).
func wantDocumentJSON(t *testing.T, d *ExchangeDecision) []byte {
	t.Helper()
	doc, err := d.Document()
	if err != nil {
		t.Fatal(err)
	}
	var bb bytes.Buffer
	enc := json.NewEncoder(&bb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(bb.Bytes(), []byte("\n"))
}

func TestDocumentJSONMatchesDocument(t *testing.T) {
	ctx := context.Background()
	var docs []*ExchangeDecision
	// Real decisions: an allow, a denial with failed conditions, an
	// unknown provider.
	s := snapshot(t, manyProviders(t, 2))
	claims := fixture(t, "github_push_main")
	for _, in := range []ExchangeInput{
		{ProviderID: "00000000-0000-4000-8000-000000000000", Claims: claims, ClientIP: "203.0.113.7", Time: time.Unix(1795000001, 0)},
		{ProviderID: "00000000-0000-4000-8000-000000000001", Claims: claims, ClientIP: "203.0.113.7", Time: time.Unix(1795000001, 0)},
		{ProviderID: "00000000-0000-4000-8000-000000000000", Claims: claims, ClientIP: "203.0.113.7", Time: time.Unix(1795000001, 0), RequestedScopes: []string{"WORKSPACE", "NOPE"}},
		{ProviderID: "00000000-0000-4000-8000-0000000000ff", Claims: map[string]any{}, ClientIP: "::1", Time: time.Unix(1795000001, 0)},
	} {
		d, err := s.Exchange(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	// Documents a custom policy could return: every kind of value, strings
	// that need escaping, sets, numbers, a lazy object (input.claims) and
	// non-string keys (both left to the general conversion).
	for _, src := range []string{
		`{"allow": true, "reasons": [], "lifetime_seconds": 5400, "workspaces": null}`,
		`{"z": 1, "a": -0.5, "m": 1e400, "n": 12345678901234567890, "b": false, "s": "<script>&amp;</script>"}`,
		`{"quote": "a \"b\" \\ c", "ctl": "\u0000\u001f\t\n", "uni": "é ☃ 😀 \u2028 \u2029", "": ""}`,
		`{"set": {"b", "a", 3, [1, {"k": "v"}]}, "nested": {"y": {"x": [true, null, {}]}}}`,
		`{"reasons": [{"code": "x", "message": "m", "expected": ["a", "b"], "actual": {"o": 1}, "clause": 2}]}`,
		`{1: "one", "1x": 2}`,
	} {
		docs = append(docs, &ExchangeDecision{doc: ast.MustParseTerm(src).Value.(ast.Object)})
	}
	docs = append(docs, &ExchangeDecision{doc: ast.NewObject(
		[2]*ast.Term{ast.StringTerm("actual"), ast.NewTerm(ast.LazyObject(map[string]any{"b": json.Number("1.50"), "a": []any{"x", nil, true}}))},
		[2]*ast.Term{ast.StringTerm("allow"), ast.BooleanTerm(false)},
	)})
	for i, d := range docs {
		want := wantDocumentJSON(t, d)
		got, err := d.DocumentJSON()
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("document %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if _, err := (&ExchangeDecision{}).DocumentJSON(); err == nil {
		t.Error("a decision without a document: no error")
	}
}

// BenchmarkDocumentJSON: the allowed decision's document as the audit line
// writes it, directly and through Document and encoding/json.
//
//	go test -run '^$' -bench DocumentJSON -benchmem ./sidecar/policy/
func BenchmarkDocumentJSON(b *testing.B) {
	s := snapshot(b, manyProviders(b, 1))
	d, err := s.Exchange(context.Background(), ExchangeInput{ProviderID: "00000000-0000-4000-8000-000000000000",
		Claims: fixture(b, "github_push_main"), ClientIP: "203.0.113.7", Time: time.Unix(1795000001, 0)})
	if err != nil || !d.Allow {
		b.Fatal(d, err)
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DocumentJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Document+encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			doc, err := d.Document()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := encodeNoHTML(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
