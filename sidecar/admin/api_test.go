package admin

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
)

const P = APIPrefix + "/providers"

func newGHA(name string) map[string]any {
	return map[string]any{
		"name": name, "type": "github_actions", "lifetime": "1h",
		"trust_conditions": `repository_owner is "octo-org"`, "scopes": []string{"WORKSPACE"},
	}
}

func TestUnauthorized(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	for _, c := range []struct{ method, path string }{
		{"GET", P}, {"POST", P}, {"GET", P + "/" + ghaID}, {"PUT", P + "/" + ghaID}, {"DELETE", P + "/" + ghaID},
		{"POST", P + "/" + ghaID + "/evaluate"}, {"GET", P + "/" + ghaID + "/decisions"}, {"POST", APIPrefix + "/validate"},
	} {
		for _, auth := range []string{"", "Bearer wrong"} {
			r := rg.doAuth(auth, c.method, c.path, "{}")
			if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %q: %d %s, want 401 with a Bearer challenge", c.method, c.path, auth, r.status, r.body)
			}
		}
	}
	if rg.file() != fixtureYAML {
		t.Error("an unauthorized request changed the file")
	}
}

func TestListAndGet(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	r := rg.do("GET", P, nil)
	if r.status != 200 || r.header.Get("ETag") == "" {
		t.Fatalf("list: %d %s (ETag %q)", r.status, r.body, r.header.Get("ETag"))
	}
	l := r.json(t)["providers"].([]any)
	if len(l) != 2 || l[0].(map[string]any)["id"] != ghaID || l[1].(map[string]any)["id"] != otherID {
		t.Fatalf("list not in file order: %s", r.body)
	}
	g := rg.do("GET", P+"/"+otherID, nil)
	if g.status != 200 || g.json(t)["issuer"] != "https://gitlab.example.com" || g.header.Get("ETag") == "" {
		t.Fatalf("get: %d %s", g.status, g.body)
	}
	if r := rg.do("GET", P+"/00000000-0000-4000-8000-000000000000", nil); r.status != 404 {
		t.Fatalf("unknown id: %d", r.status)
	}
}

func TestCreate(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	r := rg.do("POST", P, newGHA("GHA - new"))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	if len(id) != 36 || r.header.Get("Location") != P+"/"+id {
		t.Fatalf("create answered id %q, Location %q", id, r.header.Get("Location"))
	}
	// It serves: the engine knows it before the answer.
	if p := rg.engine.Current().Providers[id]; p == nil || p.Name != "GHA - new" {
		t.Fatalf("the new provider is not serving")
	}
	f := rg.file()
	if !strings.HasPrefix(f, fixtureYAML[:strings.Index(fixtureYAML, "      - WORKSPACE\n")]) {
		t.Fatalf("create changed the existing entries:\n%s", f)
	}
	if !strings.Contains(f, "  - id: "+id+"\n    name: GHA - new\n") {
		t.Fatalf("new entry not appended at the list's indentation:\n%s", f)
	}
	// An id in the body is refused.
	body := newGHA("x")
	body["id"] = ghaID
	if r := rg.do("POST", P, body); r.status != 422 || !strings.Contains(string(r.body), `"field":"id"`) {
		t.Fatalf("create with id: %d %s", r.status, r.body)
	}
}

