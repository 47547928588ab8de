package apierr

import (
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, 403, `Insufficient "scopes"`)
	if rec.Code != 403 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got, want := rec.Body.String(), `{"errors":[{"message":"Insufficient \"scopes\""}]}`+"\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
}

func TestUnauthorized(t *testing.T) {
	rec := httptest.NewRecorder()
	Unauthorized(rec, "invalid_token", "the token expired")
	if rec.Code != 401 {
		t.Fatal(rec.Code)
	}
	if got, want := rec.Header().Get("WWW-Authenticate"), `Bearer realm="oidc-sidecar", error="invalid_token", error_description="the token expired"`; got != want {
		t.Fatalf("WWW-Authenticate %q, want %q", got, want)
	}
	if got := rec.Body.String(); got != `{"errors":[{"message":"Wrong authentication data"}]}`+"\n" {
		t.Fatalf("body %q", got)
	}
}
