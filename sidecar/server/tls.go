package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSConfig is the main listener's tls block: a PEM certificate (chain)
// and its private key. Both empty: plain HTTP.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// AdminTLSConfig is the admin listener's admin_tls block: like TLSConfig,
// plus an optional CA bundle whose client certificates hold the admin
// credential (mutual TLS).
type AdminTLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the listener serves TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Enabled reports whether the admin listener serves TLS.
func (t AdminTLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// certPollInterval is how often the certificate files are re-read even
// without a file event (file systems that send none, missed events).
const certPollInterval = time.Minute

// validateClientFacing checks the keys that decide what clients see: the
// tls and admin_tls blocks (the files themselves are read by New) and
// buddy_response.
func (c *Config) validateClientFacing() []string {
	var errs []string
	pair := func(block, cert, key string) {
		switch {
		case cert != "" && key == "":
			errs = append(errs, fmt.Sprintf("%s.cert_file is set but %s.key_file is not; set both (PEM files) to serve HTTPS, or neither for plain HTTP", block, block))
		case cert == "" && key != "":
			errs = append(errs, fmt.Sprintf("%s.key_file is set but %s.cert_file is not; set both (PEM files) to serve HTTPS, or neither for plain HTTP", block, block))
		}
	}
	pair("tls", c.TLS.CertFile, c.TLS.KeyFile)
	pair("admin_tls", c.AdminTLS.CertFile, c.AdminTLS.KeyFile)
	if c.AdminTLS.ClientCAFile != "" && !c.AdminTLS.Enabled() {
		errs = append(errs, "admin_tls.client_ca_file needs admin_tls.cert_file and admin_tls.key_file: client certificates are only asked for over TLS")
	}
	switch c.BuddyResponse {
	case "text", "json_string":
	default:
		errs = append(errs, fmt.Sprintf("buddy_response is %q; use text (the bare token, what buddy/login reads) or json_string (the token as a JSON string)", c.BuddyResponse))
	}
	return errs
}

// resolveTLSPaths makes the tls and admin_tls file paths relative to dir.
func (c *Config) resolveTLSPaths(rel func(string) string) {
	c.TLS.CertFile, c.TLS.KeyFile = rel(c.TLS.CertFile), rel(c.TLS.KeyFile)
	c.AdminTLS.CertFile, c.AdminTLS.KeyFile = rel(c.AdminTLS.CertFile), rel(c.AdminTLS.KeyFile)
	c.AdminTLS.ClientCAFile = rel(c.AdminTLS.ClientCAFile)
}

// tlsMetrics are the listeners' certificate metrics.
type tlsMetrics struct {
	expiry  *prometheus.GaugeVec
	reloads *prometheus.CounterVec
}

func newTLSMetrics(reg *prometheus.Registry) *tlsMetrics {
	m := &tlsMetrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "oidc_sidecar", Name: "tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate a listener serves expires (its NotAfter, Unix seconds), by listener (main, admin)."}, []string{"listener"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "oidc_sidecar", Name: "tls_certificate_reloads_total",
			Help: "Certificate (and client CA) loads after a file change, by listener and result (ok, error)."}, []string{"listener", "result"}),
	}
	reg.MustRegister(m.expiry, m.reloads)
	return m
}

// certReloader serves a listener's certificate (and, for the admin
// listener, its client CAs) from PEM files, and re-reads them when they
// change. A handshake always gets the last set that loaded completely: a
// half-written or mismatched update is reported and the previous
// certificate keeps serving; connections already open are never touched.
type certReloader struct {
	listener                  string // "main" or "admin", the metric label
	certFile, keyFile, caFile string
	log                       *slog.Logger
	metrics                   *tlsMetrics

	mu  sync.Mutex // serializes reload
	cur atomic.Pointer[certSet]
}

// certSet is one complete load.
type certSet struct {
	cert    *tls.Certificate
	clients *x509.CertPool // nil without a client CA file
	raw     []byte         // the files' bytes, to skip unchanged content
}

// newCertReloader loads the files once; an error is fatal at start-up.
func newCertReloader(listener, certFile, keyFile, caFile string, log *slog.Logger, m *tlsMetrics) (*certReloader, error) {
	r := &certReloader{listener: listener, certFile: certFile, keyFile: keyFile, caFile: caFile, log: log, metrics: m}
	if _, err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the files and swaps them in when they changed and are
// valid. changed is false when the content is the one serving.
func (r *certReloader) reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set, err := r.load()
	if err != nil {
		return false, err
	}
	if cur := r.cur.Load(); cur != nil && bytes.Equal(cur.raw, set.raw) {
		return false, nil
	}
	r.cur.Store(set)
	r.metrics.expiry.WithLabelValues(r.listener).Set(float64(set.cert.Leaf.NotAfter.Unix()))
	return true, nil
}

