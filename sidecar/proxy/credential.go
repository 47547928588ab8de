package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

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

// tokenValue is the token record as the policy's input.token, built as an
// OPA value directly (no JSON round trip). Keys follow the record's JSON
// names; workspaces is null when the token is good for every workspace.
func tokenValue(r *token.Record) ast.Value {
	claims := make([][2]*ast.Term, 0, len(r.Claims))
	for k, v := range r.Claims {
		claims = append(claims, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
	}
	workspaces := ast.NullTerm()
	if r.Workspaces != nil {
		workspaces = stringArray(r.Workspaces)
	}
	return ast.NewObject(
		[2]*ast.Term{ast.InternedTerm("provider_id"), ast.StringTerm(r.ProviderID)},
		[2]*ast.Term{ast.InternedTerm("provider_name"), ast.StringTerm(r.ProviderName)},
		[2]*ast.Term{ast.InternedTerm("sub"), ast.StringTerm(r.Subject)},
		[2]*ast.Term{ast.InternedTerm("iss"), ast.StringTerm(r.Issuer)},
		[2]*ast.Term{ast.InternedTerm("claims"), ast.ObjectTerm(claims...)},
		[2]*ast.Term{ast.InternedTerm("scopes"), stringArray(r.Scopes)},
		[2]*ast.Term{ast.InternedTerm("workspaces"), workspaces},
		[2]*ast.Term{ast.InternedTerm("ip_restrictions"), stringArray(r.IPRestrictions)},
		[2]*ast.Term{ast.InternedTerm("iat"), ast.IntNumberTerm(int(r.IssuedAt))},
		[2]*ast.Term{ast.InternedTerm("exp"), ast.IntNumberTerm(int(r.ExpiresAt))},
		[2]*ast.Term{ast.InternedTerm("decision_id"), ast.StringTerm(r.DecisionID)},
	)
}

func stringArray(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}
