package proxy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

func TestCheckPath(t *testing.T) {
	cases := map[string]string{ // target → accepted path, or "" for rejected
		"/":                  "/",
		"/user":              "/user",
		"/user/":             "/user",
		"/a/b%20c/d":         "/a/b%20c/d",
		"/a/%C3%A9":          "/a/%C3%A9",
		"/a/%c3%a9":          "/a/%c3%a9",
		"/a/b:c@d!$&'()*+,=": "/a/b:c@d!$&'()*+,=",
		"/a/b.c/d..e/.f/g.":  "/a/b.c/d..e/.f/g.",
		"/a/..":              "",
		"/a/.":               "",
		"/../a":              "",
		"/a/./b":             "",
		"/a//b":              "",
		"//":                 "",
		"/a//":               "",
		// An encoded slash passes checkPath (the matcher decides where it
		// may be), unless decoding it would make an empty or dot segment.
		"/a%2Fb":                                "/a%2Fb",
		"/a%2fb":                                "/a%2fb",
		"/a%2F..%2Fb":                           "",
		"/a%2F.%2Fb":                            "",
		"/a%2F%2Fb":                             "",
		"/%2Fa":                                 "",
		"/a%2F":                                 "",
		"/a/%2F/b":                              "",
		"/a%2E%2E/b":                            "",
		"/a/%2e":                                "",
		"/a%5Cb":                                "",
		"/a%25b":                                "",
		"/a%00b":                                "",
		"/a%0Ab":                                "",
		"/a%7Fb":                                "",
		"/a%41b":                                "",
		"/a%7Eb":                                "",
		"/a%3Bb":                                "",
		"/a;b":                                  "",
		"/a%zzb":                                "",
		"/a%4":                                  "",
		"/a%":                                   "",
		"/" + strings.Repeat("a", MaxPathBytes): "",
	}
	for target, want := range cases {
		req := &http.Request{Method: "GET", URL: &url.URL{Path: target}} // what a handler could be given in-process
		if u, err := url.ParseRequestURI(target); err == nil {
			req.URL = u // what net/http hands over
		}
		got, err := checkPath(req)
		if want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %q, want rejected", target, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", target, got, err, want)
		}
	}
	// Characters the client should have escaped: the raw form differs from
	// the canonical one, so the request is refused rather than re-encoded.
	for _, raw := range []string{"/a\\b", "/a{b}", "/a|b", "/a\"b", "/a^b", "/a%2Fb{"} {
		req := &http.Request{Method: "GET", URL: &url.URL{Path: "/x", RawPath: raw}}
		if u, err := url.ParseRequestURI(raw); err == nil {
			req.URL = u
		}
		if got, err := checkPath(req); err == nil {
			t.Errorf("raw %q accepted as %q", raw, got)
		}
	}
	if _, err := checkPath(&http.Request{URL: &url.URL{Opaque: "x:y"}}); err == nil {
		t.Error("opaque URL accepted")
	}
}

