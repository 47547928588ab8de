package routes

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

var update = flag.Bool("update", false, "rewrite the generated blocks of docs/routes.md")

func TestDefault(t *testing.T) {
	rs := Default()
	if len(rs) < 130 {
		t.Fatalf("Buddy table has %d routes, want the whole API reference (at least 130)", len(rs))
	}
	var run *Route
	for i := range rs {
		r := &rs[i]
		if r.Method == "POST" && r.Path == "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions" {
			run = r
		}
		for _, s := range r.Scopes {
			if s == "WORKSPACE" && len(r.Scopes) > 1 {
				t.Errorf("%s %s: WORKSPACE next to a specific scope; the newer Buddy docs drop it (docs/routes.md)", r.Method, r.Path)
			}
		}
		if strings.HasPrefix(r.Path, "/oauth2") || r.Path == "/user/oidc/tokens" {
			t.Errorf("%s must not be in the proxied table", r.Path)
		}
		if len(r.Scopes) == 0 {
			t.Errorf("%s %s: no scopes", r.Method, r.Path)
		}
		if r.Basis != BasisPage && r.Basis != BasisRule {
			t.Errorf("%s %s: basis %q", r.Method, r.Path, r.Basis)
		}
		if !strings.HasPrefix(r.Source, "https://") {
			t.Errorf("%s %s: source %q is not a URL", r.Method, r.Path, r.Source)
		}
		if _, ok := SectionOf(r.Path); !ok {
			t.Errorf("%s %s: in no API section", r.Method, r.Path)
		}
	}
	if run == nil || !reflect.DeepEqual(run.Scopes, []string{"EXECUTION_RUN"}) {
		t.Fatalf("run execution route = %+v, want EXECUTION_RUN", run)
	}
	// Decisions docs/routes.md records for pages that disagree.
	for _, c := range []struct{ method, path, scope, basis string }{
		// Newest page names ENVIRONMENT_READ, a name no scope list has:
		// the rule stays (January 2026 pages said ENVIRONMENT_INFO).
		{"GET", "/workspaces/{workspace}/environments/{environment_id}", "ENVIRONMENT_MANAGE", BasisRule},
		// Only page (March 2025): "WORKSPACE, ENVIRONMENT_INFO".
		{"GET", "/workspaces/{workspace}/projects/{project}/environments/{environment_id}", "ENVIRONMENT_INFO", BasisPage},
		// Newest page (January 2026) SANDBOX_MANAGE; September 2025 SANDBOX_INFO.
		{"GET", "/workspaces/{workspace}/sandboxes/{sandbox_id}/snapshots/{snapshot_id}", "SANDBOX_MANAGE", BasisPage},
		{"GET", "/workspaces/{workspace}/sandboxes/{sandbox_id}/content/{path...}", "SANDBOX_MANAGE", BasisRule},
		// Newest copy names PIPELINE_READ; October 2025 page EXECUTION_INFO.
		{"GET", "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions/{execution}/action_executions/{action_execution_id}", "EXECUTION_MANAGE", BasisRule},
		// Newest copies name DOMAIN_READ / DOMAIN_MANAGE; April 2026 page ZONE_READ.
		{"GET", "/workspaces/{workspace}/domains/{domain_id}/records", "ZONE_WRITE", BasisRule},
		{"DELETE", "/workspaces/{workspace}/domains/{domain_id}", "ZONE_WRITE", BasisRule},
		// Newest page (March 2026) PROJECT_DELETE; 2022 "WORKSPACE, PROJECT_DELETE".
		{"DELETE", "/workspaces/{workspace}/projects/{project}", "PROJECT_DELETE", BasisPage},
		// GET /user/emails needs USER_EMAIL (MANAGE_EMAILS implies it), not MANAGE_EMAILS.
		{"GET", "/user/emails", "USER_EMAIL", BasisPage},
	} {
		var found *Route
		for i := range rs {
			if rs[i].Method == c.method && rs[i].Path == c.path {
				found = &rs[i]
			}
		}
		if found == nil || !reflect.DeepEqual(found.Scopes, []string{c.scope}) || found.Basis != c.basis {
			t.Errorf("%s %s = %+v, want %s (%s)", c.method, c.path, found, c.scope, c.basis)
		}
	}
}

// TestScopesKnown: every scope of Buddy's table is a known scope name (the
// embedded table is parsed without the check; Load uses it).
func TestScopesKnown(t *testing.T) {
	if _, err := ParseCSV("buddy.csv", bytes.NewReader(buddyCSV), scope.Known); err != nil {
		t.Fatal(err)
	}
	for _, s := range Sections() {
		if !scope.Known(s.Rule) {
			t.Errorf("section %s: rule scope %s unknown", s.Name, s.Rule)
		}
	}
}

