package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestReservedHeaderSpellings (issue 11, items 5 and 7): every header whose
// name normalizes to a reserved one — identity headers, method overrides,
// the forwarding headers, framing and hop-by-hop fields — is removed,
// whatever its case and whatever stands in for "-" (CGI-style stacks read
// X_OIDC_Sidecar_Subject as X-OIDC-Sidecar-Subject). Other headers pass.
func TestReservedHeaderSpellings(t *testing.T) {
	f := newRig(t, token.NewMemory(nil), func(o *Options) { o.IdentityHeaders = true })
	tok := f.mint(record("EXECUTION_INFO"))
	sent := http.Header{
		"X_OIDC_Sidecar_Subject":    {"repo:evil/x:ref:refs/heads/main"},
		"X_oidc_sidecar_provider":   {"forged"},
		"X.Oidc.Sidecar.Scopes":     {"EXECUTION_MANAGE"},
		"X-Oidc-Sidecar_Repository": {"evil/x"},
		"X-Http-Method-Override":    {"DELETE"},
		"X_HTTP_Method_Override":    {"DELETE"},
		"X-Method-Override":         {"DELETE"},
		"X-Http-Method":             {"DELETE"},
		"X_Forwarded_For":           {"203.0.113.9"},
		"X_Forwarded_Host":          {"evil.example"},
		"X_Request_Id":              {"forged-id"},
		"Transfer_Encoding":         {"chunked"},
		"Content_Length":            {"99"},
		"Proxy":                     {"http://evil.example"},
		"Proxy_Authorization":       {"Basic Zm9vOmJhcg=="},
		"X-Custom_Thing":            {"kept"},
		"Accept":                    {"application/json"},
	}
	r := f.do("GET", runExecutions, tok, sent, nil)
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	got := f.up.requests()
	if len(got) != 1 {
		t.Fatalf("upstream received %d requests", len(got))
	}
	h := got[0].Header
	for k := range h {
		if reservedHeader(k) {
			// Only the proxy's own, in their canonical spelling.
			switch k {
			case "Authorization", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id",
				HeaderProvider, HeaderSubject, HeaderScopes, HeaderRepository:
				continue
			}
			t.Errorf("the client's %s: %q reached the upstream", k, h[k])
		}
	}
	if v := h.Values(HeaderSubject); len(v) != 1 || v[0] != "repo:octo-org/octo-repo:ref:refs/heads/main" {
		t.Errorf("%s %q, want only the token's subject", HeaderSubject, v)
	}
	if v := h.Values("X-Forwarded-For"); len(v) != 1 || v[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", v)
	}
	if h.Get("X-Custom_thing") != "kept" && h.Get("X-Custom_Thing") != "kept" || h.Get("Accept") != "application/json" {
		t.Errorf("ordinary headers were removed: %v", h)
	}
	if got[0].Method != "GET" {
		t.Errorf("upstream method %s", got[0].Method)
	}
}

// TestMethodOverrideQuery (issue 11, item 5): a _method query parameter, in
// any case or spelling an upstream may decode to _method, is refused (400)
// before anything is forwarded; look-alikes pass.
func TestMethodOverrideQuery(t *testing.T) {
	f := newRig(t, token.NewMemory(nil))
	tok := f.mint(record("EXECUTION_INFO"))
	for _, q := range []string{"_method=DELETE", "_METHOD=delete", "page=2&_Method=PUT", "%5Fmethod=DELETE", "%5fMETHOD=DELETE",
		"a=1;_method=DELETE", ".method=DELETE", "+_method=DELETE", "_method", "_meth%6Fd=DELETE"} {
		r := f.do("GET", runExecutions+"?"+q, tok, nil, nil)
		if r.status != 400 || !strings.Contains(r.body, "_method query parameter") {
			t.Errorf("?%s: %d %s, want 400 naming the _method parameter", q, r.status, r.body)
		}
	}
	f.wantUpstreamUntouched()
	for _, q := range []string{"my_method=DELETE", "_methods=1", "method=DELETE", "q=_method"} {
		if r := f.do("GET", runExecutions+"?"+q, tok, nil, nil); r.status != 200 {
			t.Errorf("?%s: %d %s, want 200", q, r.status, r.body)
		}
	}
	f.waitAudit()
	if n := strings.Count(f.audit.String(), `"code":"method_override"`); n != 10 {
		t.Errorf("%d audit lines with code method_override, want 10", n)
	}
}

