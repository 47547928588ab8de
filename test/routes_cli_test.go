package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoutesCLI runs `oidc-sidecar routes` as an operator would: the table
// with filters, --match on a request, --json, and `routes lint` on the
// built-in table and on a table with a bad row.
func TestRoutesCLI(t *testing.T) {
	t.Run("match", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "routes", "--match", "GET /workspaces/acme/projects/web/repository/contents/src/app/main.go?revision=dev")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		for _, want := range []string{
			"/workspaces/{workspace}/projects/{project}/repository/contents/{path...}",
			"REPOSITORY_READ",
			"  path = src/app/main.go\n",
			"  workspace = acme\n",
			"  project = web\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}

		out, _, code = runCLI(t, nil, "routes", "--match", "GET /workspaces/acme/nothing-here")
		if code != 1 || !strings.Contains(out, "GET /workspaces/acme/nothing-here matches no route: refused under unknown_routes: deny") {
			t.Errorf("unknown route: exit %d, %s", code, out)
		}

		out, errOut, code = runCLI(t, nil, "routes", "--match", "GET /workspaces/acme/projects/web/repository/contents/a/../b")
		if code == 0 || !strings.Contains(out+errOut, "is refused by the proxy (400)") {
			t.Errorf("dot-dot path: exit %d, %s%s", code, out, errOut)
		}

		_, errOut, code = runCLI(t, nil, "routes", "--match", "/workspaces")
		if code == 0 || !strings.Contains(errOut, `want "METHOD /path"`) {
			t.Errorf("no method: exit %d, %s", code, errOut)
		}

		out, errOut, code = runCLI(t, nil, "routes", "--json", "--match", "POST /workspaces/acme/projects/web/pipelines/7/executions")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		var m struct {
			Route struct {
				Method, Path string
				Scopes       []string
			}
			Vars map[string]string
		}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("--json --match: %v\n%s", err, out)
		}
		if m.Route.Method != "POST" || m.Route.Path != "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions" ||
			strings.Join(m.Route.Scopes, ",") != "EXECUTION_RUN" || m.Vars["pipeline"] != "7" || m.Vars["workspace"] != "acme" {
			t.Errorf("--json --match = %+v", m)
		}
	})

	t.Run("scope filter", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "routes", "--scope", "REPOSITORY_READ", "--method", "GET")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		if !strings.Contains(out, "/workspaces/{workspace}/projects/{project}/repository/commits/{revision%2F}") {
			t.Errorf("--scope REPOSITORY_READ lacks the commit route:\n%s", out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.Contains(line, "/workspaces/") && (!strings.Contains(line, "REPOSITORY_READ") || !strings.HasPrefix(strings.TrimSpace(line), "GET")) {
				t.Errorf("--scope REPOSITORY_READ --method GET printed %q", line)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "routes", "--json", "--path-prefix", "/workspaces/{workspace}/webhooks")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		var rs []struct {
			Method, Path, Basis string
			Scopes              []string
		}
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Fatalf("--json: %v\n%s", err, out)
		}
		if len(rs) < 4 {
			t.Fatalf("%d webhook routes: %s", len(rs), out)
		}
		for _, r := range rs {
			if !strings.HasPrefix(r.Path, "/workspaces/{workspace}/webhooks") || len(r.Scopes) == 0 || (r.Basis != "page" && r.Basis != "rule") {
				t.Errorf("--json row %+v", r)
			}
		}
	})

	t.Run("lint", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "routes", "lint")
		if code != 0 {
			t.Fatalf("lint of the built-in table: exit %d: %s%s", code, out, errOut)
		}
		if !strings.Contains(out, " by the conservative rule, 0 errors\n") {
			t.Errorf("lint summary missing:\n%s", out)
		}

		dir := t.TempDir()
		bad := filepath.Join(dir, "routes.csv")
		if err := os.WriteFile(bad, []byte("method,path,required_scopes,source_url,basis\n"+
			"GET,/workspaces/{workspace}/things,,https://example.com/things,page\n"+
			"GET,/workspaces/{workspace}/webhooks,WORKSPACE,https://example.com/webhooks,rule\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, code = runCLI(t, nil, "routes", "lint", "--routes", bad)
		if code != 1 {
			t.Errorf("lint of a table with a scope-less row: exit %d, want 1: %s%s", code, out, errOut)
		}
		if !strings.Contains(out, "/workspaces/{workspace}/things") || !strings.Contains(out, "/workspaces/{workspace}/webhooks") ||
			!strings.Contains(out, "(no scope: any valid token may call it)") || !strings.Contains(out, `(marked "rule" but the rule gives WEBHOOK_MANAGE)`) ||
			!strings.Contains(out, "2 routes, 1 by the conservative rule, 2 errors") {
			t.Errorf("lint output:\n%s%s", out, errOut)
		}
	})
}
