package trust

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/providerid"
	"github.com/open-policy-agent/opa/v1/format"
)

// fuzzSeeds are the seed inputs of both fuzz targets.
var fuzzSeeds = []string{
	``,
	`repository_owner is "octo-org"`,
	`if repository_owner is "octo-org" and ref matches "refs/heads/release/*" and environment is one of ["prod", "staging"]`,
	"if oidc.circleci.com/project-id is \"p\"\r\n\tand oidc.circleci.com/context-ids is not one of [\"a\", \"b\",]\nand oidc.circleci.com/ssh-rerun is FALSE",
	`a is not "x" and b does not match "{a,b}/**" and c exists and "q\"uoted" is -1.5e+3 and d is one of [1, true, "s"]`,
	`a is "\u00e9\ud83d\ude00\n\t\\\"" and b matches "\\*[!a-z]?"`,
	`ref is "main" or env is "x"`,
	`ref is "unterminated`,
	`ref is one of ["a", "a"]`,
	`ref matches "{a,b"`,
	"ref is \"\xff\"",
	`"" is "x"`,
	`ref is 01`,
	"\uFEFFref\u00a0exists",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		type res struct {
			x   *Expr
			err error
		}
		ch := make(chan res, 1)
		go func() { x, err := Parse(src); ch <- res{x, err} }()
		var r res
		select {
		case r = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("HANG Parse(%q)", src)
		}
		x, err := r.x, r.err
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q): error %v is %T, not *SyntaxError", src, err, err)
			}
			checkErrorPos(t, src, se)
			return
		}
		if x.Source != src {
			t.Fatalf("Source = %q, want %q", x.Source, src)
		}
		for _, c := range x.Conditions {
			if c.Text != c.String() {
				t.Fatalf("Text %q != String() %q", c.Text, c.String())
			}
			if err := c.check(); err != nil {
				t.Fatalf("Parse(%q) gave a condition Generate rejects: %v", src, err)
			}
			checkPos(t, src, c.Pos)
		}
		canon := x.String()
		y, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String() %q does not parse: %v", src, canon, err)
		}
		if !x.Equal(y) {
			t.Fatalf("round trip changed the clauses:\n%q\n%#v\n%q\n%#v", src, x.Conditions, canon, y.Conditions)
		}
		if y.String() != canon {
			t.Fatalf("String() is not canonical: %q then %q", canon, y.String())
		}
	})
}

// checkErrorPos asserts that a syntax error points inside src and carries
// the source line it points at.
func checkErrorPos(t *testing.T, src string, se *SyntaxError) {
	t.Helper()
	if se.Msg == "" {
		t.Fatalf("Parse(%q): empty message", src)
	}
	checkPos(t, src, se.Pos)
	if want := strings.TrimSuffix(strings.Split(src, "\n")[se.Pos.Line-1], "\r"); se.Line != want {
		t.Fatalf("Parse(%q): error line %q, want %q", src, se.Line, want)
	}
	if !strings.HasPrefix(se.Caret(), se.Line+"\n") || !strings.HasSuffix(se.Caret(), "^") {
		t.Fatalf("Parse(%q): Caret() = %q", src, se.Caret())
	}
}

// checkPos asserts that pos is a line of src and a column of that line (or
// just past its end).
func checkPos(t *testing.T, src string, pos Pos) {
	t.Helper()
	lines := strings.Split(src, "\n")
	if pos.Line < 1 || pos.Line > len(lines) {
		t.Fatalf("Parse(%q): line %d outside 1..%d", src, pos.Line, len(lines))
	}
	if n := utf8.RuneCountInString(lines[pos.Line-1]); pos.Col < 1 || pos.Col > n+1 {
		t.Fatalf("Parse(%q): line %d, column %d outside 1..%d", src, pos.Line, pos.Col, n+1)
	}
}

var (
	libOnce   sync.Once
	libModule *ast.Module
)

func FuzzGenerate(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, "p-1", "provider name", "providers.yaml:1")
	}
	f.Add(`a is "x"`, testID, "x\npackage evil", "a\r\nb")
	f.Fuzz(func(t *testing.T, src, id, name, source string) {
		x, err := Parse(src)
		if err != nil {
			return
		}
		path, out, err := Generate(Module{ProviderID: providerid.ID(id), ProviderName: name, Source: source, Expr: x})
		if err != nil {
			if checkProviderID(providerid.ID(id)) == nil {
				t.Fatalf("Generate(%q, id %q): %v", src, id, err)
			}
			return
		}
		libOnce.Do(func() {
			p, lib := Library()
			libModule = ast.MustParseModuleWithOpts(string(lib), ast.ParserOptions{RegoVersion: ast.RegoV1})
			libModule.Package.Location.File = p
		})
		mod, err := ast.ParseModuleWithOpts(path, string(out), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("generated module does not parse: %v\n%s", err, out)
		}
		if len(mod.Rules) != 1 || mod.Rules[0].Head.Name.String() != "conditions" || len(mod.Imports) != 0 {
			t.Fatalf("generated module has %d rules:\n%s", len(mod.Rules), out)
		}
		if _, _, built, err := GenerateModule(Module{ProviderID: providerid.ID(id), ProviderName: name, Source: source, Expr: x}); err != nil || !built.Equal(mod) {
			t.Fatalf("GenerateModule's tree differs from the parsed module (%v):\n%s\n--- parsed\n%s", err, built, mod)
		}
		c := ast.NewCompiler().WithStrict(true)
		if c.Compile(map[string]*ast.Module{path: mod, "lib.rego": libModule.Copy()}); c.Failed() {
			t.Fatalf("generated module does not compile: %v\n%s", c.Errors, out)
		}
		formatted, err := format.SourceWithOpts(path, out, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil || !bytes.Equal(formatted, out) {
			t.Fatalf("generated module is not in the formatter's layout (%v):\n%s\n--- formatted\n%s", err, out, formatted)
		}
	})
}