// TestRule: every route marked "rule" carries exactly the scopes of the
// conservative rule, and Lint lists each of them and no error.
func TestRule(t *testing.T) {
	rs := Default()
	notes, errs := Lint(rs)
	if errs != 0 {
		t.Fatalf("Lint found %d errors in Buddy's table: %v", errs, notes)
	}
	n := 0
	for _, r := range rs {
		if r.Basis != BasisRule {
			continue
		}
		n++
		want, _ := RuleScopes(r.Method, r.Path)
		if !reflect.DeepEqual(r.Scopes, want) {
			t.Errorf("%s %s: %v, rule gives %v", r.Method, r.Path, r.Scopes, want)
		}
	}
	if n == 0 || len(notes) != n {
		t.Errorf("%d rule routes, Lint listed %d", n, len(notes))
	}
	// Lint flags what is wrong in a custom table.
	bad := []Route{
		{Method: "GET", Path: "/workspaces/{workspace}/webhooks"},
		{Method: "GET", Path: "/workspaces/{workspace}/targets", Scopes: []string{"TARGET_INFO"}, Basis: BasisRule},
		{Method: "GET", Path: "/custom", Scopes: []string{"X"}},
	}
	notes, errs = Lint(bad)
	if errs != 2 || len(notes) != 2 || !strings.Contains(notes[0].Message, "WEBHOOK_MANAGE") || !strings.Contains(notes[1].Message, "TARGET_MANAGE") {
		t.Errorf("Lint = %v, %d", notes, errs)
	}
	if s, _ := RuleScopes("DELETE", "/workspaces/{w}/projects/{p}"); !reflect.DeepEqual(s, []string{"PROJECT_DELETE"}) {
		t.Errorf("project delete rule = %v", s)
	}
}

func TestFilter(t *testing.T) {
	rs := Default()
	got := Filter{Method: "delete", PathPrefix: "/workspaces/{workspace}/projects/{project}/repository"}.Select(rs)
	if len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	zone := Filter{Scope: "zone_read"}.Select(rs)
	if len(zone) == 0 {
		t.Error("no ZONE_READ route")
	}
	for _, r := range zone {
		if !slices.Contains(r.Scopes, "ZONE_READ") {
			t.Errorf("%v", r)
		}
	}
	rule, page := Filter{Basis: BasisRule}.Select(rs), Filter{Basis: BasisPage}.Select(rs)
	if len(rule)+len(page) != len(rs) {
		t.Error("basis filter")
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, got); err != nil || !strings.Contains(b.String(), `"section": "repository: contents"`) {
		t.Errorf("json: %v %s", err, b.String())
	}
	b.Reset()
	if err := WriteText(&b, got); err != nil || !strings.HasPrefix(b.String(), "METHOD") || strings.Count(b.String(), "\n") != 3 {
		t.Errorf("text: %v %q", err, b.String())
	}
}

func TestParseCSVErrors(t *testing.T) {
	src := "method,path,required_scopes\n" +
		"GET,/ok/{workspace},WORKSPACE\n" +
		"FETCH,/a,WORKSPACE\n" +
		"GET,a/b,WORKSPACE\n" +
		"GET,/a//b,WORKSPACE\n" +
		"GET,/a/../b,WORKSPACE\n" +
		"GET,/a/{x}/{x},WORKSPACE\n" +
		"GET,/ok/{other},WORKSPACE\n" +
		"GET,/c,NOPE\n" +
		"GET,/d\n" +
		"GET,/e/{path...}/f,WORKSPACE\n" +
		"GET,/g/{a}{b},WORKSPACE\n" +
		"GET,/h/{a:.*},WORKSPACE\n" +
		"GET,/i,WORKSPACE,,guess\n"
	_, err := ParseCSV("t.csv", strings.NewReader(src), func(s string) bool { return s == "WORKSPACE" })
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		`t.csv:3: method "FETCH" is not one of`,
		`t.csv:4: path "a/b": must start with /`,
		`t.csv:5: path "/a//b": has an empty segment`,
		`t.csv:6: path "/a/../b": has a . or .. segment`,
		`t.csv:7: path "/a/{x}/{x}": variable {x} appears twice`,
		`t.csv:8: GET /ok/{other} duplicates the route on line 2`,
		`t.csv:9: unknown scope "NOPE"`,
		`t.csv:10: want at least 3 columns`,
		`t.csv:11: path "/e/{path...}/f": {path...} (the rest of the path) must be the last segment`,
		`t.csv:12: path "/g/{a}{b}": segment "{a}{b}" has two variables with no literal text between them`,
		`t.csv:13: path "/h/{a:.*}": segment "{a:.*}" is neither`,
		`t.csv:14: basis "guess" is neither`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := ParseCSV("h.csv", strings.NewReader("a,b,c\n"), nil); err == nil || !strings.Contains(err.Error(), "method,path,required_scopes") {
		t.Errorf("bad header: %v", err)
	}
	if _, err := ParseCSV("e.csv", strings.NewReader("method,path,required_scopes\n"), nil); err == nil || !strings.Contains(err.Error(), "no routes") {
		t.Errorf("empty table: %v", err)
	}
}

