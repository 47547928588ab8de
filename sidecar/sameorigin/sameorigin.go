// Package sameorigin refuses requests that a browser marks as coming from
// another site. A client certificate (and a session cookie) is an ambient
// credential: a browser that holds one presents it on a cross-site form
// post too, so an endpoint that changes state must not take such a request
// for its user's own. Browsers say where a request comes from in Origin
// (or, without it, Referer); curl and scripts send neither, and pass.
package sameorigin

import (
	"net/http"
	"net/url"
)

// Check says why r is refused as cross-origin, or "": an Origin (or,
// without one, a Referer) that does not name r's own host — another
// site, "null" (a sandboxed page, a redirect across sites, a file) or
// something unparsable — is refused; a request with neither passes.
func Check(r *http.Request) string {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return ""
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.Host != r.Host {
		return "cross-origin request refused (Origin " + o + " is not " + r.Host + "): a browser page of another site cannot use this endpoint; send the request without Origin and Referer (curl, a script), or from this host's own pages"
	}
	return ""
}

// Unsafe reports whether method may change state (everything but GET,
// HEAD, OPTIONS and TRACE), so that a cross-origin request with it is
// refused.
func Unsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}