func TestFieldErrors(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	before := rg.file()
	r := rg.do("POST", P, map[string]any{
		"name": "bad", "type": "github_actions", "lifetime": "15m",
		"trust_conditions": `ref is "refs/heads/main"`, "scopes": []string{"WORKSPACE", "NOT_A_SCOPE"},
		"ip_restrictions": []string{"10.0.0.300"},
	})
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("want 422, got %d %s", r.status, r.body)
	}
	fields := map[string]string{}
	for _, e := range r.json(t)["errors"].([]any) {
		m := e.(map[string]any)
		fields[m["field"].(string)] = m["message"].(string)
	}
	for _, f := range []string{"lifetime", "trust_conditions", "scopes[1]", "ip_restrictions[0]"} {
		if fields[f] == "" {
			t.Errorf("no error at %s; got %v", f, fields)
		}
	}
	if !strings.Contains(fields["lifetime"], "not a Buddy lifetime preset") || !strings.Contains(fields["trust_conditions"], "repository_owner") {
		t.Errorf("messages are not the file validator's: %v", fields)
	}
	if rg.file() != before {
		t.Error("a refused create changed the file")
	}
	// Not JSON.
	if r := rg.do("POST", P, "name: yaml"); r.status != 422 || !strings.Contains(string(r.body), "JSON object") {
		t.Fatalf("non-JSON body: %d %s", r.status, r.body)
	}
	// The validate endpoint gives the same errors with 200.
	v := rg.do("POST", APIPrefix+"/validate", map[string]any{"type": "circleci", "scopes": []string{"WORKSPACE"}})
	if v.status != 200 || !strings.Contains(string(v.body), `"field":"organization_id"`) {
		t.Fatalf("validate: %d %s", v.status, v.body)
	}
}

func TestPutIfMatch(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	g := rg.do("GET", P+"/"+otherID, nil)
	etag := g.header.Get("ETag")
	p := g.json(t)
	p["name"] = "GitLab (prod)"
	// No If-Match: 428.
	if r := rg.do("PUT", P+"/"+otherID, p); r.status != http.StatusPreconditionRequired {
		t.Fatalf("PUT without If-Match: %d %s", r.status, r.body)
	}
	r := rg.do("PUT", P+"/"+otherID, p, "If-Match", etag)
	if r.status != 200 || r.header.Get("ETag") == etag {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	if rg.engine.Current().Providers[otherID].Name != "GitLab (prod)" {
		t.Fatal("the edit is not serving")
	}
	// The old ETag is stale now: 412, nothing written.
	before := rg.file()
	p["name"] = "lost update"
	r = rg.do("PUT", P+"/"+otherID, p, "If-Match", etag)
	if r.status != http.StatusPreconditionFailed || rg.file() != before {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	// An edit of another provider does not make this one stale.
	cur := rg.do("GET", P+"/"+otherID, nil).header.Get("ETag")
	gh := rg.do("GET", P+"/"+ghaID, nil)
	ghp := gh.json(t)
	ghp["lifetime"] = "3h"
	if r := rg.do("PUT", P+"/"+ghaID, ghp, "If-Match", gh.header.Get("ETag")); r.status != 200 {
		t.Fatalf("PUT gha: %d %s", r.status, r.body)
	}
	if now := rg.do("GET", P+"/"+otherID, nil).header.Get("ETag"); now != cur {
		t.Fatal("editing one provider changed another's ETag")
	}
	// A PUT that is invalid: 422 at the field.
	ghp["lifetime"] = "2h"
	r = rg.do("PUT", P+"/"+ghaID, ghp, "If-Match", "*")
	if r.status != 422 || !strings.Contains(string(r.body), `"field":"lifetime"`) {
		t.Fatalf("invalid PUT: %d %s", r.status, r.body)
	}
}

func TestCommentsSurviveEdit(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	g := rg.do("GET", P+"/"+otherID, nil)
	p := g.json(t)
	p["audience"] = "sidecar-2"
	if r := rg.do("PUT", P+"/"+otherID, p, "If-Match", g.header.Get("ETag")); r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	f := rg.file()
	// The first entry, the file's comments and the edited entry's comment
	// above it are byte for byte as written.
	head := fixtureYAML[:strings.Index(fixtureYAML, "  - id: 7d444840")]
	if !strings.HasPrefix(f, head) {
		t.Fatalf("the untouched entry or comments changed:\n--- want prefix\n%s\n--- got\n%s", head, f)
	}
	if !strings.Contains(f, "audience: sidecar-2") {
		t.Fatalf("edit not written:\n%s", f)
	}
	// Delete the first entry: its comment goes with it, the rest stays.
	g = rg.do("GET", P+"/"+ghaID, nil)
	if r := rg.do("DELETE", P+"/"+ghaID, nil, "If-Match", g.header.Get("ETag")); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	f = rg.file()
	if !strings.HasPrefix(f, "# Providers of the platform team. Keep this comment!\nproviders:\n  # A self-hosted GitLab.\n  - id: 7d444840") {
		t.Fatalf("after delete:\n%s", f)
	}
	if strings.Contains(f, "octo-org") {
		t.Fatal("deleted entry still in the file")
	}
}

func TestDelete(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	if r := rg.do("DELETE", P+"/"+ghaID, nil); r.status != http.StatusPreconditionRequired {
		t.Fatalf("DELETE without If-Match: %d", r.status)
	}
	if r := rg.do("DELETE", P+"/"+ghaID, nil, "If-Match", `"stale"`); r.status != http.StatusPreconditionFailed {
		t.Fatalf("DELETE stale: %d", r.status)
	}
	etag := rg.do("GET", P+"/"+ghaID, nil).header.Get("ETag")
	if r := rg.do("DELETE", P+"/"+ghaID, nil, "If-Match", etag); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if rg.engine.Current().Providers[ghaID] != nil {
		t.Fatal("deleted provider still serving")
	}
	if r := rg.do("DELETE", P+"/"+ghaID, nil, "If-Match", etag); r.status != 404 {
		t.Fatalf("second DELETE: %d", r.status)
	}
}

func TestConcurrentWritesSerialized(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	const n = 8
	var wg sync.WaitGroup
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := rg.do("POST", P, newGHA(fmt.Sprintf("concurrent %d", i)))
			if r.status != 201 {
				t.Errorf("create %d: %d %s", i, r.status, r.body)
				return
			}
			ids[i] = r.json(t)["id"].(string)
		}(i)
	}
	wg.Wait()
	f := rg.file()
	for i, id := range ids {
		if !strings.Contains(f, id) || rg.engine.Current().Providers[id] == nil {
			t.Errorf("create %d (%s) lost", i, id)
		}
	}
	if l := rg.do("GET", P, nil).json(t)["providers"].([]any); len(l) != n+2 {
		t.Fatalf("%d providers, want %d", len(l), n+2)
	}
}

