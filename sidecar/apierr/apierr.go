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

// Unauthorized sends Buddy's 401 with a WWW-Authenticate challenge
// (RFC 6750): err is "" for a missing token or "invalid_token".
func Unauthorized(w http.ResponseWriter, err, description string) {
	challenge := `Bearer realm="oidc-sidecar"`
	if err != "" {
		challenge += `, error="` + err + `"`
		if description != "" {
			challenge += `, error_description="` + description + `"`
		}
	}
	w.Header().Set("WWW-Authenticate", challenge)
	Write(w, http.StatusUnauthorized, "Wrong authentication data")
}
