// Package oidctest is a fake OpenID Provider for tests and the demo: a real
// HTTP server on 127.0.0.1 that serves a discovery document and a JWKS of
// real RSA (2048) and ECDSA (P-256/P-384/P-521) keys, signs tokens with jwx,
// and can rotate keys, go down, slow down and count its fetches.
//
// It does not import "testing", so the product's demo command can use it;
// Start and the Must* helpers take a TB (any *testing.T or *testing.B).
package oidctest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Paths of the two documents, relative to the issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks"
)

// Issuer is a running fake OpenID Provider. Its methods are safe for
// concurrent use.
type Issuer struct {
	url      string
	path     string
	override string
	srv      *http.Server
	closed   chan struct{}
	once     sync.Once

	mu           sync.Mutex
	keys         []*issuerKey // published, in order
	signing      string       // kid of the signing key
	down         bool
	latency      time.Duration
	padDiscovery int
	padJWKS      int
	jwksURI      string
	omitAlg      bool
	discoveryN   int
	jwksN        int
	requestsN    int
}

type issuerKey struct {
	kid    string
	alg    string
	signer crypto.Signer
}

// Option configures NewIssuer.
type Option func(*config)

type config struct {
	alg      string
	path     string
	override string
}

// WithRSA makes the initial key an RSA 2048 key for RS256 (the default).
func WithRSA() Option { return func(c *config) { c.alg = "RS256" } }

// WithECDSA makes the initial key an ECDSA P-256 key for ES256.
func WithECDSA() Option { return func(c *config) { c.alg = "ES256" } }

// WithInitialAlg makes the initial key one for alg (RS*, PS*, ES256/384/512).
func WithInitialAlg(alg string) Option { return func(c *config) { c.alg = alg } }

// WithPath sets the path of the issuer URL, e.g. "/org/<id>" as CircleCI does.
func WithPath(p string) Option { return func(c *config) { c.path = strings.TrimSuffix(p, "/") } }

// WithIssuerOverride makes the discovery document advertise issuer s instead
// of the real issuer URL (for negative tests).
func WithIssuerOverride(s string) Option { return func(c *config) { c.override = s } }

// NewIssuer starts a fake issuer on 127.0.0.1 with one signing key.
func NewIssuer(opts ...Option) (*Issuer, error) {
	cfg := config{alg: "RS256"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.path != "" && !strings.HasPrefix(cfg.path, "/") {
		return nil, fmt.Errorf("oidctest: path %q must start with /", cfg.path)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	i := &Issuer{
		url:      "http://" + ln.Addr().String() + cfg.path,
		path:     cfg.path,
		override: cfg.override,
		closed:   make(chan struct{}),
	}
	if _, err := i.Rotate(cfg.alg); err != nil {
		ln.Close()
		return nil, err
	}
	i.srv = &http.Server{Handler: i, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = i.srv.Serve(ln) }()
	return i, nil
}

// URL returns the issuer identifier, e.g. "http://127.0.0.1:41234/org/abc".
func (i *Issuer) URL() string { return i.url }

// Close stops the server; requests held by SetLatency are released.
func (i *Issuer) Close() {
	i.once.Do(func() {
		close(i.closed)
		_ = i.srv.Close()
	})
}

// ServeHTTP serves the discovery document and the JWKS.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	i.requestsN++
	var kind string
	switch r.URL.Path {
	case i.path + DiscoveryPath:
		kind = "discovery"
		i.discoveryN++
	case i.path + JWKSPath:
		kind = "jwks"
		i.jwksN++
	}
	latency := i.latency
	i.mu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-i.closed:
			t.Stop()
			return
		}
	}

	i.mu.Lock()
	defer i.mu.Unlock()
	if kind == "" {
		http.NotFound(w, r)
		return
	}
	if i.down {
		http.Error(w, "issuer down", http.StatusServiceUnavailable)
		return
	}
	var doc map[string]any
	if kind == "discovery" {
		iss := i.url
		if i.override != "" {
			iss = i.override
		}
		jwksURI := i.url + JWKSPath
		if i.jwksURI != "" {
			jwksURI = i.jwksURI
		}
		doc = map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              jwksURI,
			"subject_types_supported":               []string{"public", "pairwise"},
			"response_types_supported":              []string{"id_token"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "repository_owner"},
			"id_token_signing_alg_values_supported": i.algsLocked(),
			"scopes_supported":                      []string{"openid"},
		}
	} else {
		keys := make([]any, 0, len(i.keys))
		for _, k := range i.keys {
			pub, err := i.publicJWK(k)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			keys = append(keys, pub)
		}
		doc = map[string]any{"keys": keys}
	}
	pad := i.padJWKS
	if kind == "discovery" {
		pad = i.padDiscovery
	}
	if pad > 0 {
		doc["x-padding"] = strings.Repeat("p", pad)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_ = json.NewEncoder(w).Encode(doc)
}

