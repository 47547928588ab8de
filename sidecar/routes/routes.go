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
}

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
	segmentRE = regexp.MustCompile(`^([A-Za-z0-9._~!$&'()*+,;=:@-]+|\{[a-z][a-z0-9_]*\})$`)
)

// ParseCSV reads a table with the header method,path,required_scopes[,source_url]
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
	return out, nil
}

// checkPath validates a path template: absolute, no empty, "." or ".."
// segments, variables as {name}.
func checkPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with /"
	}
	if p == "/" {
		return ""
	}
	vars := map[string]bool{}
	for _, seg := range strings.Split(p[1:], "/") {
		switch {
		case seg == "":
			return "has an empty segment (// or a trailing /)"
		case seg == "." || seg == "..":
			return "has a . or .. segment"
		case !segmentRE.MatchString(seg):
			return fmt.Sprintf("segment %q is neither literal text nor a {variable} (lower-case name)", seg)
		}
		if strings.HasPrefix(seg, "{") {
			if vars[seg] {
				return fmt.Sprintf("variable %s appears twice", seg)
			}
			vars[seg] = true
		}
	}
	return ""
}

// normalize replaces variable names so that /a/{x} and /a/{y} compare equal.
func normalize(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}

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
		out[i] = map[string]any{"method": r.Method, "path": r.Path, "scopes": scopes, "source": r.Source}
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
	return out, nil
}
