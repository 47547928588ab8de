package apierr

import (
	"net/http"
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

func TestChallenge(t *testing.T) {
	for sent, want := range map[bool]string{
		false: `Bearer realm="oidc-sidecar"`,
		true:  `Bearer realm="oidc-sidecar", error="invalid_token"`,
	} {
		h := http.Header{}
		Challenge(h, sent)
		if got := h.Get("WWW-Authenticate"); got != want {
			t.Errorf("token sent %v: WWW-Authenticate %q, want %q", sent, got, want)
		}
	}
}
