// Package policy turns a deployment's sources — providers, hand-written
// Rego, the route table — into one OPA bundle, and serves decisions from it
// with embedded OPA: the bundle is compiled once, one prepared query serves
// every exchange and one every proxied request, and a reload builds the new
// engine aside and swaps it in atomically.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/oidc-sidecar/oidc-sidecar/policies"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

// Root is the bundle root every document of a deployment lives under.
const Root = "sidecar"

// MaxBundleBytes caps a bundle read from a file or a URL.
const MaxBundleBytes = 64 << 20

// File is one Rego source file.
type File struct {
	Path string // bundle-relative path, slash-separated, e.g. "exchange.rego"
	Src  []byte

	parsed *ast.Module // Src's tree, when the generator built it
}

// Settings are deployment switches stored at data.sidecar.settings.
type Settings struct {
	// UnknownRoutes is "deny" (default): a request that matches no route is
	// refused; or "authenticated": it is forwarded for any valid token.
	UnknownRoutes string `json:"unknown_routes" yaml:"unknown_routes"`
}

// Sources is everything a bundle is built from.
type Sources struct {
	Providers []*provider.Provider
	Policies  []File         // hand-written modules, tests excluded; nil = the embedded policies/
	Routes    []routes.Route // nil = Buddy's table
	Settings  Settings
	Revision  string // "" = a content hash
}

// Build compiles sources into a bundle: one generated module per provider
// with trust conditions, the trust helper library, the hand-written
// policies, and the data documents (providers, scopes, routes, settings).
// Every module is parsed; Compile checks the whole and prepares it (callers
// always compile the result, so Build does not compile it twice).
func Build(ctx context.Context, s Sources) (*bundle.Bundle, error) {
	pols := s.Policies
	if pols == nil {
		var err error
		if pols, err = EmbeddedPolicies(false); err != nil {
			return nil, err
		}
	}
	rts := s.Routes
	if rts == nil {
		rts = routes.Default()
	}
	settings := s.Settings
	if settings.UnknownRoutes == "" {
		settings.UnknownRoutes = "deny"
	}

	b := &bundle.Bundle{Data: map[string]any{}}
	add := func(p string, src []byte, parsed *ast.Module) {
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: p, Path: p, Raw: src, Parsed: parsed})
	}

	generated, err := CompileProviders(s.Providers)
	if err != nil {
		return nil, err
	}
	for _, f := range generated {
		add(f.Path, f.Src, f.parsed)
	}
	libPath, _ := trust.Library()
	provData := map[string]any{}
	for _, p := range s.Providers {
		provData[string(p.ID)] = p.Metadata()
	}
	for _, f := range pols {
		if strings.HasPrefix(f.Path, "sidecar/conditions/") || f.Path == libPath {
			return nil, fmt.Errorf("%s: this path is reserved for generated modules; rename the file", f.Path)
		}
		add(f.Path, f.Src, nil)
	}
	if err := parseModules(b.Modules); err != nil {
		return nil, err
	}
	b.Data[Root] = map[string]any{
		"providers": provData,
		"scopes":    scopeData(),
		"routes":    routes.Data(rts),
		"settings":  map[string]any{"unknown_routes": settings.UnknownRoutes},
	}
	roots := []string{Root}
	v1 := 1
	b.Manifest = bundle.Manifest{Roots: &roots, RegoVersion: &v1, Metadata: map[string]any{"generator": "oidc-sidecar"}}
	sort.Slice(b.Modules, func(i, j int) bool { return b.Modules[i].Path < b.Modules[j].Path })
	b.Manifest.Revision = s.Revision
	if b.Manifest.Revision == "" {
		rev, err := contentRevision(b)
		if err != nil {
			return nil, err
		}
		b.Manifest.Revision = rev
	}
	return b, nil
}

