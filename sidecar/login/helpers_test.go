package login

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// testJWT has a JWT's shape; nothing here verifies signatures.
	testJWT    = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJyZXBvOm9jdG8tb3JnL29jdG8tcmVwbyJ9.c2lnbmF0dXJlLWJ5dGVz"
	providerID = "550e8400-e29b-41d4-a716-446655440000"
	issued     = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
)

// fakeSidecar is an httptest server standing in for the sidecar's
// exchange endpoint; handle decides each answer (n counts from 1).
type fakeSidecar struct {
	*httptest.Server
	mu     sync.Mutex
	n      int
	bodies []map[string]string
	handle func(n int, w http.ResponseWriter, r *http.Request)
}

func newSidecar(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *fakeSidecar {
	t.Helper()
	s := &fakeSidecar{handle: handle}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.n++
		n := s.n
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != ExchangePath {
			http.Error(w, "wrong route "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			http.Error(w, "content type "+ct, http.StatusTeapot)
			return
		}
		if r.Header.Get("Authorization") != "" {
			http.Error(w, "the exchange must not carry credentials", http.StatusTeapot)
			return
		}
		s.handle(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *fakeSidecar) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *fakeSidecar) lastBody() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bodies) == 0 {
		return nil
	}
	return s.bodies[len(s.bodies)-1]
}

// answer returns a handler that always answers status with body.
func answer(status int, contentType, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// okJSONString is the success answer in Buddy's API reference, and the
// sidecar's with buddy_response: json_string.
var okJSONString = answer(200, "application/json", `"`+issued+`"`)

// okText is the sidecar's default success answer (and Buddy's service's):
// the bare token.
var okText = answer(200, "text/plain; charset=utf-8", issued)

// rig runs Run with an injected environment, recorded sleeps and
// captured output, and checks what every run must satisfy.
type rig struct {
	env    map[string]string
	sleeps []time.Duration
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func newRig(env map[string]string) *rig {
	if env == nil {
		env = map[string]string{}
	}
	return &rig{env: env}
}

// options returns Options for sidecarURL with the rig's environment,
// output and sleep, and a client without keep-alives (so that a closed
// connection fails exactly one attempt).
func (h *rig) options(sidecarURL string) Options {
	return Options{
		SidecarURL: sidecarURL,
		ProviderID: providerID,
		Source:     "env:OIDC_TOKEN",
		Export:     "none",
		Getenv:     func(k string) string { return h.env[k] },
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second},
		Stdout:     &h.stdout,
		Stderr:     &h.stderr,
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.sleeps = append(h.sleeps, d)
			return ctx.Err()
		},
	}
}

// run calls Run and checks the invariants: a failure is an *Error whose
// line is one line, and no secret reaches Stderr or the error.
func (h *rig) run(t *testing.T, ctx context.Context, o Options) *Error {
	t.Helper()
	err := Run(ctx, o)
	secrets := []string{testJWT, issued, h.env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]}
	for _, s := range secrets {
		if s != "" && strings.Contains(h.stderr.String(), s) {
			t.Errorf("stderr contains a secret %q: %q", s, h.stderr.String())
		}
	}
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Run returned %T, want *Error: %v", err, err)
	}
	line := e.Error()
	if line == "" || strings.ContainsAny(line, "\r\n") {
		t.Errorf("error is not one line: %q", line)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(line, s) {
			t.Errorf("error contains a secret %q: %q", s, line)
		}
	}
	return e
}

func wantErr(t *testing.T, e *Error, step Step, substrings ...string) {
	t.Helper()
	if e == nil {
		t.Fatalf("Run succeeded, want a %s error containing %q", step, substrings)
	}
	if e.Step != step {
		t.Errorf("step %q, want %q (%s)", e.Step, step, e.Line)
	}
	for _, s := range substrings {
		if !strings.Contains(e.Line, s) {
			t.Errorf("error %q does not contain %q", e.Line, s)
		}
	}
}
