package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// TestTLSMainListenerForwardedProto: behind the framing guard's connection
// wrapper the request still knows it came over TLS, so the upstream is told
// X-Forwarded-Proto: https (it builds links from it), not http.
func TestTLSMainListenerForwardedProto(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	leaf := ca.Server(t, 90*24*time.Hour, "127.0.0.1")
	sd := newSecretDir(t, pemFiles(leaf))
	h := startTLS(t, ca, func(h *rig) {
		h.cfg.TLS = TLSConfig{CertFile: sd.path("tls.crt"), KeyFile: sd.path("tls.key")}
	})
	tok := h.mustExchange(h.iss, provA)
	h.api.Reset()
	if status, body := h.do(http.MethodGet, h.base+"/workspaces/my-company/projects", tok, "", nil); status != http.StatusOK || !strings.Contains(body, "projects") {
		t.Fatalf("proxied call over HTTPS: %d %s", status, body)
	}
	got := h.api.Requests()
	if len(got) != 1 || got[0].Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("upstream received %+v, want one request with X-Forwarded-Proto: https", got)
	}
}