// parseModules parses every module that is not parsed yet, on all CPUs:
// parsing is most of the cost of loading 10,000 generated modules, and
// modules parse independently. The error is the first failing module's in
// the order given, so it does not depend on scheduling.
func parseModules(files []bundle.ModuleFile) error {
	// The parser otherwise builds (and sorts) OPA's capabilities for every
	// module; they are the same for all, and the parser only reads them.
	caps := parserCapabilities()
	errs := make([]error, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(runtime.GOMAXPROCS(0), len(files))) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(files) {
					return
				}
				f := &files[i]
				if f.Parsed != nil {
					continue
				}
				m, err := ast.ParseModuleWithOpts(f.Path, string(f.Raw), ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
				if err != nil {
					if strings.HasPrefix(f.Path, "sidecar/conditions/") || f.Path == trust.LibraryPath {
						err = fmt.Errorf("%s: generated Rego does not parse (a bug; please report it): %w", f.Path, err)
					}
					errs[i] = err
					continue
				}
				f.Parsed = m
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

var parserCapabilities = sync.OnceValue(func() *ast.Capabilities {
	return ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV1))
})

// scopeData is scope.Data() with every known scope as a key of "implies"
// (leaves map to []), which graph.reachable needs to follow an edge to it.
func scopeData() map[string]any {
	d := scope.Data()
	implies, _ := d["implies"].(map[string]any)
	if implies == nil {
		implies = map[string]any{}
		d["implies"] = implies
	}
	for _, s := range scope.All() {
		if _, ok := implies[s]; !ok {
			implies[s] = []any{}
		}
	}
	d["grants"] = grantsOf(implies)
	return d
}

// grantsOf is data.sidecar.scopes.grants: for each scope of implies, every
// scope that holding it grants (itself included), sorted. The proxy's
// common case reads it instead of walking the graph on every request.
func grantsOf(implies map[string]any) map[string]any {
	out := make(map[string]any, len(implies))
	for s := range implies {
		seen := map[string]bool{s: true}
		stack := []string{s}
		for len(stack) > 0 {
			cur := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			next, _ := implies[cur].([]any)
			for _, n := range next {
				if ns, ok := n.(string); ok && !seen[ns] {
					seen[ns] = true
					stack = append(stack, ns)
				}
			}
		}
		list := make([]string, 0, len(seen))
		for x := range seen {
			list = append(list, x)
		}
		sort.Strings(list)
		l := make([]any, len(list))
		for i, x := range list {
			l[i] = x
		}
		out[s] = l
	}
	return out
}

// CompileProviders generates the Rego for providers: the trust helper
// library, then one module per provider that has trust conditions, in
// provider order. This is what `oidc-sidecar policy compile` prints.
func CompileProviders(ps []*provider.Provider) ([]File, error) {
	libPath, libSrc := trust.Library()
	out := []File{{Path: libPath, Src: libSrc}}
	for _, p := range ps {
		if p.Conditions == nil || len(p.Conditions.Conditions) == 0 {
			continue
		}
		gp, src, mod, err := trust.GenerateModule(trust.Module{
			ProviderID: p.ID, ProviderName: p.Name, Source: p.Source.Base(), Expr: p.Conditions,
		})
		if err != nil {
			return nil, fmt.Errorf("provider %s (%s): %w", p.ID, p.Source, err)
		}
		out = append(out, File{Path: gp, Src: src, parsed: mod})
	}
	return out, nil
}

