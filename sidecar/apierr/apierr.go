// Package apierr writes errors in Buddy's shape,
// {"errors":[{"message":"..."}]}, which Buddy's own clients read
// (errors[0].message).
package apierr

import (
	"encoding/json"
	"net/http"
)

// Body is Buddy's error body.
type Body struct {
	Errors []Message `json:"errors"`
}

// Message is one error.
type Message struct {
	Message string `json:"message"`
}

// Write sends status with message in Buddy's error shape.
func Write(w http.ResponseWriter, status int, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Body{Errors: []Message{{Message: message}}})
}

// Challenge sets the WWW-Authenticate challenge of a 401 (RFC 6750):
// error="invalid_token" when the request presented a token.
func Challenge(h http.Header, tokenSent bool) {
	if tokenSent {
		h.Set("WWW-Authenticate", `Bearer realm="oidc-sidecar", error="invalid_token"`)
		return
	}
	h.Set("WWW-Authenticate", `Bearer realm="oidc-sidecar"`)
}
