package server

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pprofPaths are the endpoints tried: the index, a named profile, the
// command line, and a one-second CPU profile.
var pprofPaths = []string{PprofPath, PprofPath + "heap?debug=1", PprofPath + "cmdline", PprofPath + "profile?seconds=1"}

// TestPprofOffByDefault: without pprof: true, /debug/pprof/ does not exist
// on the admin listener, even for the admin credential.
func TestPprofOffByDefault(t *testing.T) {
	h := newRig(t, rigOptions{})
	if h.cfg.Pprof {
		t.Fatal("pprof is on by default")
	}
	for _, p := range pprofPaths {
		if status, body := h.do(http.MethodGet, h.admin+p, h.adminToken, "", nil); status != http.StatusNotFound {
			t.Errorf("GET %s with pprof off: %d %.200s, want 404", p, status, body)
		}
	}
}

// TestPprofNeedsAdminCredential: with pprof: true, every pprof endpoint is
// 401 without the admin bearer (or with a wrong one) and 200 with it: the
// index lists the profiles, a one-second CPU profile is a gzipped
// profile. The main listener never serves it, credential or not.
func TestPprofNeedsAdminCredential(t *testing.T) {
	h := newRig(t, rigOptions{configure: func(h *rig) { h.cfg.Pprof = true }})
	if !logHas(t, h.logs, "level", "WARN", "msg", "pprof is on: "+PprofPath+" on admin_listen serves profiles (admin credential required); they reveal internals, keep it off unless profiling") {
		t.Errorf("no warning that pprof is on:\n%s", h.logs.String())
	}
	for _, p := range pprofPaths {
		for _, bearer := range []string{"", "wrong", h.adminToken + "x"} {
			status, body := h.do(http.MethodGet, h.admin+p, bearer, "", nil)
			if status != http.StatusUnauthorized || !strings.Contains(body, "admin bearer credential is required") {
				t.Errorf("GET %s with bearer %q: %d %.200s, want 401", p, bearer, status, body)
			}
		}
	}
	status, body := h.do(http.MethodGet, h.admin+PprofPath, h.adminToken, "", nil)
	if status != http.StatusOK || !strings.Contains(body, "Types of profiles available") || !strings.Contains(body, "goroutine") {
		t.Fatalf("GET %s with the admin credential: %d %.300s", PprofPath, status, body)
	}
	status, body = h.do(http.MethodGet, h.admin+PprofPath+"heap?debug=1", h.adminToken, "", nil)
	if status != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Fatalf("GET heap: %d %.300s", status, body)
	}
	status, body = h.do(http.MethodGet, h.admin+PprofPath+"profile?seconds=1", h.adminToken, "", nil)
	if status != http.StatusOK || !bytes.HasPrefix([]byte(body), []byte{0x1f, 0x8b}) {
		t.Fatalf("GET profile?seconds=1: %d, %d bytes, want 200 and a gzipped profile", status, len(body))
	}
	status, body = h.do(http.MethodGet, h.admin+PprofPath+"no-such-profile", h.adminToken, "", nil)
	if status != http.StatusNotFound {
		t.Errorf("unknown profile: %d %.200s, want 404", status, body)
	}
	// Writes are not served (profiles are read-only).
	if status, _ := h.do(http.MethodPost, h.admin+PprofPath+"symbol", h.adminToken, "", nil); status != http.StatusMethodNotAllowed {
		t.Errorf("POST symbol: %d, want 405", status)
	}
	// The main listener: the proxy, which knows no such route.
	for _, p := range pprofPaths {
		for _, bearer := range []string{"", h.adminToken} {
			status, body := h.do(http.MethodGet, h.base+p, bearer, "", nil)
			if status == http.StatusOK || strings.Contains(body, "profiles available") || strings.Contains(body, "heap profile") {
				t.Errorf("main listener GET %s (bearer %q): %d %.200s", p, bearer, status, body)
			}
		}
	}
}

// TestPprofWithAdminClientCertificate: with admin_tls.client_ca_file and no
// admin token, the client certificate is the credential for pprof too;
// a client without one gets 401.
func TestPprofWithAdminClientCertificate(t *testing.T) {
	h, ca, clients, _ := startAdminMTLS(t, func(h *rig) { h.cfg.Pprof = true })
	get := func(certs ...tls.Certificate) (int, string) {
		c := &http.Client{Timeout: await, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}}
		resp, err := c.Get(h.admin + PprofPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get(clients.Client(t, "operator").TLS(t)); status != http.StatusOK || !strings.Contains(body, "Types of profiles available") {
		t.Fatalf("pprof with the admin client certificate: %d %.300s", status, body)
	}
	if status, body := get(); status != http.StatusUnauthorized || !strings.Contains(body, "client certificate signed by admin_tls.client_ca_file") {
		t.Fatalf("pprof without a certificate: %d %.300s", status, body)
	}
}

// TestPprofConfig: the key, its variable and serve's flag turn it on.
func TestPprofConfig(t *testing.T) {
	const base = "upstream:\n  url: https://api.buddy.works\nproviders: p.yaml\n"
	for _, c := range []struct {
		name, yaml string
		env        map[string]string
		want       bool
	}{
		{"default", base, nil, false},
		{"key", base + "pprof: true\n", nil, true},
		{"env", base, map[string]string{"OIDC_SIDECAR_PPROF": "true"}, true},
		{"env off over key", base + "pprof: true\n", map[string]string{"OIDC_SIDECAR_PPROF": "false"}, false},
	} {
		cfg, err := ParseConfig("c.yaml", []byte(c.yaml), env(c.env))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if cfg.Pprof != c.want {
			t.Errorf("%s: pprof %v, want %v", c.name, cfg.Pprof, c.want)
		}
	}
	if _, err := ParseConfig("c.yaml", []byte(base+"pprof: yes please\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "pprof") {
		t.Errorf("pprof: yes please: %v", err)
	}
	if _, err := ParseConfig("c.yaml", []byte(base), env(map[string]string{"OIDC_SIDECAR_PPROF": "sure"})); err == nil || !strings.Contains(err.Error(), "OIDC_SIDECAR_PPROF") {
		t.Errorf("OIDC_SIDECAR_PPROF=sure: %v", err)
	}
	p := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(p, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, LoadOptions{Getenv: env(nil), Pprof: true})
	if err != nil || !cfg.Pprof {
		t.Fatalf("serve --pprof: %v %v", cfg, err)
	}
}
