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
