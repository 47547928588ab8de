package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestNameControlCharacters: a provider name with a control character (CR,
// LF, tab, other C0/C1 controls), a line or paragraph separator, a byte
// order mark or a bidirectional-formatting character is refused, the same
// way from the file, the admin API's JSON and the bundle's metadata; the
// JSON Schema refuses it too. Other non-ASCII text is a fine name.
func TestNameControlCharacters(t *testing.T) {
	s := compileSchema(t)
	bad := []string{"a\rb", "a\nb", "a\tb", "\x00a", "a\x1b[31m", "a\x7f", "a\u0085b", "a\u009bb",
		"a\u2028b", "a\u2029b", "\ufeffa", "a\u202eb", "a\u2066b", "a\u200fb"}
	good := []string{"GHA - octo-repo:deploy", "Zürich – deploy ✓", "日本語", "a\u00a0b", "a\u200db"}
	for _, name := range append(bad, good...) {
		wantOK := !strings.ContainsAny(name, "\r\n\t\x00\x1b\x7f\u0085\u009b\u2028\u2029\ufeff\u202e\u2066\u200f")
		q := quoteEscaped(name)
		src := "providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: " + string(q) +
			"\n    type: github_actions\n    trust_conditions: repository_owner is \"o\"\n    scopes: [WORKSPACE]\n"
		_, err := Parse("p.yaml", []byte(src))
		if (err == nil) != wantOK {
			t.Errorf("file, name %q: err %v, want ok=%v", name, err, wantOK)
		}
		if !wantOK && err != nil && !strings.Contains(err.Error(), "providers[0].name: contains the invisible control character U+") {
			t.Errorf("file, name %q: message %q does not say what is wrong", name, err)
		}
		if ok, why := schemaAccepts(t, s, []byte(src)); ok != wantOK {
			t.Errorf("schema, name %q: accepts = %v (%v), want %v", name, ok, why, wantOK)
		}
		body := `{"id":"550e8400-e29b-41d4-a716-446655440000","name":` + q +
			`,"type":"github_actions","trust_conditions":"repository_owner is \"o\"","scopes":["WORKSPACE"]}`
		p, errs := DecodeJSON([]byte(body))
		if (len(errs) == 0) != wantOK {
			t.Errorf("API, name %q: %v, want ok=%v", name, errs, wantOK)
		}
		if !wantOK && (len(errs) != 1 || errs[0].Field != "name") {
			t.Errorf("API, name %q: %v, want one error on field name", name, errs)
		}
		if wantOK {
			m := p.Metadata()
			m["name"] = name + "\n"
			if _, err := FromMetadata(m); err == nil || !strings.Contains(err.Error(), "name") {
				t.Errorf("metadata, name %q+LF: %v, want an error on name", name, err)
			}
		}
	}
}

// TestNameForbiddenClassAgrees: the schema's character class and the
// loader's check refuse the same characters.
func TestNameForbiddenClassAgrees(t *testing.T) {
	re := regexp.MustCompile(nameForbiddenClass)
	for r := rune(0); r <= 0x10ffff; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		_, _, loader := nameForbidden(string(r))
		if schema := re.MatchString(string(r)); schema != loader {
			t.Errorf("%U: schema class refuses = %v, loader refuses = %v", r, schema, loader)
		}
	}
}

// quoteEscaped is s as a double-quoted string that YAML and JSON read
// alike, everything outside printable ASCII as a \uXXXX escape.
func quoteEscaped(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r >= 0x20 && r < 0x7f && r != '"' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
