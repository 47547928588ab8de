package sameorigin

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		origin, referer string
		refused         bool
	}{
		{"", "", false},
		{"https://admin.example:8081", "", false},
		{"", "https://admin.example:8081/page", false},
		{"https://evil.example", "", true},
		{"null", "", true},
		{"", "https://evil.example/page", true},
		{"https://admin.example", "", true}, // another port is another origin
		{"https://evil.example", "https://admin.example:8081/", true},
		{"://bad", "", true},
	} {
		r := httptest.NewRequest("POST", "https://admin.example:8081/x", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.referer != "" {
			r.Header.Set("Referer", c.referer)
		}
		msg := Check(r)
		if (msg != "") != c.refused {
			t.Errorf("Origin %q Referer %q: %q, want refused=%v", c.origin, c.referer, msg, c.refused)
		}
		if msg != "" && !strings.HasPrefix(msg, "cross-origin request refused") {
			t.Errorf("message %q", msg)
		}
	}
	for m, want := range map[string]bool{"GET": false, "HEAD": false, "OPTIONS": false, "POST": true, "PUT": true, "DELETE": true, "PATCH": true} {
		if Unsafe(m) != want {
			t.Errorf("Unsafe(%s) = %v", m, !want)
		}
	}
}
