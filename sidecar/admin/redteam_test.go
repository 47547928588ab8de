package admin

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestLoginNextStaysLocal: the login form's next= never sends the browser
// to another site, including through spellings a browser rewrites (tabs and
// newlines are dropped from a Location, so "/\t/evil.example" would be
// "//evil.example").
func TestLoginNextStaysLocal(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for next, want := range map[string]string{
		"/providers/new?type=other": "/providers/new?type=other",
		"/\t/evil.example":          "/",
		"/\n/evil.example":          "/",
		"/\r/evil.example":          "/",
		"//evil.example":            "/",
		"/\\evil.example":           "/",
		"https://evil.example/":     "/",
	} {
		resp, err := client.PostForm(rg.srv.URL+"/login?next="+url.QueryEscape(next), url.Values{"credential": {adminToken}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("next=%q: %d Location %q, want 303 %q", next, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
}

// TestCrossOriginMutationWithAdminCredential: a browser presents an admin
// client certificate (an ambient credential, like a cookie) on a cross-site
// form post, whose text/plain body can be valid JSON. Such a mutation, which
// the browser marks with a foreign (or "null") Origin, is refused whatever
// the credential; reads, and clients that send no Origin, are not affected.
func TestCrossOriginMutationWithAdminCredential(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	before := rg.file()
	// <form enctype="text/plain"> with one field named
	// `{"name":"evil",...,"audience":"a` and valued `b"}`: the browser
	// posts name=value, a provider trusting the attacker's issuer.
	body := `{"name":"evil","type":"other","issuer":"https://evil.example","trust_conditions":"sub exists","scopes":["WORKSPACE"],"audience":"a=b"}`
	for _, origin := range []string{"https://evil.example", "null"} {
		r := rg.do("POST", APIPrefix+"/providers", body, "Content-Type", "text/plain", "Origin", origin)
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "cross-origin request refused") {
			t.Errorf("cross-origin create (Origin %s): %d %s, want 403", origin, r.status, r.body)
		}
	}
	r := rg.do("POST", APIPrefix+"/providers", body, "Content-Type", "text/plain", "Referer", "https://evil.example/page")
	if r.status != http.StatusForbidden {
		t.Errorf("cross-origin create (Referer only): %d %s, want 403", r.status, r.body)
	}
	if rg.file() != before {
		t.Fatalf("the providers file changed:\n%s", rg.file())
	}
	if r := rg.do("GET", APIPrefix+"/providers", nil, "Origin", "https://evil.example"); r.status != http.StatusOK {
		t.Errorf("a read with a foreign Origin: %d %s", r.status, r.body)
	}
	u, _ := url.Parse(rg.srv.URL)
	if r := rg.do("POST", APIPrefix+"/validate", body, "Origin", "http://"+u.Host); r.status != http.StatusOK {
		t.Errorf("same-origin validate: %d %s", r.status, r.body)
	}
	if r := rg.do("POST", APIPrefix+"/providers", body); r.status != http.StatusCreated {
		t.Errorf("create without Origin (curl, a script): %d %s, want 201", r.status, r.body)
	}
}

// TestEvaluateRejectsClaimsNoTokenCouldCarry: claims nested deeper than a
// token's may be, over a token's size, with duplicate names or not an
// object answer 422 on field claims saying what is wrong (they used to
// reach the policy and answer 500 "policy evaluation failed").
func TestEvaluateRejectsClaimsNoTokenCouldCarry(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	deep := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)
	for name, c := range map[string]struct{ claims, want string }{
		"nested 40 deep":  {deep, "nested deeper than 32"},
		"too large":       {`{"sub":"` + strings.Repeat("x", 20000) + `"}`, "more than the 16384-byte limit"},
		"duplicate names": {`{"sub":"a","sub":"b"}`, "duplicate"},
		"not an object":   {`["sub"]`, "not a JSON object"},
	} {
		r := rg.do("POST", P+"/"+ghaID+"/evaluate", `{"claims":`+c.claims+`}`)
		if r.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %.300s, want 422", name, r.status, r.body)
			continue
		}
		errs, _ := r.json(t)["errors"].([]any)
		if len(errs) != 1 {
			t.Errorf("%s: %s", name, r.body)
			continue
		}
		e := errs[0].(map[string]any)
		if e["field"] != "claims" || !strings.Contains(e["message"].(string), c.want) {
			t.Errorf("%s: %v, want field claims saying %q", name, e, c.want)
		}
	}
	// 32 deep (the claims object and 31 nested levels) is a token's limit: evaluated.
	ok := `{"repository_owner":"octo-org","ref":"refs/heads/main","x":` + strings.Repeat(`{"a":`, 30) + `1` + strings.Repeat(`}`, 30) + `}`
	if r := rg.do("POST", P+"/"+ghaID+"/evaluate", `{"claims":`+ok+`}`); r.status != http.StatusOK {
		t.Errorf("claims 32 deep: %d %s, want 200", r.status, r.body)
	}
	if r := rg.do("POST", P+"/"+ghaID+"/evaluate", `{"claims":null}`); r.status != http.StatusUnprocessableEntity {
		t.Errorf("claims null, no token: %d %s, want 422", r.status, r.body)
	}
	big := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", 17000) + ".c2ln"
	if r := rg.do("POST", P+"/"+ghaID+"/evaluate", `{"token":"`+big+`"}`); r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `"token"`) {
		t.Errorf("token over the size limit: %d %.300s, want 422 on token", r.status, r.body)
	}
}

// TestProviderNameControlCharacterRefused: the admin API refuses a name
// with a line break (it would forge log lines) on field name.
func TestProviderNameControlCharacterRefused(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	before := rg.file()
	for _, name := range []string{`deploy\r\nforged`, `\u2028deploy`, `\ufeffdeploy`} {
		body := `{"name":"` + name + `","type":"other","issuer":"https://issuer.example","trust_conditions":"sub exists","scopes":["WORKSPACE"]}`
		r := rg.do("POST", APIPrefix+"/providers", body)
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `"field":"name"`) || !strings.Contains(string(r.body), "control character") {
			t.Errorf("name %s: %d %s, want 422 on name", name, r.status, r.body)
		}
	}
	if rg.file() != before {
		t.Fatalf("the providers file changed:\n%s", rg.file())
	}
}
