package policy

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/oidc-sidecar/oidc-sidecar/policies"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
)

// TestOptions configures RunTests.
type TestOptions struct {
	// Paths are policy directories or files, tests and JSON/YAML data
	// (fixtures) included, loaded as `opa test` loads them. Empty: the
	// embedded policies/.
	Paths     []string
	Providers []*provider.Provider // compiled into the bundle the tests run against
	Routes    []routes.Route       // nil = Buddy's table
	Settings  Settings
	Run       string // only tests whose name matches this regular expression
	Verbose   bool
	JSON      bool          // report as `opa test --format json` does: an array of result objects
	Timeout   time.Duration // per test; 0 = 5s
	Out       io.Writer
}

// TestSummary counts test results.
type TestSummary struct {
	Pass, Fail, Error, Skip int
}

// OK reports whether every test that ran passed and at least one ran.
func (s TestSummary) OK() bool { return s.Fail == 0 && s.Error == 0 && s.Pass > 0 }

// RunTests runs the test_ rules of the given policies against a bundle built
// from them and the providers, and prints the results like `opa test`
// (`opa test -v` with Verbose).
func RunTests(ctx context.Context, o TestOptions) (TestSummary, error) {
	var sum TestSummary
	if o.Out == nil {
		o.Out = io.Discard
	}
	var fsys fs.FS
	paths := o.Paths
	if len(paths) == 0 {
		fsys, paths = policies.FS, []string{"."}
	}
	l := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).WithProcessAnnotation(true)
	if fsys != nil {
		l = l.WithFS(fsys)
	}
	for _, p := range paths {
		if fsys == nil {
			if _, err := os.Stat(p); err != nil {
				return sum, fmt.Errorf("policy test: %w", err)
			}
		}
	}
	loaded, err := l.Filtered(paths, func(_ string, info fs.FileInfo, depth int) bool {
		return depth > 0 && strings.HasPrefix(info.Name(), ".")
	})
	if err != nil {
		return sum, fmt.Errorf("policy test: %w", errorList(err))
	}

	var sources []File
	tests := map[string]*ast.Module{}
	for name, rf := range loaded.Modules {
		if strings.HasSuffix(name, "_test.rego") {
			tests[name] = rf.Parsed
			continue
		}
		sources = append(sources, File{Path: name, Src: rf.Raw})
	}
	sort.Slice(sources, func(i, j int) bool { return sources[i].Path < sources[j].Path })
	if len(tests) == 0 {
		return sum, fmt.Errorf("policy test: no _test.rego files in %s", strings.Join(paths, ", "))
	}
	b, err := Build(ctx, Sources{Providers: o.Providers, Policies: sources, Routes: o.Routes, Settings: o.Settings})
	if err != nil {
		return sum, fmt.Errorf("policy test: %w", err)
	}
	modules := map[string]*ast.Module{}
	for _, m := range b.Modules {
		modules[m.Path] = m.Parsed
	}
	for name, m := range tests {
		modules[name] = m
	}
	data := map[string]any{}
	for k, v := range loaded.Documents {
		if k == Root {
			return sum, fmt.Errorf("policy test: a data file under the policy paths writes data.%s, which the bundle owns; move fixtures under testdata/", Root)
		}
		data[k] = v
	}
	for k, v := range b.Data {
		data[k] = v
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return sum, err
	}
	defer store.Abort(ctx, txn)

	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	compiler := ast.NewCompiler().
		SetErrorLimit(0).
		WithEnablePrintStatements(true).
		WithUnsafeBuiltins(unsafeBuiltins).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		SetTimeout(timeout)
	if o.Run != "" {
		runner = runner.Filter(o.Run)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return sum, fmt.Errorf("policy test: %w", errorList(err))
	}
	var results []*tester.Result
	for r := range ch {
		switch {
		case r.Error != nil:
			sum.Error++
		case r.Skip:
			sum.Skip++
		case r.Fail:
			sum.Fail++
		default:
			sum.Pass++
		}
		results = append(results, r)
	}
	// Results arrive in any order; report them sorted, like a stable CI log.
	sort.Slice(results, func(i, j int) bool {
		if results[i].Package != results[j].Package {
			return results[i].Package < results[j].Package
		}
		return results[i].Name < results[j].Name
	})
	out := make(chan *tester.Result, len(results))
	for _, r := range results {
		out <- r
	}
	close(out)
	var rep tester.Reporter = tester.PrettyReporter{Output: o.Out, Verbose: o.Verbose, FailureLine: true}
	if o.JSON {
		rep = tester.JSONReporter{Output: o.Out}
	}
	if err := rep.Report(out); err != nil {
		return sum, err
	}
	if sum.Pass+sum.Fail+sum.Error == 0 {
		return sum, fmt.Errorf("policy test: no test matched %q", o.Run)
	}
	return sum, nil
}