func (i *Issuer) algsLocked() []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range i.keys {
		if !seen[k.alg] {
			seen[k.alg] = true
			out = append(out, k.alg)
		}
	}
	return out
}

func (i *Issuer) publicJWK(k *issuerKey) (map[string]any, error) {
	var m map[string]any
	if pub, ok := k.signer.Public().(*rsa.PublicKey); ok {
		// Built by hand so that keys jwx refuses to import (RSA < 2048
		// bits) can still be published for negative tests.
		m = map[string]any{
			"kty": "RSA",
			"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		}
	} else {
		key, err := jwk.Import(k.signer.Public())
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
	}
	m["kid"] = k.kid
	m["use"] = "sig"
	if !i.omitAlg {
		m["alg"] = k.alg
	}
	return m, nil
}

// SignOption configures Sign.
type SignOption func(*signConfig)

type signConfig struct {
	kid     string
	alg     string
	noKID   bool
	headers [][2]any
}

// WithKID signs with the key kid (and names it in the header) instead of the
// current signing key.
func WithKID(kid string) SignOption { return func(c *signConfig) { c.kid = kid } }

// WithAlg signs (and labels the header) with alg instead of the key's own
// algorithm, e.g. PS256 with an RSA key published for RS256.
func WithAlg(alg string) SignOption { return func(c *signConfig) { c.alg = alg } }

// WithHeader adds a protected header, e.g. "jku". Values must have the types
// jwx expects for registered headers (a jwk.Key for "jwk", []string for
// "crit", a string for "jku"/"x5u").
func WithHeader(k string, v any) SignOption {
	return func(c *signConfig) { c.headers = append(c.headers, [2]any{k, v}) }
}

// WithoutKID leaves the kid header out.
func WithoutKID() SignOption { return func(c *signConfig) { c.noKID = true } }

// Sign signs claims (marshalled with encoding/json) with the current signing
// key and returns a compact JWS with typ "JWT".
func (i *Issuer) Sign(claims map[string]any, opts ...SignOption) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return i.SignRaw(payload, opts...)
}

