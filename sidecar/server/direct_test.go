package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// TestUpstreamDirect: upstream.direct (default true) chooses the proxy's
// direct HTTP/1.1 path for bodiless GET and HEAD to a plain-HTTP
// upstream; the "serving" line says which; proxied calls work either way.
func TestUpstreamDirect(t *testing.T) {
	no, yes := false, true
	for _, tc := range []struct {
		name   string
		direct *bool
		want   bool
	}{{"default", nil, true}, {"off", &no, false}, {"on", &yes, true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRig(t, rigOptions{configure: func(h *rig) { h.cfg.Upstream.Direct = tc.direct }})
			if got := h.srv.proxy.DirectPath(); got != tc.want {
				t.Fatalf("direct path %v, want %v", got, tc.want)
			}
			var serving map[string]any
			testkit.Await(t, await, "the serving line", func() bool {
				for _, l := range h.logs.lines(t) {
					if l["msg"] == "serving" {
						serving = l
						return true
					}
				}
				return false
			})
			if serving["upstream_direct"] != tc.want {
				t.Fatalf("serving line: upstream_direct = %v, want %v", serving["upstream_direct"], tc.want)
			}
			tok := h.mustExchange(h.iss, provA)
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				status, body := h.do(method, h.base+"/workspaces/my-company/projects", tok, "", nil)
				if status != http.StatusOK || method == http.MethodGet && !strings.Contains(body, "projects") {
					t.Fatalf("%s: %d %s", method, status, body)
				}
			}
		})
	}
}
