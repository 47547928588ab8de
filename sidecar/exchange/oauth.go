package exchange

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

// RFC 8693 identifiers.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// maxScopes bounds the scope parameter.
const maxScopes = 64

// TokenResponse is the RFC 8693 §2.2.1 success response.
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
}

// OAuthError is the RFC 6749 §5.2 error response.
type OAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// serveToken is POST /_sidecar/oauth2/token, the RFC 8693 token exchange.
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	g, f := h.run(w, r, "rfc8693", h.parseToken)
	if f != nil {
		writeOAuthFailure(w, f)
		return
	}
	writeJSON(w, http.StatusOK, TokenResponse{
		AccessToken:     g.token,
		IssuedTokenType: TokenTypeAccessToken,
		TokenType:       "Bearer",
		ExpiresIn:       int64(g.lifetime.Seconds()),
		Scope:           strings.Join(g.rec.Scopes, " "),
	})
}

// oauthStatus maps a failure to the token endpoint's status and error code
// (RFC 6749 §5.2, RFC 8693 §2.2.2: a subject token that is invalid or not
// acceptable by policy is invalid_request).
func oauthStatus(k kind) (int, string) {
	switch k {
	case kindBadRequest, kindInvalidToken, kindDenied, kindIPNotAllowed, kindReplayed:
		return http.StatusBadRequest, "invalid_request"
	case kindTooLarge:
		return http.StatusRequestEntityTooLarge, "invalid_request"
	case kindBodyTimeout:
		return http.StatusRequestTimeout, "invalid_request"
	case kindMethod:
		return http.StatusMethodNotAllowed, "invalid_request"
	case kindUnsupportedType:
		return http.StatusBadRequest, "unsupported_grant_type"
	case kindUnknownProvider:
		return http.StatusUnauthorized, "invalid_client"
	case kindInvalidScope:
		return http.StatusBadRequest, "invalid_scope"
	case kindRateLimited:
		return http.StatusTooManyRequests, "temporarily_unavailable"
	}
	return http.StatusServiceUnavailable, "temporarily_unavailable"
}

func writeOAuthFailure(w http.ResponseWriter, f *failure) {
	switch f.kind {
	case kindRateLimited, kindUnavailable:
		retryAfterHeader(w, f.retryAfter)
	case kindMethod:
		w.Header().Set("Allow", http.MethodPost)
	}
	status, code := oauthStatus(f.kind)
	writeJSON(w, status, OAuthError{Error: code, ErrorDescription: f.msg})
}

// writeJSON writes v with the headers every OAuth response carries.
func writeJSON(w http.ResponseWriter, status int, v any) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// parseToken validates an RFC 8693 request.
func (h *Handler) parseToken(w http.ResponseWriter, r *http.Request) (request, *failure) {
	form, f := h.parseForm(w, r, TokenPath, "subject_token")
	if f != nil {
		return request{}, f
	}
	for _, p := range []string{"grant_type", "subject_token", "subject_token_type", "client_id", "scope", "requested_token_type"} {
		if len(form[p]) > 1 {
			return request{}, fail(kindBadRequest, "parameter %s is repeated; send it once", p)
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case GrantTypeTokenExchange:
	case "":
		return request{}, fail(kindBadRequest, "grant_type is missing; send grant_type=%s", GrantTypeTokenExchange)
	default:
		return request{}, fail(kindUnsupportedType, "grant_type %s is not supported; this endpoint only does token exchange: grant_type=%s", quote(gt), GrantTypeTokenExchange)
	}
	subject := form.Get("subject_token")
	if subject == "" {
		return request{}, fail(kindBadRequest, "subject_token is missing; send the OIDC token (a JWT) your CI provider issued")
	}
	switch st := form.Get("subject_token_type"); st {
	case TokenTypeJWT, TokenTypeIDToken:
	case "":
		return request{}, fail(kindBadRequest, "subject_token_type is missing; send subject_token_type=%s", TokenTypeJWT)
	default:
		return request{}, fail(kindBadRequest, "subject_token_type %s is not supported; the subject token must be an OIDC token: send %s or %s", quote(st), TokenTypeJWT, TokenTypeIDToken)
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != TokenTypeAccessToken {
		return request{}, fail(kindBadRequest, "requested_token_type %s is not supported; omit it or send %s", quote(rt), TokenTypeAccessToken)
	}
	if form.Get("actor_token") != "" || form.Get("actor_token_type") != "" {
		return request{}, fail(kindBadRequest, "delegation (actor_token) is not supported; omit actor_token and actor_token_type")
	}
	clientID := form.Get("client_id")
	id := parseProviderID(clientID)
	switch {
	case clientID == "":
		return request{}, fail(kindBadRequest, "client_id is missing; set it to the id (a UUID) of the OIDC provider")
	case id == "":
		return request{}, fail(kindBadRequest, "client_id %s is not a UUID; set it to the id of the OIDC provider, e.g. 550e8400-e29b-41d4-a716-446655440000", quote(clientID))
	}
	var scopes []string
	if _, ok := form["scope"]; ok {
		scopes = splitScopes(form.Get("scope"))
		if len(scopes) > maxScopes {
			return request{}, fail(kindBadRequest, "scope lists %d scopes; at most %d are allowed", len(scopes), maxScopes)
		}
		for _, s := range scopes {
			if scope.Known(s) {
				continue
			}
			if up := strings.ToUpper(s); scope.Known(up) {
				return request{}, fail(kindInvalidScope, "unknown scope %s: Buddy's scope names are upper case; request %s", quote(s), up)
			}
			return request{}, fail(kindInvalidScope, "unknown scope %s: not a Buddy scope name (they are upper case, e.g. EXECUTION_RUN; see the scope table in the sidecar's docs/providers.md)", quote(s))
		}
	}
	return request{providerID: id, subjectToken: subject, scopes: scopes}, nil
}

// parseForm checks the method and Content-Type and parses a form body.
// secret names a parameter that must never travel in the URL (URLs get
// logged); a request that puts it there is refused.
func (h *Handler) parseForm(w http.ResponseWriter, r *http.Request, path, secret string) (url.Values, *failure) {
	const form = "application/x-www-form-urlencoded"
	if r.Method != http.MethodPost {
		return nil, fail(kindMethod, "%s %s is not supported; send POST with Content-Type: %s", r.Method, path, form)
	}
	if r.URL.Query().Has(secret) {
		return nil, fail(kindBadRequest, "%s must be sent in the form body, not in the URL (URLs end up in logs); treat that token as leaked", secret)
	}
	if f := checkContentType(r, form, "form-encode the parameters in the body"); f != nil {
		return nil, f
	}
	body, err := h.readBody(w, r)
	if errors.Is(err, errTooLarge) {
		return nil, fail(kindTooLarge, "the request body is larger than %d bytes", h.maxBody)
	}
	if errors.Is(err, errBodyTimeout) {
		return nil, h.bodyTimeoutFailure()
	}
	if err != nil {
		return nil, fail(kindBadRequest, "the request body could not be read: %v", err)
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fail(kindBadRequest, "the request body is not a valid form (%v); form-encode the parameters", err)
	}
	return v, nil
}