func (r *certReloader) load() (*certSet, error) {
	block := "tls"
	if r.listener == "admin" {
		block = "admin_tls"
	}
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file: %w", block, err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.key_file: %w", block, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %s and %s are not a PEM certificate and its private key (%v); give the certificate (chain) and the key it was issued for, both PEM-encoded", block, r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s.cert_file %s: %w", block, r.certFile, err)
		}
	}
	raw := bytes.Join([][]byte{certPEM, keyPEM}, []byte{0})
	set := &certSet{cert: &cert}
	if r.caFile != "" {
		caPEM, err := os.ReadFile(r.caFile)
		if err != nil {
			return nil, fmt.Errorf("admin_tls.client_ca_file: %w", err)
		}
		if set.clients, err = parseCAs(caPEM); err != nil {
			return nil, fmt.Errorf("admin_tls.client_ca_file %s: %w", r.caFile, err)
		}
		raw = append(append(raw, 0), caPEM...)
	}
	set.raw = raw
	return set, nil
}

// parseCAs reads every CERTIFICATE block of a PEM bundle; it fails on a
// bundle without one or with one that does not parse.
func parseCAs(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %v", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found; give the CA certificate(s) that sign the admin clients' certificates")
	}
	return pool, nil
}

// getCertificate is tls.Config.GetCertificate: the current certificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load().cert, nil
}

// config returns the listener's tls.Config: TLS 1.2 at least, HTTP/1.1
// (the main listener's framing guard reads HTTP/1 bytes), the current
// certificate per handshake and, with a client CA file, client
// certificates verified against the current CAs when a client offers one
// (probes and scrapers without one still reach /healthz, /readyz,
// /metrics; admin actions then need the bearer credential).
func (r *certReloader) config() *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: r.getCertificate,
	}
	if r.caFile == "" {
		return base
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = r.cur.Load().clients
		return c, nil
	}
	return base
}

// watch re-reads the files when they change (their directories are
// watched, so renames and Kubernetes' "..data" symlink swap are seen; the
// targets of symlinks too) and every certPollInterval, until ctx ends.
func (r *certReloader) watch(ctx context.Context) {
	check := func() {
		changed, err := r.reload()
		switch {
		case err != nil:
			r.metrics.reloads.WithLabelValues(r.listener, "error").Inc()
			r.log.Error("TLS certificate reload failed; still serving the previous certificate", "listener", r.listener, "error", err.Error())
		case changed:
			r.metrics.reloads.WithLabelValues(r.listener, "ok").Inc()
			leaf := r.cur.Load().cert.Leaf
			r.log.Info("TLS certificate reloaded", "listener", r.listener, "subject", leaf.Subject.String(),
				"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	var paths []string
	for _, p := range []string{r.certFile, r.keyFile, r.caFile} {
		if p == "" {
			continue
		}
		paths = append(paths, p)
		if t, err := filepath.EvalSymlinks(p); err == nil && t != filepath.Clean(p) {
			paths = append(paths, t)
		}
	}
	go func() {
		if err := watchPaths(ctx, paths, check, r.log); err != nil && ctx.Err() == nil {
			r.log.Warn("TLS certificate files cannot be watched; they are re-read every "+certPollInterval.String(), "listener", r.listener, "error", err.Error())
		}
	}()
	t := time.NewTicker(certPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// tlsListener is tls.NewListener whose connections finish their handshake
// on the first Read, and answer a plain-HTTP request with a 400 that says
// so (as net/http does for its own *tls.Conn, which the framing guard's
// wrapper hides from it).
type tlsListener struct {
	net.Listener
	config *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsServerConn{Conn: tls.Server(c, l.config)}, nil
}

// tlsServerConn is a server-side *tls.Conn whose first Read reports a
// plain-HTTP client.
type tlsServerConn struct {
	*tls.Conn
}

func (c *tlsServerConn) Read(p []byte) (int, error) {
	if err := c.Conn.Handshake(); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+
				"This is the oidc-sidecar's HTTPS port (tls.cert_file is set): use https:// in the URL.\n")
			_ = re.Conn.Close()
		}
		return 0, err
	}
	return c.Conn.Read(p)
}

func looksLikeHTTP(h [5]byte) bool {
	switch string(h[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE", "PRI *":
		return true
	}
	return false
}