func TestReadOnly(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	if err := os.Chmod(rg.path, 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// root can write anyway: use the bundle mode's reason instead.
		rg.h.o.ReadOnly = "the policy comes from bundle /x.tar.gz"
	}
	r := rg.do("POST", P, newGHA("x"))
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "read-only") {
		t.Fatalf("write to a read-only file: %d %s", r.status, r.body)
	}
	l := rg.do("GET", P, nil)
	if l.status != 200 || l.json(t)["read_only"] == nil {
		t.Fatalf("list does not say read-only: %s", l.body)
	}
	etag := rg.do("GET", P+"/"+ghaID, nil).header.Get("ETag")
	if r := rg.do("DELETE", P+"/"+ghaID, nil, "If-Match", etag); r.status != http.StatusForbidden {
		t.Fatalf("delete read-only: %d", r.status)
	}
	if rg.file() != fixtureYAML {
		t.Fatal("read-only file changed")
	}
}

func TestEvaluate(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	r := rg.do("POST", P+"/"+ghaID+"/evaluate", map[string]any{"claims": map[string]any{"repository_owner": "octo-org", "ref": "refs/heads/dev"}})
	if r.status != 200 {
		t.Fatalf("evaluate: %d %s", r.status, r.body)
	}
	d := r.json(t)["decision"].(map[string]any)
	reasons := d["reasons"].([]any)
	if d["allow"] != false || len(reasons) != 1 {
		t.Fatalf("decision: %s", r.body)
	}
	rs := reasons[0].(map[string]any)
	if rs["claim"] != "ref" || rs["actual"] != "refs/heads/dev" || rs["expected"] != "refs/heads/main" {
		t.Fatalf("failing condition: %v", rs)
	}
	if r.json(t)["unverified"] != nil {
		t.Fatal("claims are not a token")
	}
	// A JWT: decoded without verification, and the answer says so.
	jwt := "eyJhbGciOiJSUzI1NiJ9." + b64(`{"iss":"https://token.actions.githubusercontent.com","aud":"Buddy","repository_owner":"octo-org","ref":"refs/heads/main"}`) + ".c2ln"
	r = rg.do("POST", P+"/"+ghaID+"/evaluate", map[string]any{"token": jwt})
	m := r.json(t)
	if r.status != 200 || m["unverified"] != true || !strings.Contains(m["note"].(string), "WITHOUT verifying") || m["decision"].(map[string]any)["allow"] != true {
		t.Fatalf("evaluate token: %d %s", r.status, r.body)
	}
	if r := rg.do("POST", P+"/"+ghaID+"/evaluate", map[string]any{}); r.status != 422 {
		t.Fatalf("neither claims nor token: %d", r.status)
	}
}

