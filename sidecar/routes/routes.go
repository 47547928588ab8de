// Package routes holds the proxy's route table: which method and path
// template need which scopes. The table is data in the policy bundle
// (data.sidecar.routes), so a deployment can replace or extend it to front
// another API; Buddy's table ships as the default.
package routes

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Route is one row of the table.
type Route struct {
	Method string   // upper-case HTTP method
	Path   string   // gorilla/mux path template, e.g. /workspaces/{workspace}/projects
	Scopes []string // every one is required (through the scope hierarchy); empty: any valid token
	Source string   // where the requirement comes from (documentation URL), informational
	// Basis says where Scopes come from: BasisPage (the cited page states
	// them) or BasisRule (the page states none; the conservative rule of
	// docs/routes.md chose them). Empty in tables that do not say.
	Basis string
}

// The values of Route.Basis (the optional fifth CSV column).
const (
	BasisPage = "page"
	BasisRule = "rule"
)

// WorkspaceVar is the path variable checked against a token's workspaces.
const WorkspaceVar = "workspace"

//go:embed buddy.csv
var buddyCSV []byte

// Default returns Buddy's route table (see docs/routes.md for how it was
// derived from Buddy's documentation).
func Default() []Route {
	rs, err := ParseCSV("buddy.csv", bytes.NewReader(buddyCSV), nil)
	if err != nil {
		panic("routes: embedded Buddy table is invalid: " + err.Error()) // caught by TestDefault
	}
	return rs
}

// Load reads a route table from a CSV file (see ParseCSV).
func Load(path string, knownScope func(string) bool) ([]Route, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("route table: %w", err)
	}
	defer f.Close()
	return ParseCSV(path, f, knownScope)
}

