package proxy

import (
	"encoding/csv"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

func buddyTable() *table { return newTable(&policy.Snapshot{Routes: routes.Default()}) }

// TestRealTemplates: the comparison segment ({base}...{head}) and file paths
// under .../repository/contents/{path...} route as the upstream reads them.
func TestRealTemplates(t *testing.T) {
	tbl := buddyTable()
	const repo = "/workspaces/acme/projects/web/repository"
	for _, c := range []struct {
		method, path, tpl string
		vars              map[string]string
	}{
		{"GET", repo + "/comparison/506a396...7c4786f", "/workspaces/{workspace}/projects/{project}/repository/comparison/{base%2F}...{head%2F}",
			map[string]string{"base": "506a396", "head": "7c4786f"}},
		// Branch, tag and revision names with an encoded slash, as the
		// PHP SDK sends them: one segment, the variable exactly as sent.
		{"GET", repo + "/comparison/feature%2Flogin...main", "/workspaces/{workspace}/projects/{project}/repository/comparison/{base%2F}...{head%2F}",
			map[string]string{"base": "feature%2Flogin", "head": "main"}},
		{"GET", repo + "/branches/feature%2Flogin", "/workspaces/{workspace}/projects/{project}/repository/branches/{branch%2F}",
			map[string]string{"branch": "feature%2Flogin"}},
		{"DELETE", repo + "/branches/a%2fb%2Fc", "/workspaces/{workspace}/projects/{project}/repository/branches/{branch%2F}",
			map[string]string{"branch": "a%2fb%2Fc"}},
		{"GET", repo + "/tags/release%2F1.0", "/workspaces/{workspace}/projects/{project}/repository/tags/{tag%2F}",
			map[string]string{"tag": "release%2F1.0"}},
		{"GET", repo + "/commits/feature%2Flogin", "/workspaces/{workspace}/projects/{project}/repository/commits/{revision%2F}",
			map[string]string{"revision": "feature%2Flogin"}},
		{"GET", repo + "/contents", "/workspaces/{workspace}/projects/{project}/repository/contents", nil},
		{"GET", repo + "/contents/README.md", "/workspaces/{workspace}/projects/{project}/repository/contents/{path...}",
			map[string]string{"path": "README.md"}},
		{"GET", repo + "/contents/src/app/main.go", "/workspaces/{workspace}/projects/{project}/repository/contents/{path...}",
			map[string]string{"path": "src/app/main.go"}},
		{"PUT", repo + "/contents/docs/a%20b.md", "/workspaces/{workspace}/projects/{project}/repository/contents/{path...}",
			map[string]string{"path": "docs/a%20b.md"}},
		{"DELETE", repo + "/contents/.github/workflows/ci.yml", "/workspaces/{workspace}/projects/{project}/repository/contents/{path...}",
			map[string]string{"path": ".github/workflows/ci.yml"}},
		{"HEAD", repo + "/contents/x/y", "/workspaces/{workspace}/projects/{project}/repository/contents/{path...}",
			map[string]string{"path": "x/y"}},
		// A fixed template beats a rest-of-path one: the root listing.
		{"POST", repo + "/contents", "/workspaces/{workspace}/projects/{project}/repository/contents", nil},
		// Sandbox files: a rest-of-path variable under a sandbox, the file
		// path exactly as the upstream reads it.
		{"GET", "/workspaces/acme/sandboxes/sb-1/content/buddy/src/index.js", "/workspaces/{workspace}/sandboxes/{sandbox_id}/content/{path...}",
			map[string]string{"sandbox_id": "sb-1", "path": "buddy/src/index.js"}},
		{"GET", "/workspaces/acme/sandboxes/sb-1/apps/a1b2/logs", "/workspaces/{workspace}/sandboxes/{sandbox_id}/apps/{app_id}/logs",
			map[string]string{"sandbox_id": "sb-1", "app_id": "a1b2"}},
		{"POST", "/workspaces/acme/sandboxes/sb-1/app-logs", "/workspaces/{workspace}/sandboxes/{sandbox_id}/app-logs",
			map[string]string{"sandbox_id": "sb-1"}},
		{"GET", "/workspaces/acme/projects/web/environments/xo4p", "/workspaces/{workspace}/projects/{project}/environments/{environment_id}",
			map[string]string{"environment_id": "xo4p"}},
	} {
		m := tbl.match(c.method, c.path)
		if m.route == nil || m.route.Path != c.tpl {
			t.Errorf("%s %s: route %+v, want %s", c.method, c.path, m.route, c.tpl)
			continue
		}
		if m.vars["workspace"] != "acme" || (strings.Contains(c.tpl, "{project}") && m.vars["project"] != "web") {
			t.Errorf("%s %s: vars %v", c.method, c.path, m.vars)
		}
		for k, v := range c.vars {
			if m.vars[k] != v {
				t.Errorf("%s %s: %s = %q, want %q", c.method, c.path, k, m.vars[k], v)
			}
		}
	}
	for _, c := range []struct {
		method, path string
		wrongMethod  bool
		caseVariant  bool
	}{
		{"GET", repo + "/comparison/abc", false, false},        // no "...": no route
		{"GET", repo + "/COMPARISON/a...b", false, true},       // letter case
		{"GET", repo + "/Contents/src/main.go", false, true},   // letter case, rest of path
		{"PATCH", repo + "/contents/src/main.go", true, false}, // no PATCH route for files
	} {
		m := tbl.match(c.method, c.path)
		if m.route != nil || m.wrongMethod != c.wrongMethod || m.caseVariant != c.caseVariant {
			t.Errorf("%s %s: %+v, want no route, wrongMethod %v, caseVariant %v", c.method, c.path, m, c.wrongMethod, c.caseVariant)
		}
	}
	// An encoded slash anywhere but inside a variable that may hold one.
	for _, c := range []struct{ method, path string }{
		{"GET", "/workspaces/acme%2Fglobex/projects"},                    // {workspace}
		{"GET", repo + "/contents/src%2Fmain.go"},                        // {path...}
		{"GET", "/workspaces/acme/projects/web%2Fx/repository/branches"}, // {project}
		{"POST", repo + "/branches/feature%2Fx"},                         // no POST route for a branch
		{"GET", repo + "/nothing%2Fhere"},                                // no route
		{"GET", "/workspaces/acme/webhooks/1%2F2"},                       // {webhook_id}
	} {
		if m := tbl.match(c.method, c.path); m.route != nil || !m.slashRefused {
			t.Errorf("%s %s: %+v, want refused for its encoded slash", c.method, c.path, m)
		}
	}
	if got := strings.Join(tbl.allowed(repo+"/contents/src/main.go"), ","); got != "DELETE,GET,HEAD,PUT" {
		t.Errorf("Allow for a file = %s", got)
	}
}

// TestMatchRoute: the exported matcher applies the proxy's path checks.
func TestMatchRoute(t *testing.T) {
	rs := routes.Default()
	r, vars, err := MatchRoute(rs, "get", "/workspaces/acme/projects/web/repository/contents/src/main.go?revision=dev")
	if err != nil || r == nil || r.Scopes[0] != "REPOSITORY_READ" || vars["path"] != "src/main.go" {
		t.Fatalf("got %+v %v %v", r, vars, err)
	}
	for _, bad := range []string{"/workspaces/acme/projects/web/repository/contents/a/../../x", "/workspaces/acme/projects/web/repository/contents/a%2Fb",
		"/workspaces/acme/projects/web/repository/branches/a%2F..%2Fb", "relative"} {
		if _, _, err := MatchRoute(rs, "GET", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if r, _, err := MatchRoute(rs, "GET", "/nope"); err != nil || r != nil {
		t.Errorf("/nope: %+v %v", r, err)
	}
}

// clientSamples fills the :params of the clients' own path templates.
var clientSamples = map[string]string{
	"domain": "acme", "workspace": "acme", "project_name": "web", "project": "web",
	"pipeline_id": "7", "pipeline": "7", "execution_id": "42", "execution": "42", "action_id": "5",
	"member_id": "3", "group_id": "2", "permission_set_id": "4", "webhook_id": "9", "key_id": "11",
	"integration_id": "12", "integration_hash": "5ddb7c18", "email": "dev%40example.com",
	"name": "v1.0", "revision": "506a3963507943d6908154f4bc9646e829128a08",
	"base": "506a396", "head": "7c4786f", "path": "src/app/main.go",
}

var clientParamRE = regexp.MustCompile(`:([a-z_]+)`)

// TestOfficialClientsCovered: every route Buddy's official PHP and Node SDKs
// and the old buddy-cli call (sidecar/routes/testdata/clients.csv, derived
// from their sources) matches a route of Buddy's table that requires at
// least one scope, with the workspace variable where the client put it.
func TestOfficialClientsCovered(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "routes", "testdata", "clients.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	tbl := buddyTable()
	clients := map[string]int{}
	for _, rec := range recs[1:] {
		method, tpl, client, src := rec[0], rec[1], rec[2], rec[3]
		var missing string
		path := clientParamRE.ReplaceAllStringFunc(tpl, func(p string) string {
			v, ok := clientSamples[p[1:]]
			if !ok {
				missing = p
			}
			return v
		})
		if missing != "" {
			t.Fatalf("%s %s (%s): no sample value for %s", method, tpl, client, missing)
		}
		m := tbl.match(method, path)
		switch {
		case m.route == nil:
			t.Errorf("%s %s (%s %s): no route", method, path, client, src)
		case len(m.route.Scopes) == 0:
			t.Errorf("%s %s (%s): route %s has no scopes", method, path, client, m.route.Path)
		case strings.HasPrefix(tpl, "/workspaces/:") && m.vars[routes.WorkspaceVar] != "acme":
			t.Errorf("%s %s (%s): workspace var %q", method, path, client, m.vars[routes.WorkspaceVar])
		}
		clients[client]++
	}
	for _, c := range []string{"php-sdk", "node-sdk", "buddy-cli"} {
		if clients[c] == 0 {
			t.Errorf("no routes of %s in clients.csv", c)
		}
	}
}

// phpSamples are the values the PHP SDK would put in its :params, already
// encoded as it encodes them (urlencode: "/" becomes %2F): branch, tag and
// revision names with a slash.
var phpSamples = map[string]string{
	"name": "release%2Fv1.0", "revision": "feature%2Flogin", "base": "feature%2Flogin", "head": "main",
}

// TestPHPSDKThroughProxy sends every route of Buddy's official PHP SDK
// (clients.csv) through the real proxy to a fake upstream, with the
// :params encoded as the SDK encodes them — branch, tag and revision names
// holding a slash arrive as one segment with %2F — and checks that each is
// authorized and that the upstream receives the request target exactly as
// the client sent it, byte for byte.
func TestPHPSDKThroughProxy(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "routes", "testdata", "clients.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	fx := newRig(t, token.NewMemory(time.Now))
	tok := fx.mint(record(scope.All()...))
	encoded := 0
	for _, rec := range recs[1:] {
		method, tpl, client := rec[0], rec[1], rec[2]
		if client != "php-sdk" {
			continue
		}
		path := clientParamRE.ReplaceAllStringFunc(tpl, func(p string) string {
			if v, ok := phpSamples[p[1:]]; ok {
				return v
			}
			return clientSamples[p[1:]]
		})
		if strings.Contains(path, "%2F") {
			encoded++
		}
		before := len(fx.up.requests())
		res := fx.raw(method, path+"?page=1", map[string]string{"Authorization": "Bearer " + tok})
		if res.status != http.StatusOK {
			t.Errorf("%s %s: %d %s", method, path, res.status, res.body)
			continue
		}
		got := fx.up.requests()
		if len(got) != before+1 {
			t.Errorf("%s %s: %d upstream requests", method, path, len(got)-before)
			continue
		}
		if last := got[len(got)-1]; last.RequestURI != path+"?page=1" || last.Method != method {
			t.Errorf("%s %s: upstream received %s %s", method, path, last.Method, last.RequestURI)
		}
	}
	if encoded < 5 {
		t.Errorf("only %d PHP SDK routes carried an encoded slash; clients.csv lost its branch/tag/revision routes?", encoded)
	}
	// The same client with an encoded slash where no name may hold one.
	for _, target := range []string{
		"/workspaces/acme%2Fglobex/projects",
		"/workspaces/acme/projects/web/repository/contents/src%2Fmain.go",
		"/workspaces/acme/projects/web/repository/branches/a%2F..%2Fb",
	} {
		before := len(fx.up.requests())
		if res := fx.raw("GET", target, map[string]string{"Authorization": "Bearer " + tok}); res.status != http.StatusBadRequest ||
			!strings.Contains(res.body, "encoded slash") {
			t.Errorf("GET %s: %d %s, want 400 for the encoded slash", target, res.status, res.body)
		}
		if n := len(fx.up.requests()) - before; n != 0 {
			t.Errorf("GET %s reached the upstream", target)
		}
	}
}
