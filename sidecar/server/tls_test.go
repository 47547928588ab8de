package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/exchange"
)

// secretDir lays certificate files out as a Kubernetes secret volume:
// dir/tls.crt -> ..data/tls.crt, ..data -> ..<version>/, and a rotation
// writes a new version directory and swaps ..data atomically (a rename of
// a new symlink), then deletes the old version: the files the sidecar was
// told about are never written in place.
type secretDir struct {
	t       *testing.T
	dir     string
	n       int
	current string
}

func newSecretDir(t *testing.T, files map[string][]byte) *secretDir {
	s := &secretDir{t: t, dir: t.TempDir()}
	s.publish(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *secretDir) path(name string) string { return filepath.Join(s.dir, name) }

// publish makes files the secret's content, as the kubelet does.
func (s *secretDir) publish(files map[string][]byte) {
	t := s.t
	t.Helper()
	s.n++
	version := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", s.n, s.n)
	if err := os.Mkdir(filepath.Join(s.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.dir, version, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if s.current != "" {
		if err := os.RemoveAll(filepath.Join(s.dir, s.current)); err != nil {
			t.Fatal(err)
		}
	}
	s.current = version
}

func pemFiles(l *testkit.Leaf) map[string][]byte {
	return map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM}
}

// startTLS starts a rig whose listeners serve TLS as configure sets
// up; base and admin are https URLs and the client trusts ca.
// fileWriter writes test files into dir and returns their paths.
func fileWriter(t *testing.T, dir string) func(name string, data []byte) string {
	return func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// startAdminMTLS starts a rig whose admin listener serves TLS and takes a
// client certificate from the "admin clients CA" as the only admin
// credential (no admin token); configure, when set, adjusts the rest.
func startAdminMTLS(t *testing.T, configure func(h *rig)) (h *rig, ca, clients *testkit.CA, srvLeaf *testkit.Leaf) {
	t.Helper()
	ca = testkit.NewCA(t, "server CA")
	clients = testkit.NewCA(t, "admin clients CA")
	srvLeaf = ca.Server(t, 30*24*time.Hour, "127.0.0.1")
	write := fileWriter(t, t.TempDir())
	h = startTLS(t, ca, func(h *rig) {
		h.cfg.AdminTLS = AdminTLSConfig{CertFile: write("admin.crt", srvLeaf.CertPEM), KeyFile: write("admin.key", srvLeaf.KeyPEM),
			ClientCAFile: write("clients.pem", clients.CertPEM)}
		delete(h.env, h.cfg.AdminTokenEnv) // the certificate is the only admin credential
		if configure != nil {
			configure(h)
		}
	})
	return h, ca, clients, srvLeaf
}

func startTLS(t *testing.T, ca *testkit.CA, configure func(h *rig)) *rig {
	t.Helper()
	h := newRig(t, rigOptions{configure: configure})
	h.client = &http.Client{Timeout: await, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if h.cfg.TLS.Enabled() {
		h.base = "https://" + h.srv.Addr()
	}
	if h.cfg.AdminTLS.Enabled() {
		h.admin = "https://" + h.srv.AdminAddr()
	}
	return h
}

// servedCert returns the leaf certificate a new handshake with addr gets.
func servedCert(t *testing.T, addr string, ca *testkit.CA) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: await}, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// TestTLSMainListener: the main listener serves HTTPS from PEM files,
// exchanges and proxied calls work over it, the framing guard still reads
// the decrypted bytes, TLS 1.1 is refused, a plain-HTTP request gets a 400
// that says to use https://, and the certificate's expiry is a metric.
func TestTLSMainListener(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	leaf := ca.Server(t, 90*24*time.Hour, "127.0.0.1", "sidecar.example")
	sd := newSecretDir(t, pemFiles(leaf))
	h := startTLS(t, ca, func(h *rig) {
		h.cfg.TLS = TLSConfig{CertFile: sd.path("tls.crt"), KeyFile: sd.path("tls.key")}
	})

	tok := h.mustExchange(h.iss, provA)
	if status, body := h.do(http.MethodGet, h.base+"/workspaces/my-company/projects", tok, "", nil); status != http.StatusOK || !strings.Contains(body, "projects") {
		t.Fatalf("proxied call over HTTPS: %d %s", status, body)
	}

	t.Run("framing guard sees the decrypted request", func(t *testing.T) {
		c, err := tls.Dial("tcp", h.srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(await))
		_, err = io.WriteString(c, "POST /user/oidc/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
			"GET /workspaces/acme/projects HTTP/1.1\r\nHost: x\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !resp.Close || !strings.Contains(string(body), "both Content-Length and Transfer-Encoding") {
			t.Fatalf("ambiguous framing over TLS: %d close=%v %s", resp.StatusCode, resp.Close, body)
		}
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			t.Fatalf("the pipelined request was answered: %q", rest)
		}
	})

	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", h.srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			c.Close()
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("TLS 1.1 handshake error %v, want a protocol version alert", err)
		}
	})

	t.Run("plain HTTP to the HTTPS port", func(t *testing.T) {
		resp, err := http.Get("http://" + h.srv.Addr() + "/workspaces/my-company/projects")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "use https://") {
			t.Errorf("plain HTTP: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("expiry metric", func(t *testing.T) {
		got := metric(h.metricsText(), "oidc_sidecar_tls_certificate_expiry_timestamp_seconds", "listener", "main")
		if got != float64(leaf.Cert.NotAfter.Unix()) {
			t.Errorf("expiry metric %v, want %d", got, leaf.Cert.NotAfter.Unix())
		}
		if got := metric(h.metricsText(), "oidc_sidecar_tls_certificate_expiry_timestamp_seconds", "listener", "admin"); got != -1 {
			t.Errorf("admin listener without TLS has an expiry sample %v", got)
		}
	})
}

