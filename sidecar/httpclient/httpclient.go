// Package httpclient builds the sidecar's outbound HTTP clients (OIDC
// discovery and JWKS, bundle URLs): bounded dial, TLS, header and total
// times, proxy from the environment, and a bounded, checked redirect chain.
package httpclient

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// Limits are a client's bounds. Zero values are not defaults: set each.
type Limits struct {
	Dial           time.Duration // TCP connect
	TLSHandshake   time.Duration
	ResponseHeader time.Duration // from request written to response headers
	Total          time.Duration // whole exchange, body included (http.Client.Timeout)
	IdlePerHost    int           // idle connections kept per host
	// MaxRedirects refuses a redirect once the chain already has this many
	// requests (net/http's own rule, len(via) >= MaxRedirects): 3 follows
	// at most 2 redirects.
	MaxRedirects int
	// Redirect checks each redirect target (via[0] is the first request);
	// nil accepts any target within MaxRedirects.
	Redirect func(req *http.Request, via []*http.Request) error
}

// New returns a client with those limits.
func New(l Limits) *http.Client {
	dialer := &net.Dialer{Timeout: l.Dial, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: l.Total,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   l.TLSHandshake,
			ResponseHeaderTimeout: l.ResponseHeader,
			MaxIdleConnsPerHost:   l.IdlePerHost,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= l.MaxRedirects {
				return errors.New("too many redirects")
			}
			if l.Redirect != nil {
				return l.Redirect(req, via)
			}
			return nil
		},
	}
}
