package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/httpclient"
)

const (
	docDiscovery = "discovery"
	docJWKS      = "jwks"
)

// defaultHTTPClient returns a client with a 3 s dial timeout and a 5 s
// overall timeout that follows at most 3 redirects, and only to https (or
// http on a loopback host).
func defaultHTTPClient() *http.Client {
	return httpclient.New(httpclient.Limits{
		Dial: 3 * time.Second, TLSHandshake: 3 * time.Second, ResponseHeader: 5 * time.Second, Total: 5 * time.Second,
		IdlePerHost: 2, MaxRedirects: 3,
		Redirect: func(req *http.Request, _ []*http.Request) error {
			if err := checkFetchURL(req.URL); err != nil {
				return fmt.Errorf("refusing redirect: %w", err)
			}
			return nil
		},
	})
}

// isLoopbackHost reports whether host (no port) is "localhost" or a loopback
// IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFetchURL accepts https URLs and http URLs on a loopback host.
func checkFetchURL(u *url.URL) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		return fmt.Errorf("%s is neither https nor http on a loopback host", quote(u.Redacted()))
	}
	if u.Host == "" {
		return fmt.Errorf("%s has no host", quote(u.Redacted()))
	}
	if u.User != nil {
		return fmt.Errorf("%s carries user information", quote(u.Redacted()))
	}
	return nil
}

// ValidateIssuerURL reports whether issuer is acceptable as a configured
// issuer identifier: an absolute https URL (http only on a loopback host),
// without user info, query or fragment.
func ValidateIssuerURL(issuer string) error {
	if issuer == "" {
		return errors.New("issuer is empty")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer %s is not a URL", quote(issuer))
	}
	if err := checkFetchURL(u); err != nil {
		return fmt.Errorf("issuer %w", err)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#") {
		return fmt.Errorf("issuer %s has a query or fragment", quote(issuer))
	}
	return nil
}

// fetchError is a failed discovery or JWKS fetch.
type fetchError struct {
	doc string // docDiscovery or docJWKS
	err error
}

func (e *fetchError) Error() string { return e.doc + ": " + e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// get fetches u with the per-fetch timeout and body cap.
func (v *Verifier) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, v.opts.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "oidc-sidecar")
	resp, err := v.opts.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("GET %s: timed out after %s", u, v.opts.FetchTimeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	limit := v.opts.MaxResponseBytes
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("GET %s: body of %d bytes exceeds the %d-byte limit", u, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("GET %s: timed out reading the body after %s", u, v.opts.FetchTimeout)
		}
		return nil, fmt.Errorf("GET %s: reading body: %w", u, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: body exceeds the %d-byte limit", u, limit)
	}
	return body, nil
}

// discoveryURL is where the OpenID Provider Configuration of issuer lives
// (OIDC Discovery 1.0 §4: a trailing "/" of the issuer is removed first).
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// fetchKeys fetches the discovery document of issuer and then its JWKS.
func (v *Verifier) fetchKeys(ctx context.Context, issuer string) (*keySet, error) {
	ks, doc, err := v.fetchKeysInner(ctx, issuer)
	if v.opts.OnFetch != nil {
		if doc != docDiscovery {
			v.opts.OnFetch(issuer, docDiscovery, nil)
		}
		v.opts.OnFetch(issuer, doc, err)
	}
	if err != nil {
		return nil, &fetchError{doc: doc, err: err}
	}
	return ks, nil
}

func (v *Verifier) fetchKeysInner(ctx context.Context, issuer string) (*keySet, string, error) {
	body, err := v.get(ctx, discoveryURL(issuer))
	if err != nil {
		return nil, docDiscovery, err
	}
	doc, err := decodeObject(body, maxJSONDepth)
	if err != nil {
		return nil, docDiscovery, fmt.Errorf("discovery document is not a valid JSON object: %w", err)
	}
	got, ok := doc["issuer"].(string)
	if !ok {
		return nil, docDiscovery, errors.New(`discovery document has no "issuer" string`)
	}
	if got != issuer {
		return nil, docDiscovery, fmt.Errorf("discovery document advertises issuer %s, not the configured %s", quote(got), quote(issuer))
	}
	jwksURI, ok := doc["jwks_uri"].(string)
	if !ok || jwksURI == "" {
		return nil, docDiscovery, errors.New(`discovery document has no "jwks_uri" string`)
	}
	u, err := url.Parse(jwksURI)
	if err != nil || !u.IsAbs() {
		return nil, docDiscovery, fmt.Errorf("jwks_uri %s is not an absolute URL", quote(jwksURI))
	}
	if err := checkFetchURL(u); err != nil {
		return nil, docDiscovery, fmt.Errorf("jwks_uri %w", err)
	}
	fetchedAt := v.now()
	body, err = v.get(ctx, jwksURI)
	if err != nil {
		return nil, docJWKS, err
	}
	ks, err := parseJWKS(body, fetchedAt, jwksURI)
	if err != nil {
		return nil, docJWKS, err
	}
	return ks, docJWKS, nil
}