// TestTLSRotation: replacing the secret (a Kubernetes-style ..data swap)
// makes new handshakes get the new certificate, while a connection opened
// before keeps working; a broken update keeps the previous certificate.
func TestTLSRotation(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	first := ca.Server(t, 30*24*time.Hour, "127.0.0.1")
	sd := newSecretDir(t, pemFiles(first))
	h := startTLS(t, ca, func(h *rig) {
		h.cfg.TLS = TLSConfig{CertFile: sd.path("tls.crt"), KeyFile: sd.path("tls.key")}
	})
	addr := h.srv.Addr()
	if got := servedCert(t, addr, ca); got.SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", got.SerialNumber, first.Cert.SerialNumber)
	}
	// A keep-alive connection opened before the rotation.
	old := &http.Client{Timeout: await, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, MaxConnsPerHost: 1}}
	tok := h.mustExchange(h.iss, provA)
	get := func(c *http.Client) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.base+"/workspaces/my-company/projects", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("proxied call: %d", resp.StatusCode)
		}
		return resp
	}
	before := get(old).TLS.PeerCertificates[0]

	second := ca.Server(t, 60*24*time.Hour, "127.0.0.1")
	sd.publish(pemFiles(second))
	testkit.Await(t, await, "the rotated certificate on new handshakes", func() bool {
		return servedCert(t, addr, ca).SerialNumber.Cmp(second.Cert.SerialNumber) == 0
	})
	after := get(old).TLS.PeerCertificates[0]
	if after.SerialNumber.Cmp(before.SerialNumber) != 0 {
		t.Errorf("the connection opened before the rotation was replaced (serial %v, then %v)", before.SerialNumber, after.SerialNumber)
	}
	h.awaitMetric("the new expiry", func(text string) bool {
		return metric(text, "oidc_sidecar_tls_certificate_expiry_timestamp_seconds", "listener", "main") == float64(second.Cert.NotAfter.Unix())
	})
	if n := metric(h.metricsText(), "oidc_sidecar_tls_certificate_reloads_total", "listener", "main", "result", "ok"); n < 1 {
		t.Errorf("tls_certificate_reloads_total{result=ok} = %v", n)
	}

	// A key that does not belong to the certificate: reported, not served.
	third := ca.Server(t, 90*24*time.Hour, "127.0.0.1")
	sd.publish(map[string][]byte{"tls.crt": third.CertPEM, "tls.key": first.KeyPEM})
	h.awaitMetric("a failed certificate reload", func(text string) bool {
		return metric(text, "oidc_sidecar_tls_certificate_reloads_total", "listener", "main", "result", "error") >= 1
	})
	if got := servedCert(t, addr, ca); got.SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("after a broken update the served serial is %v, want the previous %v", got.SerialNumber, second.Cert.SerialNumber)
	}
	if !logHas(t, h.logs, "msg", "TLS certificate reload failed; still serving the previous certificate") {
		t.Errorf("no log line for the failed reload:\n%s", h.logs.String())
	}
}

