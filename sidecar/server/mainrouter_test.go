package server

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/exchange"
)

// TestMainRouterRoutesAsMux: for every request target, mainRouter sends the
// request to the same handler as the mux router alone (the exchange's exact
// paths, anything else to the proxy), whatever the escaping, case, trailing
// slash or form of the target.
func TestMainRouterRoutesAsMux(t *testing.T) {
	var got string
	marker := func(name string) http.Handler {
		return http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got = name })
	}
	proxy := marker("proxy")
	build := func() *mux.Router { // MainHandler's router, each exchange path its own marker
		r := mux.NewRouter().SkipClean(true).UseEncodedPath()
		for _, p := range exchange.Paths {
			r.Handle(p, marker(p))
		}
		r.PathPrefix("/").Handler(proxy)
		r.NotFoundHandler = proxy
		return r
	}
	onlyMux := build()
	own := map[string]bool{}
	for _, p := range exchange.Paths {
		own[p] = true
	}
	fast := &mainRouter{r: build(), own: own, proxy: proxy}

	targets := []string{"*", "/", "//user/oidc/tokens", "/workspaces/acme/projects", "/user", "/user/oidc", "/user/oidc/tokens/",
		"/user/oidc/tokens?x=1", "/user/oidc/%74okens", "/user%2foidc/tokens", "/USER/oidc/tokens", "/user/oidc/./tokens",
		"/user/oidc/tokens%00", "http://example.com/user/oidc/tokens", "http://example.com", "/_sidecar/oauth2/token",
		"/_sidecar/oauth2/token/", "/_sidecar/oauth2/revoke", "/_sidecar/oauth2/%72evoke", "/_sidecar/oauth2", "/_sidecar/reload"}
	for _, p := range exchange.Paths {
		targets = append(targets, p, p+"#frag", strings.ToUpper(p), p+"/..")
	}
	for _, target := range targets {
		for _, method := range []string{"GET", "POST", "OPTIONS"} {
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: sidecar\r\n\r\n")))
			if err != nil {
				continue // not a request net/http would serve
			}
			got = ""
			onlyMux.ServeHTTP(httptest.NewRecorder(), req)
			want := got
			got = ""
			fast.ServeHTTP(httptest.NewRecorder(), req)
			if got != want || got == "" {
				t.Errorf("%s %s: mainRouter chose %q, mux %q", method, target, got, want)
			}
		}
	}
	// CONNECT's authority form has no path.
	req := httptest.NewRequest("CONNECT", "http://example.com:443", nil)
	req.URL.Path = ""
	got = ""
	fast.ServeHTTP(httptest.NewRecorder(), req)
	if got != "proxy" {
		t.Errorf("CONNECT: mainRouter chose %q, want the proxy", got)
	}
}