func TestDataRoundTrip(t *testing.T) {
	rs := Default()
	back, err := FromData(Data(rs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(Data(back), Data(rs)) {
		t.Fatal("Data/FromData is not a round trip")
	}
	if _, err := FromData(map[string]any{}); err == nil {
		t.Fatal("FromData accepted an object")
	}
	if _, err := FromData([]any{map[string]any{"method": "GET", "path": "x"}}); err == nil {
		t.Fatal("FromData accepted a relative path")
	}
}

func TestTemplates(t *testing.T) {
	src := "method,path,required_scopes\n" +
		"GET,/r/comparison/{base}...{head},A\n" +
		"GET,/r/contents/{path...},A\n" +
		"GET,/r/x-{id}.json,A\n"
	rs, err := ParseCSV("t.csv", strings.NewReader(src), nil)
	if err != nil || len(rs) != 3 {
		t.Fatalf("%v %v", rs, err)
	}
	if _, err := ParseCSV("t.csv", strings.NewReader(src+"GET,/r/contents/{file...},A\nGET,/r/comparison/{x}...{y},A\n"), nil); err == nil ||
		!strings.Contains(err.Error(), "t.csv:5: GET /r/contents/{file...} duplicates") || !strings.Contains(err.Error(), "t.csv:6: GET /r/comparison/{x}...{y} duplicates") {
		t.Fatalf("duplicates: %v", err)
	}
}

// TestDocs keeps the generated blocks of docs/routes.md (route count per
// API section, the whole table) in step with buddy.csv. Run
// go test ./sidecar/routes -run TestDocs -update to rewrite them.
func TestDocs(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "routes.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	rs := Default()
	for _, blk := range []struct{ name, body string }{
		{"route-sections", SectionsMarkdown(rs)},
		{"route-table", TableMarkdown(rs)},
	} {
		begin, end := "<!-- BEGIN GENERATED "+blk.name+" -->\n", "<!-- END GENERATED "+blk.name+" -->"
		i, j := strings.Index(doc, begin), strings.Index(doc, end)
		if i < 0 || j < i {
			t.Fatalf("docs/routes.md lacks the %s markers", blk.name)
		}
		if doc[i+len(begin):j] != blk.body {
			if !*update {
				t.Errorf("docs/routes.md: the %s block is out of date; run go test ./sidecar/routes -run TestDocs -update", blk.name)
				continue
			}
			doc = doc[:i+len(begin)] + blk.body + doc[j:]
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSlashVars: {name%2F} is allowed only in the last segment and only
// where no other template continues below it, so that an upstream which
// decodes %2F cannot reach another route.
func TestSlashVars(t *testing.T) {
	ok := "method,path,required_scopes\nGET,/a/{x}/b/{name%2F},WORKSPACE\nGET,/a/{x}/c/{p...},WORKSPACE\nGET,/a/{x}/b,WORKSPACE\n"
	rs, err := ParseCSV("ok.csv", strings.NewReader(ok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sv := SlashVars(rs[0].Path); len(sv) != 1 || !sv["name"] || MuxTemplate(rs[0].Path) != "/a/{x}/b/{name}" {
		t.Errorf("SlashVars = %v, MuxTemplate = %s", sv, MuxTemplate(rs[0].Path))
	}
	for body, want := range map[string]string{
		"GET,/a/{name%2F}/b,WORKSPACE\n":                                "{name%2F} (a variable that may hold an encoded slash) must be in the last segment",
		"GET,/a/b/{name%2F},WORKSPACE\nDELETE,/a/{y}/{z}/c,WORKSPACE\n": "GET /a/b/{name%2F}: its %2F variable could reach DELETE /a/{y}/{z}/c",
		"GET,/a/b/{name%2F},WORKSPACE\nGET,/a/{p...},WORKSPACE\n":       "GET /a/b/{name%2F}: its %2F variable could reach GET /a/{p...}",
		"GET,/a/b/{name%2F},WORKSPACE\nGET,/a/b/{n}/{m},WORKSPACE\n":    "could reach GET /a/b/{n}/{m}",
	} {
		_, err := ParseCSV("bad.csv", strings.NewReader("method,path,required_scopes\n"+body), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", body, err, want)
		}
	}
	// The same check applies to a table read back from a bundle.
	bad, _ := ParseCSV("x.csv", strings.NewReader("method,path,required_scopes\nGET,/a/b/{name%2F},WORKSPACE\nGET,/c/{n}/{m}/d,WORKSPACE\n"), nil)
	data := Data(bad)
	data = append(data, map[string]any{"method": "GET", "path": "/a/{q}/{r}/s", "scopes": []any{"WORKSPACE"}})
	if _, err := FromData(data); err == nil || !strings.Contains(err.Error(), "could reach GET /a/{q}/{r}/s") {
		t.Errorf("FromData: %v", err)
	}
}