// TestAdminMutualTLS: with admin_tls.client_ca_file, a client certificate
// from that CA is the admin credential (reload, introspection) even with
// no admin token configured; probes without one still reach /healthz;
// a certificate from another CA is refused in the handshake.
func TestAdminMutualTLS(t *testing.T) {
	h, ca, clients, srvLeaf := startAdminMTLS(t, nil)
	clientWith := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: await, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}}
	}
	post := func(c *http.Client, path, form string) (int, string, error) {
		resp, err := c.Post(h.admin+path, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	operator := clientWith(clients.Client(t, "operator").TLS(t))
	anonymous := clientWith()

	if status, body, err := post(operator, ReloadPath, ""); err != nil || status != http.StatusOK {
		t.Fatalf("reload with the admin client certificate: %d %s %v", status, body, err)
	}
	status, body, err := post(anonymous, ReloadPath, "")
	if err != nil || status != http.StatusUnauthorized || !strings.Contains(body, "client certificate signed by admin_tls.client_ca_file") {
		t.Fatalf("reload without a certificate: %d %s %v", status, body, err)
	}
	tok := h.mustExchange(h.iss, provA)
	if status, body, err := post(operator, exchange.IntrospectPath, url.Values{"token": {tok}}.Encode()); err != nil || status != http.StatusOK || !strings.Contains(body, `"active":true`) {
		t.Fatalf("introspection with the admin client certificate: %d %s %v", status, body, err)
	}
	if status, body, err := post(anonymous, exchange.IntrospectPath, url.Values{"token": {tok}}.Encode()); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("introspection without a certificate: %d %s %v", status, body, err)
	}
	// A browser holding the certificate presents it on a cross-site form
	// post too: a POST that names another origin (or "null") is refused
	// whatever the credential; the sidecar's own origin, and no Origin
	// (curl, scripts, above), pass.
	postFrom := func(path, form, hdr, origin string) (int, string) {
		req, _ := http.NewRequest("POST", h.admin+path, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(hdr, origin)
		resp, err := operator.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	intro := url.Values{"token": {tok}}.Encode()
	for _, c := range [][2]string{{"Origin", "https://evil.example"}, {"Origin", "null"}, {"Referer", "https://evil.example/page"}} {
		for _, path := range []string{ReloadPath, exchange.IntrospectPath} {
			if status, body := postFrom(path, intro, c[0], c[1]); status != http.StatusForbidden || !strings.Contains(body, "cross-origin request refused") || strings.Contains(body, `"active"`) {
				t.Errorf("%s with the certificate, %s %s: %d %s, want 403", path, c[0], c[1], status, body)
			}
		}
	}
	for _, path := range []string{ReloadPath, exchange.IntrospectPath} {
		if status, body := postFrom(path, intro, "Origin", h.admin); status != http.StatusOK {
			t.Errorf("%s with the certificate, same origin: %d %s, want 200", path, status, body)
		}
	}
	resp, err := anonymous.Get(h.admin + HealthPath)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz without a client certificate: %v %v", resp, err)
	}
	resp.Body.Close()

	// A certificate from another CA, sent although the server asked for
	// its own CA's (Go's client would otherwise send none): refused.
	strangerCert := testkit.NewCA(t, "another CA").Client(t, "stranger").TLS(t)
	stranger := &http.Client{Timeout: await, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strangerCert, nil }}}}
	if status, body, err := post(stranger, ReloadPath, ""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client certificate from another CA: %d %s %v, want a handshake failure", status, body, err)
	}
	if got := metric(h.metricsText(), "oidc_sidecar_tls_certificate_expiry_timestamp_seconds", "listener", "admin"); got != float64(srvLeaf.Cert.NotAfter.Unix()) {
		t.Errorf("admin expiry metric %v, want %d", got, srvLeaf.Cert.NotAfter.Unix())
	}
}

