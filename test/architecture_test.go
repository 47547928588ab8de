package test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	modulePath = "github.com/oidc-sidecar/oidc-sidecar"
	opaPrefix  = "github.com/open-policy-agent/opa/v1/"
)

// TestArchitecture: the import graph docs/architecture.md documents is the
// code's, both ways — every package of the module has a row, every import
// of another package of the module (non-test code) is listed and every
// listed import exists — and only the packages of its OPA table import OPA.
func TestArchitecture(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	wantGraph := docTable(t, doc, "import graph")
	wantOPA := docTable(t, doc, "opa imports")

	gotGraph := map[string][]string{}
	gotOPA := map[string][]string{}
	for _, p := range goList(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, modulePath), "/")
		if len(p.GoFiles) == 0 { // test-only packages (test/)
			continue
		}
		gotGraph[rel] = []string{}
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, modulePath+"/"):
				gotGraph[rel] = append(gotGraph[rel], strings.TrimPrefix(imp, modulePath+"/"))
			case strings.HasPrefix(imp, opaPrefix):
				gotOPA[rel] = append(gotOPA[rel], strings.TrimPrefix(imp, opaPrefix))
			}
		}
	}
	compare(t, "import graph", wantGraph, gotGraph, true)
	compare(t, "opa imports", wantOPA, gotOPA, false)
}

type listedPackage struct {
	ImportPath string
	GoFiles    []string
	Imports    []string
}

func goList(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages: run from the module's test/ directory", len(pkgs))
	}
	return pkgs
}

var backticked = regexp.MustCompile("`([^`]+)`")

// docTable reads the Markdown table between <!-- name begin --> and
// <!-- name end -->: package → the backticked names of its second column.
func docTable(t *testing.T, doc []byte, name string) map[string][]string {
	t.Helper()
	begin, end := []byte("<!-- "+name+" begin -->"), []byte("<!-- "+name+" end -->")
	i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("docs/architecture.md has no %q ... %q section", begin, end)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(doc[i+len(begin):j]), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		pkg := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if _, dup := out[pkg]; dup {
			t.Errorf("docs/architecture.md %s: %s has two rows", name, pkg)
		}
		out[pkg] = []string{}
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			out[pkg] = append(out[pkg], m[1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("docs/architecture.md %s: no rows", name)
	}
	return out
}

// compare reports every difference between the documented and the real
// table. everyPackage: every real package must have a row.
func compare(t *testing.T, name string, want, got map[string][]string, everyPackage bool) {
	t.Helper()
	for pkg, imps := range got {
		doc, ok := want[pkg]
		if !ok {
			if everyPackage || len(imps) > 0 {
				t.Errorf("docs/architecture.md %s: %s (imports %v) has no row; add one", name, pkg, imps)
			}
			continue
		}
		for _, imp := range imps {
			if !slices.Contains(doc, imp) {
				t.Errorf("docs/architecture.md %s: %s imports %s, which its row does not list; add it to the row if the design allows it, or remove the import", name, pkg, imp)
			}
		}
		for _, imp := range doc {
			if !slices.Contains(imps, imp) {
				t.Errorf("docs/architecture.md %s: %s's row lists %s, which it does not import; remove it from the row", name, pkg, imp)
			}
		}
	}
	for pkg := range want {
		if _, ok := got[pkg]; !ok {
			t.Errorf("docs/architecture.md %s: row %s names a package that does not exist or imports none of these (renamed or removed?)", name, pkg)
		}
	}
}