// SignRaw signs payload bytes as they are (so tests can sign malformed
// payloads: duplicate keys, non-objects, deep nesting).
func (i *Issuer) SignRaw(payload []byte, opts ...SignOption) (string, error) {
	var c signConfig
	for _, o := range opts {
		o(&c)
	}
	i.mu.Lock()
	kid := c.kid
	if kid == "" {
		kid = i.signing
	}
	k := i.keyLocked(kid)
	i.mu.Unlock()
	if k == nil {
		return "", fmt.Errorf("oidctest: no key %q", kid)
	}
	alg := k.alg
	if c.alg != "" {
		alg = c.alg
	}
	ja, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return "", fmt.Errorf("oidctest: unknown alg %q", alg)
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	if !c.noKID {
		if err := h.Set(jws.KeyIDKey, k.kid); err != nil {
			return "", err
		}
	}
	for _, kv := range c.headers {
		if err := h.Set(kv[0].(string), kv[1]); err != nil {
			return "", fmt.Errorf("oidctest: header %v: %w", kv[0], err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(ja, k.signer, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", err
	}
	return string(out), nil
}

func (i *Issuer) keyLocked(kid string) *issuerKey {
	for _, k := range i.keys {
		if k.kid == kid {
			return k
		}
	}
	return nil
}

// NewKey generates a key for alg: RSA 2048 for RS*/PS*, ECDSA P-256, P-384
// or P-521 for ES256, ES384, ES512.
func NewKey(alg string) (crypto.Signer, error) {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	}
	return nil, fmt.Errorf("oidctest: unsupported alg %q", alg)
}

// Rotate adds a new key for alg, publishes it and makes it the signing key.
// Older keys stay published until RemoveKey.
func (i *Issuer) Rotate(alg string) (kid string, err error) {
	signer, err := NewKey(alg)
	if err != nil {
		return "", err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	kid = hex.EncodeToString(b[:])
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, &issuerKey{kid: kid, alg: alg, signer: signer})
	i.signing = kid
	return kid, nil
}

// AddKey publishes signer under kid for alg without making it the signing key.
func (i *Issuer) AddKey(kid, alg string, signer crypto.Signer) error {
	if _, ok := jwa.LookupSignatureAlgorithm(alg); !ok {
		return fmt.Errorf("oidctest: unknown alg %q", alg)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.keyLocked(kid) != nil {
		return errors.New("oidctest: duplicate kid " + kid)
	}
	i.keys = append(i.keys, &issuerKey{kid: kid, alg: alg, signer: signer})
	return nil
}

// RemoveKey unpublishes kid. Removing the signing key leaves the most recent
// remaining key signing.
func (i *Issuer) RemoveKey(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for n, k := range i.keys {
		if k.kid == kid {
			i.keys = append(i.keys[:n:n], i.keys[n+1:]...)
			break
		}
	}
	if i.signing == kid {
		i.signing = ""
		if len(i.keys) > 0 {
			i.signing = i.keys[len(i.keys)-1].kid
		}
	}
}

// KID returns the kid of the current signing key.
func (i *Issuer) KID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signing
}

// Key returns the private key kid, or nil.
func (i *Issuer) Key(kid string) crypto.Signer {
	i.mu.Lock()
	defer i.mu.Unlock()
	if k := i.keyLocked(kid); k != nil {
		return k.signer
	}
	return nil
}

// SetDown makes discovery and JWKS answer 503 while down is true.
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	i.down = down
	i.mu.Unlock()
}

// SetLatency delays every response by d (0: none). A delayed request ends
// early when the client gives up or the issuer is closed.
func (i *Issuer) SetLatency(d time.Duration) {
	i.mu.Lock()
	i.latency = d
	i.mu.Unlock()
}

// SetPadding adds a string member of the given number of bytes to the
// discovery document and the JWKS (0: none), to test body size limits.
func (i *Issuer) SetPadding(discovery, jwks int) {
	i.mu.Lock()
	i.padDiscovery, i.padJWKS = discovery, jwks
	i.mu.Unlock()
}

// SetIssuerOverride makes the discovery document advertise issuer s ("":
// the real issuer URL), like WithIssuerOverride but after start, when URL is
// known (e.g. URL()+"/").
func (i *Issuer) SetIssuerOverride(s string) {
	i.mu.Lock()
	i.override = s
	i.mu.Unlock()
}

// SetJWKSURI makes the discovery document advertise uri as jwks_uri ("":
// the issuer's own JWKS).
func (i *Issuer) SetJWKSURI(uri string) {
	i.mu.Lock()
	i.jwksURI = uri
	i.mu.Unlock()
}

// SetPublishAlg controls whether the JWKS carries each key's "alg" (default
// true); many real issuers omit it.
func (i *Issuer) SetPublishAlg(publish bool) {
	i.mu.Lock()
	i.omitAlg = !publish
	i.mu.Unlock()
}

// Fetches returns how many discovery and JWKS requests the issuer received
// (including ones answered 503).
func (i *Issuer) Fetches() (discovery, jwks int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.discoveryN, i.jwksN
}

// Requests returns the number of HTTP requests of any path received.
func (i *Issuer) Requests() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.requestsN
}

// WaitFetches blocks until the issuer has received at least discovery and
// jwks fetches, or ctx ends.
func (i *Issuer) WaitFetches(ctx context.Context, discovery, jwks int) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		d, j := i.Fetches()
		if d >= discovery && j >= jwks {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("oidctest: waiting for %d/%d fetches, have %d/%d: %w", discovery, jwks, d, j, ctx.Err())
		case <-t.C:
		}
	}
}