var (
	methods = map[string]bool{
		http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
		http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
	}
	literalRE = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*+,;=:@-]+$`)
	// varRE finds the {name} and {name%2F} variables of a segment;
	// {name...} (rest of the path) is checked separately.
	varRE  = regexp.MustCompile(`\{[a-z][a-z0-9_]*(?:%2F)?\}`)
	restRE = regexp.MustCompile(`^\{[a-z][a-z0-9_]*\.\.\.\}$`)
)

// ParseCSV reads a table with the header method,path,required_scopes[,source_url[,basis]]
// (scopes joined with "|"), the format of Buddy's published table. Every
// problem is reported with its line number; knownScope, when not nil, rejects
// scope names it does not know.
func ParseCSV(name string, r io.Reader, knownScope func(string) bool) ([]Route, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: cannot read the header line: %w", name, err)
	}
	want := []string{"method", "path", "required_scopes"}
	if len(header) < 3 || !equalFold(header[:3], want) {
		return nil, fmt.Errorf("%s:1: header is %q; the first three columns must be method,path,required_scopes", name, strings.Join(header, ","))
	}
	var errs []error
	var out []Route
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, err))
			break
		}
		if len(rec) < 3 {
			errs = append(errs, fmt.Errorf("%s:%d: want at least 3 columns (method,path,required_scopes), found %d", name, line, len(rec)))
			continue
		}
		rt := Route{Method: strings.ToUpper(strings.TrimSpace(rec[0])), Path: strings.TrimSpace(rec[1])}
		if len(rec) > 3 {
			rt.Source = strings.TrimSpace(rec[3])
		}
		if len(rec) > 4 {
			rt.Basis = strings.TrimSpace(rec[4])
			if rt.Basis != "" && rt.Basis != BasisPage && rt.Basis != BasisRule {
				errs = append(errs, fmt.Errorf("%s:%d: basis %q is neither %q nor %q (or empty)", name, line, rt.Basis, BasisPage, BasisRule))
			}
		}
		if !methods[rt.Method] {
			errs = append(errs, fmt.Errorf("%s:%d: method %q is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", name, line, rec[0]))
		}
		if msg := checkPath(rt.Path); msg != "" {
			errs = append(errs, fmt.Errorf("%s:%d: path %q: %s", name, line, rt.Path, msg))
		}
		for _, s := range strings.Split(rec[2], "|") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if knownScope != nil && !knownScope(s) {
				errs = append(errs, fmt.Errorf("%s:%d: unknown scope %q", name, line, s))
			}
			rt.Scopes = append(rt.Scopes, s)
		}
		key := rt.Method + " " + normalize(rt.Path)
		if first, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: %s %s duplicates the route on line %d", name, line, rt.Method, rt.Path, first))
		}
		seen[key] = line
		out = append(out, rt)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: the route table has no routes", name)
	}
	if err := checkSlashVars(out); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// SlashMarker ends the name of a variable that may hold an encoded slash:
// {branch%2F} matches one path segment, in which %2F is allowed (a branch
// named feature/x sent as feature%2Fx). Such a variable must be in the last
// segment of its template, and no other template may continue below it
// (checkSlashVars), so that an upstream which decodes %2F before routing
// still picks the same route (docs/routes.md, "Encoded slashes").
const SlashMarker = "%2F"

// SlashVars returns the names (without SlashMarker) of the variables of
// template tpl that may hold an encoded slash; nil if none.
func SlashVars(tpl string) map[string]bool {
	var out map[string]bool
	for _, v := range varRE.FindAllString(tpl, -1) {
		if n, ok := strings.CutSuffix(v[1:len(v)-1], SlashMarker); ok {
			if out == nil {
				out = map[string]bool{}
			}
			out[n] = true
		}
	}
	return out
}

// MuxTemplate is tpl with the slash markers removed: {branch%2F} becomes
// {branch}, the form gorilla/mux and the policy's variables use.
func MuxTemplate(tpl string) string {
	return strings.ReplaceAll(tpl, SlashMarker+"}", "}")
}

// checkSlashVars refuses a table in which a variable that may hold an
// encoded slash could, once an upstream decodes the slash, make the path
// reach another template: for a template whose last segment (index k) has
// such a variable, every other template with more than k+1 segments (or a
// {name...} one reaching past index k) must differ from it in a literal
// segment before k. The decoded path has the template's first k segments
// and at least two more, so only such templates could match it. (o.Path
// of "/" never reaches here: it has one segment, "".)
func checkSlashVars(rs []Route) error {
	var errs []error
	for i, r := range rs {
		if SlashVars(r.Path) == nil {
			continue
		}
		segs := strings.Split(r.Path[1:], "/")
		k := len(segs) - 1
		for j, o := range rs {
			if i == j {
				continue
			}
			osegs := strings.Split(o.Path[1:], "/")
			fixed := len(osegs)
			if restRE.MatchString(osegs[fixed-1]) {
				fixed-- // {name...} takes any number of segments from there
			} else if fixed < k+2 {
				continue
			}
			clash := true
			for x := 0; x < k && x < fixed; x++ {
				a, b := segs[x], osegs[x]
				if !strings.Contains(a, "{") && !strings.Contains(b, "{") && a != b {
					clash = false
					break
				}
			}
			if clash {
				errs = append(errs, fmt.Errorf("%s %s: its %%2F variable could reach %s %s once the upstream decodes the slash; "+
					"drop the %%2F marker or make the templates differ in a literal segment", r.Method, r.Path, o.Method, o.Path))
			}
		}
	}
	return errors.Join(errs...)
}

// checkPath validates a path template: absolute, no empty, "." or ".."
// segments. A segment is literal text, a {variable}, literal text and
// variables mixed with literal text between any two variables
// ({base}...{head}), or — last segment only — {name...}, the rest of the
// path (one or more segments).
func checkPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with /"
	}
	if p == "/" {
		return ""
	}
	vars := map[string]bool{}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		switch {
		case seg == "":
			return "has an empty segment (// or a trailing /)"
		case seg == "." || seg == "..":
			return "has a . or .. segment"
		}
		var names []string
		if restRE.MatchString(seg) {
			if i != len(segs)-1 {
				return fmt.Sprintf("%s (the rest of the path) must be the last segment", seg)
			}
			names = []string{seg[1 : len(seg)-4]}
		} else {
			locs := varRE.FindAllStringIndex(seg, -1)
			prev := 0
			for j, l := range locs {
				if lit := seg[prev:l[0]]; lit != "" && !literalRE.MatchString(lit) {
					return fmt.Sprintf("segment %q is neither literal text nor {variables} (lower-case names)", seg)
				} else if lit == "" && j > 0 {
					return fmt.Sprintf("segment %q has two variables with no literal text between them", seg)
				}
				name := seg[l[0]+1 : l[1]-1]
				if n, ok := strings.CutSuffix(name, SlashMarker); ok {
					if i != len(segs)-1 {
						return fmt.Sprintf("{%s} (a variable that may hold an encoded slash) must be in the last segment", name)
					}
					name = n
				}
				names = append(names, name)
				prev = l[1]
			}
			if lit := seg[prev:]; lit != "" && !literalRE.MatchString(lit) {
				return fmt.Sprintf("segment %q is neither literal text nor {variables} (lower-case names)", seg)
			}
		}
		for _, n := range names {
			if vars[n] {
				return fmt.Sprintf("variable {%s} appears twice", n)
			}
			vars[n] = true
		}
	}
	return ""
}

// normalize replaces variable names so that /a/{x} and /a/{y} compare equal.
func normalize(p string) string {
	return varRE.ReplaceAllString(restVarRE.ReplaceAllString(p, "{...}"), "{}")
}

var restVarRE = regexp.MustCompile(`\{[a-z][a-z0-9_]*\.\.\.\}`)

func equalFold(a, b []string) bool {
	for i := range b {
		if !strings.EqualFold(strings.TrimSpace(a[i]), b[i]) {
			return false
		}
	}
	return true
}

// Data renders the table as the OPA document stored at data.sidecar.routes:
// [{"method", "path", "scopes", "source"}], sorted by path then method.
func Data(rs []Route) []any {
	sorted := append([]Route(nil), rs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Path != sorted[j].Path {
			return sorted[i].Path < sorted[j].Path
		}
		return sorted[i].Method < sorted[j].Method
	})
	out := make([]any, len(sorted))
	for i, r := range sorted {
		scopes := make([]any, len(r.Scopes))
		for j, s := range r.Scopes {
			scopes[j] = s
		}
		out[i] = map[string]any{"method": r.Method, "path": r.Path, "scopes": scopes, "source": r.Source, "basis": r.Basis}
	}
	return out
}

// FromData is the inverse of Data, used when the table comes from a bundle.
func FromData(v any) ([]Route, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("data.sidecar.routes must be an array of routes, found %T", v)
	}
	out := make([]Route, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("data.sidecar.routes[%d] must be an object", i)
		}
		var r Route
		r.Method, _ = m["method"].(string)
		r.Path, _ = m["path"].(string)
		r.Source, _ = m["source"].(string)
		r.Basis, _ = m["basis"].(string)
		r.Method = strings.ToUpper(r.Method)
		if !methods[r.Method] {
			return nil, fmt.Errorf("data.sidecar.routes[%d]: method %q is not a supported HTTP method", i, r.Method)
		}
		if msg := checkPath(r.Path); msg != "" {
			return nil, fmt.Errorf("data.sidecar.routes[%d]: path %q: %s", i, r.Path, msg)
		}
		if raw, ok := m["scopes"]; ok && raw != nil {
			ss, ok := raw.([]any)
			if !ok {
				return nil, fmt.Errorf("data.sidecar.routes[%d].scopes must be an array of strings", i)
			}
			for _, s := range ss {
				str, ok := s.(string)
				if !ok {
					return nil, fmt.Errorf("data.sidecar.routes[%d].scopes must be an array of strings", i)
				}
				r.Scopes = append(r.Scopes, str)
			}
		}
		out = append(out, r)
	}
	if err := checkSlashVars(out); err != nil {
		return nil, fmt.Errorf("data.sidecar.routes: %w", err)
	}
	return out, nil
}