// contentRevision is a short hash of the bundle's modules and data, so the
// same sources always give the same revision.
func contentRevision(b *bundle.Bundle) (string, error) {
	h := sha256.New()
	for _, m := range b.Modules {
		fmt.Fprintf(h, "%s\x00%d\x00", m.Path, len(m.Raw))
		h.Write(m.Raw)
	}
	data, err := canonicalJSON(b.Data)
	if err != nil {
		return "", err
	}
	h.Write(data)
	return "sha256-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// EmbeddedPolicies returns the Rego that ships in policies/; with tests, the
// _test.rego files too.
func EmbeddedPolicies(tests bool) ([]File, error) {
	return readPolicies(policies.FS, ".", tests)
}

// LoadPolicies reads every .rego file under the given files or directories
// (recursively; hidden directories and testdata/ skipped). Paths in the
// bundle are relative to each directory given. Test files (_test.rego) are
// included only with tests.
func LoadPolicies(paths []string, tests bool) ([]File, error) {
	var out []File
	seen := map[string]string{}
	for _, root := range paths {
		st, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		var files []File
		if st.IsDir() {
			files, err = readPolicies(os.DirFS(root), ".", tests)
		} else {
			var src []byte
			src, err = os.ReadFile(root)
			files = []File{{Path: filepath.Base(root), Src: src}}
		}
		if err != nil {
			return nil, fmt.Errorf("policies %s: %w", root, err)
		}
		for _, f := range files {
			if prev, dup := seen[f.Path]; dup {
				return nil, fmt.Errorf("policies: %s and %s both map to %q in the bundle; rename one", prev, filepath.Join(root, f.Path), f.Path)
			}
			seen[f.Path] = filepath.Join(root, f.Path)
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("policies: no .rego files in %s", strings.Join(paths, ", "))
	}
	return out, nil
}

func readPolicies(fsys fs.FS, dir string, tests bool) ([]File, error) {
	var out []File
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return fs.SkipDir
			}
			return nil
		}
		if path.Ext(p) != ".rego" || (!tests && strings.HasSuffix(p, "_test.rego")) {
			return nil
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		out = append(out, File{Path: p, Src: src})
		return nil
	})
	return out, err
}

// WriteBundle writes b as a gzipped tarball that `opa run -b` and
// `opa inspect` accept.
func WriteBundle(w io.Writer, b *bundle.Bundle) error {
	return bundle.NewWriter(w).Write(*b)
}

// WriteBundleDir writes b as a bundle directory: .manifest, data.json and
// each module at its path — what `opa build`, `opa check`, `opa test` and
// `opa run -b` read as a directory. Generated condition modules already in
// dir (sidecar/conditions/, a reserved path) are removed first, so a
// provider that was deleted leaves no module behind.
func WriteBundleDir(dir string, b *bundle.Bundle) error {
	if err := os.RemoveAll(filepath.Join(dir, "sidecar", "conditions")); err != nil {
		return err
	}
	write := func(name string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(name, "/")))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}
	manifest, err := json.MarshalIndent(b.Manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := write(".manifest", append(manifest, '\n')); err != nil {
		return err
	}
	data, err := json.MarshalIndent(b.Data, "", "  ")
	if err != nil {
		return err
	}
	if err := write("data.json", append(data, '\n')); err != nil {
		return err
	}
	for _, m := range b.Modules {
		if err := write(m.Path, m.Raw); err != nil {
			return err
		}
	}
	return nil
}

// ReadBundle reads a gzipped bundle tarball (at most MaxBundleBytes).
func ReadBundle(r io.Reader) (*bundle.Bundle, error) {
	b, err := bundle.NewReader(r).WithSizeLimitBytes(MaxBundleBytes).WithRegoVersion(ast.RegoV1).Read()
	if err != nil {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	return &b, nil
}

// ReadBundleFile reads a bundle from a .tar.gz file or a bundle directory.
func ReadBundleFile(p string) (*bundle.Bundle, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		b, err := bundle.NewCustomReader(bundle.NewDirectoryLoader(p)).WithRegoVersion(ast.RegoV1).WithSizeLimitBytes(MaxBundleBytes).Read()
		if err != nil {
			return nil, fmt.Errorf("reading bundle directory %s: %w", p, err)
		}
		return &b, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	b, err := ReadBundle(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// errorList renders OPA errors one per line with file:row:col.
func errorList(err error) error {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return err
	}
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		loc := ""
		if e.Location != nil {
			loc = fmt.Sprintf("%s:%d:%d: ", e.Location.File, e.Location.Row, e.Location.Col)
		}
		lines = append(lines, loc+e.Code+": "+e.Message)
	}
	return errors.New(strings.Join(lines, "\n"))
}