func TestQueryHandling(t *testing.T) {
	for raw, want := range map[string]string{
		"":                                  "",
		"a=1":                               "a=1",
		"access_token=x":                    "",
		"a=1&access_token=x&b=%2F":          "a=1&b=%2F",
		"access%5Ftoken=x&b=2":              "b=2",
		"access_%74oken=x":                  "",
		"access_token":                      "",
		"access_tokens=x&my_access_token=y": "access_tokens=x&my_access_token=y",
	} {
		if got := stripAccessToken(raw); got != want {
			t.Errorf("stripAccessToken(%q) = %q, want %q", raw, got, want)
		}
	}
	for _, c := range []struct {
		auth, query string
		tok         string
		sent        bool
		err         bool
	}{
		{"", "", "", false, false},
		{"Bearer abc", "", "abc", true, false},
		{"bearer  abc ", "", "abc", true, false},
		{"Basic eDp5", "", "", false, false},
		{"", "access_token=abc", "abc", true, false},
		{"", "access_%74oken=abc", "abc", true, false},
		{"", "access_token=", "", false, false},
		{"Bearer abc", "access_token=abc", "abc", true, false},
		{"Bearer abc", "access_token=def", "", true, true},
		{"", "access_token=abc&access_token=def", "", true, true},
		{"Bearer", "", "", true, false},
	} {
		req := httptest.NewRequest("GET", "/user?"+c.query, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		tok, sent, err := bearerToken(req)
		if tok != c.tok || sent != c.sent || (err != nil) != c.err {
			t.Errorf("auth %q query %q: got %q %v %v", c.auth, c.query, tok, sent, err)
		}
	}
	req := httptest.NewRequest("GET", "/user", nil)
	req.Header.Add("Authorization", "Bearer a")
	req.Header.Add("Authorization", "Bearer b")
	if _, _, err := bearerToken(req); err == nil {
		t.Error("two different Authorization headers accepted")
	}
}

func TestRouteSpecificity(t *testing.T) {
	snap := &policy.Snapshot{Routes: []routes.Route{
		{Method: "GET", Path: "/a/{x}/c", Scopes: []string{"X"}},
		{Method: "GET", Path: "/a/{x}", Scopes: []string{"X"}},
		{Method: "GET", Path: "/a/special", Scopes: []string{"S"}},
		{Method: "GET", Path: "/{y}/b/c", Scopes: []string{"Y"}},
		{Method: "HEAD", Path: "/h/{z}", Scopes: []string{"H"}},
		{Method: "GET", Path: "/h/{z}", Scopes: []string{"G"}},
		// Rest-of-path templates: the one with more literal segments first,
		// whatever the table order (Buddy's artifact content routes:
		// content/{path...} and content/download/{path...}).
		{Method: "GET", Path: "/r/{p...}", Scopes: []string{"R"}},
		{Method: "GET", Path: "/r/{x}/b/{p...}", Scopes: []string{"RB"}},
		{Method: "GET", Path: "/r/download/{p...}", Scopes: []string{"RD"}},
	}}
	tb := newTable(snap)
	for _, c := range []struct{ method, path, route string }{
		{"GET", "/a/special", "/a/special"},
		{"GET", "/a/other", "/a/{x}"},
		{"GET", "/a/b/c", "/a/{x}/c"}, // leftmost literal wins over /{y}/b/c
		{"GET", "/z/b/c", "/{y}/b/c"},
		{"HEAD", "/a/special", "/a/special"},
		{"HEAD", "/h/1", "/h/{z}"},
		{"GET", "/r/f", "/r/{p...}"},
		{"GET", "/r/x/f", "/r/{p...}"},
		{"GET", "/r/x/b/f", "/r/{x}/b/{p...}"},
		{"GET", "/r/download/f", "/r/download/{p...}"},
		{"GET", "/r/download/b/f", "/r/download/{p...}"},
	} {
		m := tb.match(c.method, c.path)
		if m.route == nil || m.route.Path != c.route {
			t.Errorf("%s %s: matched %+v, want %s", c.method, c.path, m.route, c.route)
		}
	}
	if m := tb.match("HEAD", "/h/1"); m.route.Method != "HEAD" {
		t.Errorf("explicit HEAD route not preferred: %+v", m.route)
	}
	if m := tb.match("POST", "/a/special"); !m.wrongMethod || m.route != nil {
		t.Errorf("POST /a/special: %+v", m)
	}
	if got := tb.allowed("/a/special"); strings.Join(got, ",") != "GET,HEAD" {
		t.Errorf("allowed = %q", got)
	}
	if m := tb.match("GET", "/A/special"); !m.caseVariant {
		t.Errorf("case variant not detected: %+v", m)
	}
}

// recordingTransport answers every request with 200 and records the
// request-target it would have sent on the wire.
type recordingTransport struct {
	mu  sync.Mutex
	uri []string
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	rt.mu.Lock()
	rt.uri = append(rt.uri, req.URL.RequestURI())
	rt.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func (rt *recordingTransport) take() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := rt.uri
	rt.uri = nil
	return out
}

// FuzzPath: for any request target, either the request is not forwarded,
// or the path the upstream receives is exactly the path that was
// authorized, the route and variables the policy saw are the ones that
// path matches, and a token limited to workspace acme only ever reaches
// acme. Unknown routes are forwarded (unknown_routes: authenticated) so
// that as many paths as possible reach the upstream.
func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"/workspaces/acme/projects", "/workspaces/acme/projects/", "/workspaces/a/../b/projects",
		"/workspaces/acme/../globex/projects", "/workspaces/acme%2F..%2Fglobex/projects", "/workspaces/acme%2f..",
		"//workspaces/acme/projects", "/./workspaces/acme", "/workspaces/acme./projects", "/workspaces/%2e%2e/x",
		"/workspaces/acme\\..\\globex", "/workspaces/ACME/projects", "/WORKSPACES/globex/x/y", "/workspaces/globex",
		"/workspaces/acme/projects/web/pipelines/7/executions?access_token=x", "/user", "/workspaces",
		"/workspaces/acme%20/projects", "/workspaces/%61cme/projects", "http://h/workspaces/globex/projects",
		"/workspaces/acme/projects;x", "/workspaces/acme/projects/%2e", "*", "/workspaces/globex%00/projects",
		// Templates with a rest-of-path variable and with a mixed segment.
		"/workspaces/acme/projects/web/repository/contents/src/main.go?revision=dev",
		"/workspaces/acme/projects/web/repository/contents/src/../../../../globex/x",
		"/workspaces/acme/projects/web/repository/contents/a%2F..%2F..%2Fb", "/workspaces/acme/projects/web/repository/contents/",
		"/workspaces/acme/projects/web/repository/contents//etc/passwd", "/workspaces/acme/projects/web/repository/contents/.git/config",
		"/workspaces/acme/projects/web/repository/comparison/abc...def", "/workspaces/acme/projects/web/repository/comparison/a...b...c",
		"/workspaces/acme/projects/web/repository/comparison/...", "/workspaces/acme/projects/web/repository/COMPARISON/a...b",
		// Encoded slashes: allowed only in branch, tag and revision names.
		"/workspaces/acme/projects/web/repository/branches/feature%2Flogin",
		"/workspaces/acme/projects/web/repository/branches/a%2F..%2F..%2Fpipelines",
		"/workspaces/acme/projects/web/repository/tags/release%2F1.0", "/workspaces/acme/projects/web/repository/commits/a%2fb",
		"/workspaces/acme/projects/web/repository/comparison/feature%2Fx...main", "/workspaces/acme/projects/web/repository/comparison/a...b%2F...c",
		"/workspaces/acme%2F..%2Fglobex/projects/web/repository/branches/x", "/workspaces/acme/projects/web%2Fpipelines/repository/tags/v1",
		"/workspaces/acme/projects/web/repository/contents/a%2Fb", "/workspaces/acme/projects/web/repository/branches/x%2F%2Fy",
		// Sandbox files and logs.
		"/workspaces/acme/sandboxes/sb-1/content/buddy/src/index.js", "/workspaces/acme/sandboxes/sb-1/content/../../globex/sandboxes",
		"/workspaces/acme/sandboxes/sb-1/content/a%2Fb", "/workspaces/acme/sandboxes/sb-1/apps/a1/logs?cursor=x",
		"/workspaces/acme/sandboxes/sb-1/app-logs", "/workspaces/acme/projects/web/environments/xo4p",
	} {
		f.Add(s, uint8(0))
	}
	snap := snapshot(f, policy.Sources{Settings: policy.Settings{UnknownRoutes: "authenticated"}})
	store := token.NewMemory(time.Now)
	rec := record("WORKSPACE", "EXECUTION_MANAGE", "USER_INFO", "TOKEN_INFO", "VARIABLE_MANAGE", "SANDBOX_MANAGE", "REPOSITORY_WRITE")
	tok, hash, _ := token.New()
	if err := store.Save(context.Background(), hash, &rec, time.Hour); err != nil {
		f.Fatal(err)
	}
	rt := &recordingTransport{}
	up, _ := url.Parse("https://api.example/base")
	p, err := New(Options{Engine: engineWith(snap), Store: store, Upstream: up, UpstreamToken: "u", Transport: rt})
	if err != nil {
		f.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []policy.ProxyInput
	)
	p.onDecision = func(in policy.ProxyInput, d *policy.ProxyDecision) {
		if d.Allow {
			mu.Lock()
			seen = append(seen, in)
			mu.Unlock()
		}
	}
	methods := []string{"GET", "POST", "PATCH", "DELETE", "HEAD"}
	tbl := p.table(snap)
	upstream := decodingRouter(snap.Routes)

	f.Fuzz(func(t *testing.T, target string, m uint8) {
		method := methods[int(m)%len(methods)]
		raw := method + " " + target + " HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // not a request net/http would hand to the proxy
		}
		req.RemoteAddr = "192.0.2.1:4321"
		mu.Lock()
		seen = nil
		mu.Unlock()
		p.ServeHTTP(httptest.NewRecorder(), req)
		sent := rt.take()
		mu.Lock()
		allowed := seen
		mu.Unlock()
		if len(sent) == 0 {
			return
		}
		if len(sent) != 1 || len(allowed) != 1 {
			t.Fatalf("%s %q: %d upstream requests, %d allow decisions", method, target, len(sent), len(allowed))
		}
		in := allowed[0]
		fwd, _, _ := strings.Cut(sent[0], "?")
		if !strings.HasPrefix(fwd, "/base/") {
			t.Fatalf("%q: forwarded %q outside the base path", target, sent[0])
		}
		fwd = strings.TrimPrefix(fwd, "/base")
		if fwd != in.Path {
			t.Fatalf("%q: authorized %q, forwarded %q", target, in.Path, fwd)
		}
		if strings.Contains(fwd, "//") {
			t.Fatalf("%q: forwarded path %q has an empty segment", target, fwd)
		}
		for _, bad := range []string{"/./", "/../", "%2e", "%2E", "\\", ";", "%5c", "%5C", "%25"} {
			if strings.Contains(fwd+"/", bad) {
				t.Fatalf("%q: forwarded path %q contains %q", target, fwd, bad)
			}
		}
		// The forwarded path matches the authorized route with the
		// authorized variables, and nothing else.
		again := tbl.match(method, fwd)
		if (again.route == nil) != (in.Route == nil) || again.route != nil && again.route.Path != in.Route.Path {
			t.Fatalf("%q: forwarded path routes to %+v, authorized %+v", target, again.route, in.Route)
		}
		if in.Route != nil {
			if got := expand(in.Route.Path, in.Vars); got != fwd {
				t.Fatalf("%q: route %s with vars %v is %q, forwarded %q", target, in.Route.Path, in.Vars, got, fwd)
			}
		}
		// An upstream that decodes the path (%2F included) before routing
		// it, with branch, tag and revision names spanning slashes, picks
		// the authorized route, with the authorized variables decoded.
		if in.Route != nil {
			upRoute, upVars := upstream.route(method, fwd)
			if upRoute != in.Route.Path {
				t.Fatalf("%q: authorized %s, a decoding upstream routes %q to %q", target, in.Route.Path, fwd, upRoute)
			}
			for k, v := range in.Vars {
				if dv, _ := url.PathUnescape(v); upVars[k] != dv {
					t.Fatalf("%q: authorized %s = %q, a decoding upstream reads %q", target, k, v, upVars[k])
				}
			}
		}
		// An encoded slash is forwarded only inside a variable the route
		// declares may hold one.
		if hasEncodedSlash(fwd) {
			if in.Route == nil {
				t.Fatalf("%q: encoded slash forwarded without a route", target)
			}
			sv := routes.SlashVars(in.Route.Path)
			for k, v := range in.Vars {
				if hasEncodedSlash(v) && !sv[k] {
					t.Fatalf("%q: encoded slash in {%s} of %s", target, k, in.Route.Path)
				}
			}
		}
		// Workspace confinement: a forwarded path under /workspaces/<w>
		// (any letter case) is for acme.
		segs := strings.Split(fwd[1:], "/")
		if len(segs) >= 2 && strings.EqualFold(segs[0], "workspaces") && segs[1] != "acme" {
			t.Fatalf("%q: token for acme forwarded to %q", target, fwd)
		}
		if w, ok := in.Vars[routes.WorkspaceVar]; ok && w != "acme" {
			t.Fatalf("%q: allowed with workspace %q", target, w)
		}
	})
}

