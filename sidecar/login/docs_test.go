package login

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const docsPath = "../../docs/login.md"

// TestDocsCoverFlags checks that docs/login.md documents every flag and
// environment fallback.
func TestDocsCoverFlags(t *testing.T) {
	doc := readDoc(t)
	for _, s := range append(cliFlags, "OIDC_SIDECAR_URL", "OIDC_SIDECAR_PROVIDER_ID", "BUDDY_TOKEN", "BUDDY_API_ENDPOINT", "GITHUB_ENV", "::add-mask::") {
		if !strings.Contains(doc, "`"+s) {
			t.Errorf("%s does not document %s", docsPath, s)
		}
	}
}

var verbRE = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

// TestDocsCoverMessages checks that every message text in the package's
// sources — error lines, hints, notes — appears in docs/login.md: each
// string literal with a space and at least 20 characters is split at its
// formatting verbs, and each fixed part of 10 characters or more must be in
// the page.
func TestDocsCoverMessages(t *testing.T) {
	doc := readDoc(t)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || len(s) < 20 || !strings.Contains(s, " ") || strings.HasPrefix(s, "^") {
				return true
			}
			for _, part := range verbRE.Split(s, -1) {
				part = strings.TrimSpace(part)
				if len(part) < 10 {
					continue
				}
				checked++
				if !strings.Contains(doc, part) {
					t.Errorf("%s: %s does not contain %q (from %q)", fset.Position(lit.Pos()), docsPath, part, s)
				}
			}
			return true
		})
	}
	if checked < 40 {
		t.Fatalf("only %d message parts checked: is the scan broken?", checked)
	}
}

// readDoc returns docs/login.md with every run of white space made one
// space, so that wrapped lines match.
func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}