func TestDecisionsEndpoint(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	for i := 0; i < RecentDecisions+5; i++ {
		rg.h.o.Decisions.Record(ghaID, Decision{Outcome: fmt.Sprint(i), DecisionID: fmt.Sprint(i)})
	}
	r := rg.do("GET", P+"/"+ghaID+"/decisions", nil)
	l := r.json(t)["decisions"].([]any)
	if len(l) != RecentDecisions || l[0].(map[string]any)["decision_id"] != fmt.Sprint(RecentDecisions+4) {
		t.Fatalf("decisions: %d entries, first %v", len(l), l[0])
	}
	if strings.Contains(string(r.body), "token") {
		t.Fatal("a decision mentions a token")
	}
}

func TestConditionsParseRender(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	r := rg.do("POST", APIPrefix+"/conditions/parse", map[string]any{"text": `repository_owner is "octo" and environment is one of ["a", "b"] and ref exists`})
	if r.status != 200 {
		t.Fatalf("parse: %d %s", r.status, r.body)
	}
	conds := r.json(t)["conditions"]
	r2 := rg.do("POST", APIPrefix+"/conditions/render", map[string]any{"conditions": conds})
	if r2.status != 200 || r2.json(t)["text"] != `repository_owner is "octo" and environment is one of ["a", "b"] and ref exists` {
		t.Fatalf("render: %d %s", r2.status, r2.body)
	}
	if r := rg.do("POST", APIPrefix+"/conditions/parse", map[string]any{"text": `ref equals "x"`}); r.status != 422 {
		t.Fatalf("bad text: %d %s", r.status, r.body)
	}
}

// TestDeleteAllThenCreate: deleting the last provider leaves a file that
// loads (providers: []), the console shows its empty state with its + button,
// and a provider can be created in the empty file.
func TestDeleteAllThenCreate(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	for _, id := range []string{ghaID, otherID} {
		etag := rg.do("GET", P+"/"+id, nil).header.Get("ETag")
		if r := rg.do("DELETE", P+"/"+id, nil, "If-Match", etag); r.status != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d %s", id, r.status, r.body)
		}
	}
	if n := len(rg.engine.Current().Providers); n != 0 {
		t.Fatalf("%d providers still serving", n)
	}
	if f := rg.file(); !strings.Contains(f, "providers: []") {
		t.Fatalf("the emptied file:\n%s", f)
	}
	r := rg.do("GET", P, nil)
	if r.status != 200 || fmt.Sprint(r.json(t)["providers"]) != "[]" {
		t.Fatalf("list of an empty file: %d %s", r.status, r.body)
	}

	// The console's list page: log in, then GET /.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	login, _ := http.NewRequest("POST", rg.srv.URL+"/login", strings.NewReader(url.Values{"credential": {adminToken}}.Encode()))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	login.Header.Set("Origin", rg.srv.URL)
	resp, err := c.Do(login)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "No OIDC identity providers yet") || !strings.Contains(string(page), `id="empty-add"`) {
		t.Fatalf("the list page with no providers (%d) shows no empty state:\n%s", resp.StatusCode, page)
	}

	if r := rg.do("POST", P, newGHA("first again")); r.status != http.StatusCreated {
		t.Fatalf("create in the empty file: %d %s", r.status, r.body)
	}
	if n := len(rg.engine.Current().Providers); n != 1 {
		t.Fatalf("%d providers serving after the create, want 1", n)
	}
}