// TestTLSStartupErrors: files that are missing or do not match fail New
// with a message naming the key and how to fix it.
func TestTLSStartupErrors(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	a, b := ca.Server(t, time.Hour, "127.0.0.1"), ca.Server(t, time.Hour, "127.0.0.1")
	dir := t.TempDir()
	write := fileWriter(t, dir)
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want string
	}{
		{"missing cert", func(c *Config) {
			c.TLS = TLSConfig{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: write("a.key", a.KeyPEM)}
		}, "tls.cert_file: open "},
		{"key of another certificate", func(c *Config) {
			c.TLS = TLSConfig{CertFile: write("a.crt", a.CertPEM), KeyFile: write("b.key", b.KeyPEM)}
		}, "are not a PEM certificate and its private key"},
		{"client CA without certificates", func(c *Config) {
			c.AdminTLS = AdminTLSConfig{CertFile: write("a.crt", a.CertPEM), KeyFile: write("a.key", a.KeyPEM), ClientCAFile: write("empty.pem", []byte("not PEM"))}
		}, "admin_tls.client_ca_file " + filepath.Join(dir, "empty.pem") + ": no PEM CERTIFICATE block found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRigNoStart(t, rigOptions{configure: func(h *rig) { tc.set(h.cfg) }})
			_, err := New(context.Background(), h.cfg, h.options(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestTLSConfigKeys: the tls, admin_tls and buddy_response keys from YAML
// and OIDC_SIDECAR_* variables, relative paths resolved against the
// config's directory, and the mistakes reported with how to fix them.
func TestTLSConfigKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sidecar.yaml")
	src := "upstream:\n  url: https://api.buddy.works\nproviders: p.yaml\ntls:\n  cert_file: certs/tls.crt\n  key_file: certs/tls.key\nbuddy_response: json_string\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path, env(map[string]string{
		"OIDC_SIDECAR_ADMIN_TLS_CERT_FILE":      "/etc/admin/tls.crt",
		"OIDC_SIDECAR_ADMIN_TLS_KEY_FILE":       "/etc/admin/tls.key",
		"OIDC_SIDECAR_ADMIN_TLS_CLIENT_CA_FILE": "/etc/admin/ca.crt",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.CertFile != filepath.Join(dir, "certs/tls.crt") || c.TLS.KeyFile != filepath.Join(dir, "certs/tls.key") {
		t.Errorf("tls paths not resolved against the config's directory: %+v", c.TLS)
	}
	if c.AdminTLS != (AdminTLSConfig{CertFile: "/etc/admin/tls.crt", KeyFile: "/etc/admin/tls.key", ClientCAFile: "/etc/admin/ca.crt"}) {
		t.Errorf("admin_tls from the environment: %+v", c.AdminTLS)
	}
	if c.BuddyResponse != "json_string" {
		t.Errorf("buddy_response %q", c.BuddyResponse)
	}
	if d := Defaults(); d.BuddyResponse != "text" || d.TLS.Enabled() || d.AdminTLS.Enabled() {
		t.Errorf("defaults: %q %+v %+v", d.BuddyResponse, d.TLS, d.AdminTLS)
	}

	bad := "upstream:\n  url: https://api.buddy.works\nproviders: p.yaml\ntls:\n  cert_file: a.crt\nadmin_tls:\n  key_file: b.key\n  client_ca_file: ca.crt\nbuddy_response: json\n"
	_, err = ParseConfig("c.yaml", []byte(bad), env(nil))
	for _, want := range []string{
		"tls.cert_file is set but tls.key_file is not; set both (PEM files)",
		"admin_tls.key_file is set but admin_tls.cert_file is not",
		`buddy_response is "json"; use text (the bare token, what buddy/login reads) or json_string`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
	_, err = ParseConfig("c.yaml", []byte("upstream:\n  url: https://api.buddy.works\nproviders: p.yaml\nadmin_tls:\n  client_ca_file: ca.crt\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "admin_tls.client_ca_file needs admin_tls.cert_file and admin_tls.key_file") {
		t.Errorf("client_ca_file alone: %v", err)
	}
}