// expand fills a route template with variables: {name}, {name...} and
// variables inside a segment ({base}...{head}).
func expand(tpl string, vars map[string]string) string {
	return tplVarRE.ReplaceAllStringFunc(tpl, func(v string) string {
		return vars[strings.TrimSuffix(strings.TrimSuffix(v[1:len(v)-1], "..."), routes.SlashMarker)]
	})
}

var tplVarRE = regexp.MustCompile(`\{[a-z][a-z0-9_]*(\.\.\.|%2F)?\}`)

// decodingUpstream models an upstream router that decodes the path (%2F
// included) before routing, as many frameworks do: a variable declared to
// hold an encoded slash ({branch%2F}) and {name...} match one or more
// segments of the decoded path; other variables one segment. Templates are
// tried most specific first, fixed ones before {name...} ones, like the
// proxy's table.
type decodingUpstream struct {
	r     *mux.Router
	paths map[*mux.Route]string
}

func decodingRouter(rs []routes.Route) *decodingUpstream {
	u := &decodingUpstream{r: mux.NewRouter().SkipClean(true), paths: map[*mux.Route]string{}}
	order := slices.Clone(rs)
	sort.SliceStable(order, func(a, b int) bool {
		ra, rb := strings.HasSuffix(order[a].Path, "...}"), strings.HasSuffix(order[b].Path, "...}")
		if ra != rb {
			return !ra
		}
		return moreSpecific(order[a].Path, order[b].Path)
	})
	spanning := regexp.MustCompile(`\{([a-z][a-z0-9_]*)(?:\.\.\.|%2F)\}`)
	for _, r := range order {
		tpl := spanning.ReplaceAllString(r.Path, "{$1:.+}")
		u.paths[u.r.NewRoute().Path(tpl).Methods(r.Method)] = r.Path
	}
	return u
}

// route returns the template the upstream routes the escaped path to ("" if
// none) and its variables, decoded.
func (u *decodingUpstream) route(method, escPath string) (string, map[string]string) {
	if method == http.MethodHead {
		method = http.MethodGet // the proxy authorizes HEAD as GET
	}
	dec, err := url.PathUnescape(escPath)
	if err != nil {
		return "", nil
	}
	var rm mux.RouteMatch
	if !u.r.Match(&http.Request{Method: method, URL: &url.URL{Path: dec}}, &rm) || rm.MatchErr != nil {
		return "", nil
	}
	return u.paths[rm.Route], rm.Vars
}