// TestTokenNeverForwarded (issue 11, item 7): a sidecar token anywhere the
// proxy does not read one — a query parameter in another case
// (ACCESS_TOKEN), any other parameter, a header, percent-encoded, the
// path — is refused (400) and never reaches the upstream; the message
// names the place, never the token.
func TestTokenNeverForwarded(t *testing.T) {
	f := newRig(t, token.NewMemory(nil))
	tok := f.mint(record("EXECUTION_INFO"))
	other, _, err := token.New()
	if err != nil {
		t.Fatal(err)
	}
	enc := func(s string) string { // every byte percent-encoded
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[s[i]>>4])+string("0123456789abcdef"[s[i]&15])))
		}
		return b.String()
	}
	cases := []struct {
		name, target string
		hdr          http.Header
		where        string
	}{
		{"ACCESS_TOKEN", runExecutions + "?ACCESS_TOKEN=" + tok, nil, `the query parameter "ACCESS_TOKEN"`},
		{"Access_Token", runExecutions + "?page=1&Access_Token=" + tok, nil, `the query parameter "Access_Token"`},
		{"another parameter", runExecutions + "?token=" + other, nil, `the query parameter "token"`},
		{"percent-encoded", runExecutions + "?x=" + enc(tok), nil, `the query parameter "x"`},
		{"double percent-encoded", runExecutions + "?x=" + strings.ReplaceAll(enc(tok), "%", "%25"), nil, `the query parameter "x"`},
		{"inside a value", runExecutions + "?q=Bearer%20" + tok + "%20x", nil, `the query parameter "q"`},
		{"semicolon pair", runExecutions + "?a=1;b=" + tok, nil, `the query parameter "b"`},
		{"header", runExecutions, http.Header{"X-Api-Key": {tok}}, `the "X-Api-Key" header`},
		{"cookie", runExecutions, http.Header{"Cookie": {"session=" + tok}}, `the "Cookie" header`},
		{"encoded header", runExecutions, http.Header{"X-Token": {url.QueryEscape("tok=" + enc(other))}}, `the "X-Token" header`},
		{"path", "/workspaces/acme/projects/" + other + "/pipelines/7/executions", nil, "the path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.do("GET", c.target, tok, c.hdr, nil)
			if r.status != 400 {
				t.Fatalf("status %d %s, want 400", r.status, r.body)
			}
			var b struct {
				Errors []struct{ Message string } `json:"errors"`
			}
			if err := json.Unmarshal([]byte(r.body), &b); err != nil || len(b.Errors) != 1 {
				t.Fatalf("body %s", r.body)
			}
			msg := b.Errors[0].Message
			if !strings.Contains(msg, "carries a sidecar token in "+c.where+";") {
				t.Errorf("message %q does not name %s", msg, c.where)
			}
			if strings.Contains(msg, tok) || strings.Contains(msg, other) {
				t.Errorf("the message quotes the token: %q", msg)
			}
		})
	}
	f.wantUpstreamUntouched()
	// The legacy parameter is read and removed; look-alikes that are not
	// tokens pass.
	if r := f.do("GET", runExecutions+"?access_token="+tok+"&q=ocs_not-a-token&docs_url=x", "", http.Header{"X-Note": {"ocs_" + tok[4:20]}}, nil); r.status != 200 {
		t.Fatalf("legacy access_token: %d %s", r.status, r.body)
	}
	got := f.up.requests()
	if len(got) != 1 || strings.Contains(got[0].RequestURI, tok) || got[0].RequestURI != runExecutions+"?q=ocs_not-a-token&docs_url=x" {
		t.Fatalf("upstream received %+v", got)
	}
	f.assertTokenNowhere(tok)
}

// TestRequestTrailersNotForwarded: trailer values arrive after the checks
// above, so request trailers are never forwarded.
func TestRequestTrailersNotForwarded(t *testing.T) {
	f := newRig(t, token.NewMemory(nil))
	tok := f.mint(record("EXECUTION_RUN"))
	var trailer http.Header
	f.up.handle(runExecutions, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		trailer = r.Trailer.Clone()
		_, _ = io.WriteString(w, `{}`)
	})
	body := &trailingBody{r: strings.NewReader(`{"a":1}`)}
	req, err := http.NewRequest("POST", f.srv.URL+runExecutions, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Trailer = http.Header{"X-Leak": nil}
	body.trailer = req.Trailer
	body.value = tok
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if len(trailer) != 0 {
		t.Fatalf("request trailers reached the upstream: %v", trailer)
	}
}

// trailingBody sets a trailer value when the body ends (as net/http's client
// expects).
type trailingBody struct {
	r       io.Reader
	trailer http.Header
	value   string
}

func (b *trailingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.trailer.Set("X-Leak", b.value)
	}
	return n, err
}

// BenchmarkHygiene is what the request-hygiene checks cost a typical
// proxied request: looking for tokens in the URL and headers, the _method
// check, and stripping reserved header spellings.
//
//	go test -run '^$' -bench Hygiene -benchmem ./sidecar/proxy
func BenchmarkHygiene(b *testing.B) {
	req, err := http.NewRequest("GET", "http://sidecar:8080/workspaces/acme/projects/web/pipelines/7/executions?page=1&per_page=20", nil)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, _ := token.New()
	req.Header = http.Header{
		"Authorization":   {"Bearer " + tok},
		"User-Agent":      {"buddy-cli/1.0"},
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip"},
		"X-Request-Id":    {"build-42.step:7"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if tokenIn(req) != "" || methodOverrideParam(req.URL.RawQuery) {
			b.Fatal("refused a clean request")
		}
		h := req.Header.Clone()
		stripReserved(h)
	}
}

func TestReservedHeader(t *testing.T) {
	long := "X-Oidc-Sidecar-" + strings.Repeat("Long", 30) // past the stack buffer
	for name, want := range map[string]bool{
		"Authorization": true, "authorization": true, "X_OIDC_Sidecar_Subject": true, "x.oidc.sidecar.anything": true,
		"Transfer_Encoding": true, "PROXY": true, "Te": true, "X-Forwarded-For": true, "x forwarded host": true, long: true,
		"Accept": false, "X-Custom_thing": false, "X-Oidc-Sidecar": false, "Proxy-Authorizations": false,
		strings.Repeat("A", 200): false, "": false,
	} {
		if got := reservedHeader(name); got != want {
			t.Errorf("reservedHeader(%.40q) = %v, want %v", name, got, want)
		}
	}
}
