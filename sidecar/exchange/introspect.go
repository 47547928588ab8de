package exchange

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/sameorigin"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// inactive is the whole RFC 7662 answer for an unknown, expired, revoked or
// malformed token: it does not say which.
var inactive = map[string]any{"active": false}

// serveIntrospect is POST /_sidecar/oauth2/introspect (RFC 7662), on the
// admin listener. The caller authenticates with Authorization: Bearer
// <admin token>, or (Options.AdminClientCert) with a client certificate the
// admin listener verified.
func (h *Handler) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if h.admin == nil && !h.adminCert {
		writeJSON(w, http.StatusNotFound, OAuthError{Error: "not_found",
			ErrorDescription: "introspection is disabled: the sidecar has no admin token configured (set admin_token_env) and no admin client CA (admin_tls.client_ca_file)"})
		return
	}
	// A browser holding the admin client certificate presents it on a
	// cross-site form post too: such a request is refused whatever the
	// credential.
	if sameorigin.Unsafe(r.Method) {
		if msg := sameorigin.Check(r); msg != "" {
			writeJSON(w, http.StatusForbidden, OAuthError{Error: "invalid_request", ErrorDescription: msg})
			return
		}
	}
	if !h.adminAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="oidc-sidecar-admin", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, OAuthError{Error: "invalid_token",
			ErrorDescription: h.adminHow()})
		return
	}
	tok, ok := h.tokenParam(w, r, IntrospectPath, "introspect")
	if !ok {
		return
	}
	if !token.WellFormed(tok) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	rec, err := h.store.Get(r.Context(), token.Hash(tok))
	switch {
	case errors.Is(err, token.ErrNotFound):
		writeJSON(w, http.StatusOK, inactive)
		return
	case err != nil:
		// Not active:false: an outage must not make a live token look dead.
		h.metrics.StoreError("get")
		h.log.Error("token store failed during introspection", "error", err.Error())
		writeJSON(w, http.StatusServiceUnavailable, OAuthError{Error: "temporarily_unavailable",
			ErrorDescription: "the token store is unavailable, so the token's state is unknown; retry in a few seconds"})
		return
	}
	if rec.Expired(h.now()) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	writeJSON(w, http.StatusOK, introspection(rec))
}

// introspection is the RFC 7662 answer for an active token: the registered
// members, then the sidecar's own (provider_name, workspaces — null means
// all — ip_restrictions, decision_id) and the selected claims of the OIDC
// token it was issued for, which never override a registered member.
func introspection(rec *token.Record) map[string]any {
	out := make(map[string]any, 12+len(rec.Claims))
	for k, v := range rec.Claims {
		out[k] = v
	}
	ips := rec.IPRestrictions
	if ips == nil {
		ips = []string{}
	}
	for k, v := range map[string]any{
		"active":          true,
		"scope":           strings.Join(rec.Scopes, " "),
		"client_id":       rec.ProviderID,
		"sub":             rec.Subject,
		"iss":             rec.Issuer,
		"exp":             rec.ExpiresAt,
		"iat":             rec.IssuedAt,
		"token_type":      "Bearer",
		"provider_name":   rec.ProviderName,
		"workspaces":      rec.Workspaces,
		"ip_restrictions": ips,
		"decision_id":     rec.DecisionID,
	} {
		out[k] = v
	}
	return out
}

// adminHow says how to authenticate to introspection.
func (h *Handler) adminHow() string {
	switch {
	case h.admin != nil && h.adminCert:
		return "introspection needs the sidecar's admin credential: send Authorization: Bearer <admin token>, or present a client certificate signed by the admin client CA"
	case h.adminCert:
		return "introspection needs a client certificate signed by the sidecar's admin client CA (admin_tls.client_ca_file)"
	}
	return "introspection needs the sidecar's admin token: send Authorization: Bearer <admin token>"
}

// adminAuthorized accepts a client certificate the admin listener verified
// (when Options.AdminClientCert is set), or compares the bearer credential
// with the admin token in constant time (over SHA-256 digests, so the
// length does not leak either).
func (h *Handler) adminAuthorized(r *http.Request) bool {
	if h.adminCert && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if h.admin == nil {
		return false
	}
	auth := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	cred = strings.TrimSpace(cred)
	return cred != "" && subtle.ConstantTimeCompare(digest(cred), h.admin) == 1
}

func digest(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// serveRevoke is POST /_sidecar/oauth2/revoke (RFC 7009). Possession of a
// token is the authority to revoke it, so no client authentication is asked
// for. The answer is 200 for any token value, known or not (no oracle); 503
// when the store cannot answer, so the caller knows nothing was revoked.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request) {
	tok, ok := h.tokenParam(w, r, RevokePath, "revoke")
	if !ok {
		return
	}
	if token.WellFormed(tok) {
		hash := token.Hash(tok)
		existed, err := h.store.Revoke(r.Context(), hash)
		if err != nil {
			h.metrics.StoreError("revoke")
			h.log.Error("token store failed during revocation", "error", err.Error())
			writeJSON(w, http.StatusServiceUnavailable, OAuthError{Error: "temporarily_unavailable",
				ErrorDescription: "the token store is unavailable, so the token was NOT revoked; retry in a few seconds"})
			return
		}
		if existed {
			ip := ""
			if a := h.clients.IP(r); a.IsValid() {
				ip = a.String()
			}
			h.audit.LogAttrs(r.Context(), slog.LevelInfo, "revoke", slog.String("event", "revoke"),
				slog.String("token_hash_prefix", hash[:12]), slog.String("client_ip", ip))
		}
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

// tokenParam reads the one form parameter "token" that introspection and
// revocation take, answering the RFC 6749 error itself when it is missing,
// repeated or the form is malformed; verb names the operation in the message.
func (h *Handler) tokenParam(w http.ResponseWriter, r *http.Request, path, verb string) (string, bool) {
	form, f := h.parseForm(w, r, path, "token")
	if f != nil {
		writeOAuthFailure(w, f)
		return "", false
	}
	if len(form["token"]) > 1 {
		writeJSON(w, http.StatusBadRequest, OAuthError{Error: "invalid_request", ErrorDescription: "parameter token is repeated; send it once"})
		return "", false
	}
	tok := form.Get("token")
	if tok == "" {
		writeJSON(w, http.StatusBadRequest, OAuthError{Error: "invalid_request", ErrorDescription: "token is missing; send the token to " + verb + " as the form parameter token"})
		return "", false
	}
	return tok, true
}
