package yamlerr

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestLocate: a syntax error is reported where the mistake is, not where
// yaml.v3 says (the start of the enclosing block, often line 1).
func TestLocate(t *testing.T) {
	for _, c := range []struct {
		src       string
		line, col int
	}{
		{"listen: a\nadmin_listen: b\nupstream:\n  url: x\n timeout: 3s\n", 5, 2},     // yaml.v3: line 4
		{"providers:\n  - id: 1\n    name: a\n   type: b\n", 4, 4},                    // yaml.v3: line 1
		{"a: 1\nb: [1, 2\nc: 3\n", 2, 1},                                              // yaml.v3: line 1
		{"a: 1\nb: \"x\nc: 3\n", 2, 1},                                                // unclosed quote
		{"a: 1\nb:\n\t- x\n", 3, 2},                                                   // a tab
		{"p:\n  - id: 1\n    name: GHA - octo-repo: deploy\n    type: x\n", 3, 26},    // ": " in a value
		{"listen: a\nupstream:\n  url: x\n   timeout: 3s\nproviders: p.yaml\n", 4, 4}, // over-indented key
	} {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(c.src), &n)
		if err == nil {
			t.Fatalf("%q parsed", c.src)
		}
		s := Locate([]byte(c.src), err)
		if s.Line != c.line || s.Col != c.col || s.Msg == "" || s.Hint == "" {
			t.Errorf("%q: yaml.v3 %q; Locate %d:%d %q %q, want %d:%d", c.src, err, s.Line, s.Col, s.Msg, s.Hint, c.line, c.col)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"url", "timeout", "token_env", "identity_headers"}
	for in, want := range map[string]string{"timout": "timeout", "URL": "url", "token-env": "token_env", "zzzzzz": ""} {
		if got := Suggest(in, keys); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
