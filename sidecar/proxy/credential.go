package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// accessTokenParam is the legacy query parameter Buddy also accepts.
const accessTokenParam = "access_token"

// errConflictingTokens: two different tokens in one request.
var errConflictingTokens = errors.New("the request carries two different access tokens (Authorization header and access_token query parameter, or repeated values); send one")

// bearerToken returns the token a request presents and whether it presented
// one at all. Sources: "Authorization: Bearer <t>" (scheme case-insensitive)
// and the legacy ?access_token=<t> query parameter. Two different values —
// from both sources, repeated headers or repeated parameters — are an error
// (400): the proxy will not guess which one the caller meant.
//
// An Authorization header with another scheme (Basic, ...) is not a bearer
// token: sent is false, unless the query parameter supplies one.
func bearerToken(req *http.Request) (tok string, sent bool, err error) {
	for _, h := range req.Header.Values("Authorization") {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		t := strings.TrimSpace(rest)
		if sent && t != tok {
			return "", true, errConflictingTokens
		}
		tok, sent = t, true
	}
	if q := req.URL.RawQuery; mayHave(q) {
		for _, t := range queryValues(q, accessTokenParam) {
			if t == "" {
				continue
			}
			if sent && t != tok {
				return "", true, errConflictingTokens
			}
			tok, sent = t, true
		}
	}
	return tok, sent, nil
}

// queryValues returns the values of key in a raw query, parsed the way
// url.ParseQuery does (pairs with a ';' or a bad escape are skipped, as
// net/http and httputil.ReverseProxy skip them).
func queryValues(raw, key string) []string {
	var out []string
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		if err1 != nil || k != key {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// stripAccessToken removes every access_token=... pair (key compared
// unescaped) from a raw query, keeping the other pairs byte for byte and in
// order.
func stripAccessToken(raw string) string {
	if !mayHave(raw) {
		return raw
	}
	var b strings.Builder
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		k, _, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == accessTokenParam || k == accessTokenParam {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	return b.String()
}

// mayHave is a fast pre-check: a raw query without "token" and without
// any escape cannot carry an access_token parameter.
func mayHave(raw string) bool {
	return raw != "" && (strings.Contains(raw, "token") || strings.Contains(raw, "%"))
}

// preparedToken is the token record as the proxy decision's input.token.
func preparedToken(r *token.Record) *policy.PreparedToken {
	return policy.PrepareToken(policy.Token{
		ProviderID: r.ProviderID, ProviderName: r.ProviderName, Subject: r.Subject, Issuer: r.Issuer,
		Claims: r.Claims, Scopes: r.Scopes, Workspaces: r.Workspaces, IPRestrictions: r.IPRestrictions,
		IssuedAt: r.IssuedAt, ExpiresAt: r.ExpiresAt, DecisionID: r.DecisionID,
	})
}
