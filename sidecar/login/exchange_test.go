package login

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func tokenEnv() map[string]string { return map[string]string{"OIDC_TOKEN": testJWT} }

func TestExchangeSuccessShapes(t *testing.T) {
	for name, handle := range map[string]func(int, http.ResponseWriter, *http.Request){
		"bare JSON string":   okJSONString,
		"bare token (text)":  okText,
		"plain text":         answer(200, "text/plain", issued+"\n"),
		"token field":        answer(200, "application/json", `{"token":"`+issued+`","expires_in":600}`),
		"access_token field": answer(200, "application/json", `{"access_token":"`+issued+`","token_type":"Bearer"}`),
		"buddy_token field":  answer(200, "application/json", `{"buddy_token":"`+issued+`"}`),
		"empty token first":  answer(200, "application/json", `{"token":"","access_token":"`+issued+`"}`),
		"201 created":        answer(201, "application/json", `"`+issued+`"`),
	} {
		t.Run(name, func(t *testing.T) {
			sc := newSidecar(t, handle)
			h := newRig(tokenEnv())
			if e := h.run(t, context.Background(), h.options(sc.URL+"/")); e != nil {
				t.Fatal(e)
			}
			if got := h.stdout.String(); got != issued+"\n" {
				t.Fatalf("stdout %q", got)
			}
			if sc.count() != 1 {
				t.Fatalf("%d requests", sc.count())
			}
		})
	}
}

func TestExchangeUnusableSuccess(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"empty":         {"", "the response body is empty (HTTP 200)"},
		"no field":      {`{"id":1}`, "the response has no token, access_token or buddy_token field (HTTP 200)"},
		"bad JSON":      {`{"token":`, "the response is malformed JSON (HTTP 200)"},
		"HTML":          {"<html><body>Welcome</body></html>", "the response is not a token"},
		"spaces":        {"hello world", "the response is not a token"},
		"string spaces": {`"a\nb"`, "the response is not a token"},
	} {
		t.Run(name, func(t *testing.T) {
			sc := newSidecar(t, answer(200, "", tc.body))
			h := newRig(tokenEnv())
			e := h.run(t, context.Background(), h.options(sc.URL))
			wantErr(t, e, StepExchange, "token exchange failed: "+tc.want, "--sidecar-url")
			if h.stdout.Len() != 0 {
				t.Fatalf("stdout %q", h.stdout.String())
			}
		})
	}
}

func TestExchangeErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantPrefix string
		wantAlso   string
	}{
		{"401 Buddy errors body", 401, nil, `{"errors":[{"message":"Wrong authentication data"}]}`,
			"token exchange failed: Wrong authentication data (HTTP 401): the sidecar refused this job's OIDC token", providerID},
		{"403 top-level message", 403, nil, `{"message":"IP 203.0.113.9 is not allowed"}`,
			"token exchange failed: IP 203.0.113.9 is not allowed (HTTP 403): provider", "ask the sidecar's operator"},
		{"400 OAuth shape", 400, nil, `{"error":"invalid_request","error_description":"provider_id is required"}`,
			"token exchange failed: provider_id is required (HTTP 400): check --provider-id", ""},
		{"404 no body", 404, nil, ``,
			"token exchange failed: Token exchange failed with status 404 (HTTP 404): check that --sidecar-url is the sidecar's base URL", ""},
		{"429 seconds", 429, map[string]string{"Retry-After": "30"}, `{"errors":[{"message":"Too many requests"}]}`,
			"token exchange failed: Too many requests (HTTP 429): the sidecar is rate-limiting exchanges and 429 is not retried: retry after 30s (Retry-After: 30)", ""},
		{"429 date", 429, map[string]string{"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, ``,
			"token exchange failed: Token exchange failed with status 429 (HTTP 429)", "retry after 2026-10-21T07:28:00Z (Retry-After)"},
		{"429 no header", 429, nil, ``, "token exchange failed: Token exchange failed with status 429 (HTTP 429)", "retry later"},
		{"418 other", 418, nil, `not json`, "token exchange failed: Token exchange failed with status 418 (HTTP 418): check --sidecar-url and --provider-id", ""},
		{"hostile message", 401, nil, `{"errors":[{"message":"bad\n::add-mask::x\r\nBUDDY_TOKEN=evil ` + testJWT + `"}]}`,
			"token exchange failed: bad ::add-mask::x BUDDY_TOKEN=evil [redacted] (HTTP 401)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := newSidecar(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			h := newRig(tokenEnv())
			e := h.run(t, context.Background(), h.options(sc.URL))
			wantErr(t, e, StepExchange, tc.wantAlso)
			if !strings.HasPrefix(e.Line, tc.wantPrefix) {
				t.Errorf("line %q\nwant prefix %q", e.Line, tc.wantPrefix)
			}
			if e.Status != tc.status {
				t.Errorf("status %d", e.Status)
			}
			if sc.count() != 1 || len(h.sleeps) != 0 {
				t.Errorf("a 4xx was retried: %d requests, sleeps %v", sc.count(), h.sleeps)
			}
			if h.stdout.Len() != 0 {
				t.Errorf("stdout %q", h.stdout.String())
			}
		})
	}
}

func TestRetries(t *testing.T) {
	t.Run("500 then 200", func(t *testing.T) {
		sc := newSidecar(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				answer(500, "application/json", `{"errors":[{"message":"boom"}]}`)(n, w, r)
				return
			}
			okJSONString(n, w, r)
		})
		h := newRig(tokenEnv())
		if e := h.run(t, context.Background(), h.options(sc.URL)); e != nil {
			t.Fatal(e)
		}
		if sc.count() != 2 || !reflect.DeepEqual(h.sleeps, []time.Duration{time.Second}) {
			t.Fatalf("%d requests, sleeps %v", sc.count(), h.sleeps)
		}
		if !strings.Contains(h.stderr.String(), "token exchange: attempt 1 of 3 failed (HTTP 500); retrying in 1s") {
			t.Fatalf("stderr %q", h.stderr.String())
		}
	})
	t.Run("5xx every time", func(t *testing.T) {
		sc := newSidecar(t, answer(503, "application/json", `{"errors":[{"message":"Service unavailable"}]}`))
		h := newRig(tokenEnv())
		e := h.run(t, context.Background(), h.options(sc.URL))
		wantErr(t, e, StepExchange, "token exchange failed: Service unavailable (HTTP 503): the sidecar failed 3 attempts: check its logs")
		if sc.count() != 3 || !reflect.DeepEqual(h.sleeps, []time.Duration{time.Second, 2 * time.Second}) {
			t.Fatalf("%d requests, sleeps %v", sc.count(), h.sleeps)
		}
	})
	t.Run("custom attempts and backoff", func(t *testing.T) {
		sc := newSidecar(t, answer(502, "", ""))
		h := newRig(tokenEnv())
		o := h.options(sc.URL)
		o.Retries, o.Backoff = 4, 10*time.Millisecond
		e := h.run(t, context.Background(), o)
		wantErr(t, e, StepExchange, "(HTTP 502)", "failed 4 attempts")
		want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
		if sc.count() != 4 || !reflect.DeepEqual(h.sleeps, want) {
			t.Fatalf("%d requests, sleeps %v", sc.count(), h.sleeps)
		}
	})
	t.Run("one attempt", func(t *testing.T) {
		sc := newSidecar(t, answer(500, "", ""))
		h := newRig(tokenEnv())
		o := h.options(sc.URL)
		o.Retries = 1
		e := h.run(t, context.Background(), o)
		wantErr(t, e, StepExchange, "failed 1 attempt:")
		if sc.count() != 1 {
			t.Fatal(sc.count())
		}
	})
	t.Run("network error then success", func(t *testing.T) {
		sc := newSidecar(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n < 3 {
				panic(http.ErrAbortHandler) // the connection closes without an answer
			}
			okJSONString(n, w, r)
		})
		h := newRig(tokenEnv())
		if e := h.run(t, context.Background(), h.options(sc.URL)); e != nil {
			t.Fatal(e)
		}
		if sc.count() != 3 || len(h.sleeps) != 2 {
			t.Fatalf("%d requests, sleeps %v", sc.count(), h.sleeps)
		}
		if h.stdout.String() != issued+"\n" {
			t.Fatal(h.stdout.String())
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		h := newRig(tokenEnv())
		e := h.run(t, context.Background(), h.options(url))
		wantErr(t, e, StepExchange, "token exchange failed: cannot reach "+url+"/user/oidc/tokens after 3 attempts: ", "connection refused", "check --sidecar-url and that the sidecar is reachable from this job")
		if e.Status != 0 || len(h.sleeps) != 2 {
			t.Fatalf("status %d sleeps %v", e.Status, h.sleeps)
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		sc := newSidecar(t, answer(500, "", ""))
		h := newRig(tokenEnv())
		ctx, cancel := context.WithCancel(context.Background())
		o := h.options(sc.URL)
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			return sleepContext(ctx, d)
		}
		e := h.run(t, ctx, o)
		wantErr(t, e, StepExchange, "stopped while exchanging the OIDC token: context canceled (the job was cancelled)")
		if sc.count() != 1 {
			t.Fatal(sc.count())
		}
	})
	t.Run("deadline", func(t *testing.T) {
		sc := newSidecar(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		h := newRig(tokenEnv())
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		e := h.run(t, ctx, h.options(sc.URL))
		wantErr(t, e, StepExchange, "stopped while exchanging the OIDC token: context deadline exceeded", "raise the step's timeout")
	})
	t.Run("default sleep honours ctx", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		if err := sleepContext(ctx, time.Hour); err != context.Canceled || time.Since(start) > time.Second {
			t.Fatal(err)
		}
		if err := sleepContext(context.Background(), time.Millisecond); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRedirectNotFollowed(t *testing.T) {
	var hits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer elsewhere.Close()
	sc := newSidecar(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+ExchangePath, http.StatusTemporaryRedirect)
	})
	h := newRig(tokenEnv())
	o := h.options(sc.URL)
	o.HTTPClient = &http.Client{} // follows redirects by default: Run must not
	e := h.run(t, context.Background(), o)
	wantErr(t, e, StepExchange, `token exchange failed: the sidecar redirected to "`+elsewhere.URL+ExchangePath+`" (HTTP 307): use the final address as --sidecar-url`)
	if hits.Load() != 0 {
		t.Fatal("the redirect was followed: the OIDC token went elsewhere")
	}
	if o.HTTPClient.CheckRedirect != nil {
		t.Fatal("Run changed the caller's client")
	}
}

func TestParseToken(t *testing.T) {
	for body, want := range map[string]string{
		`"` + issued + `"`:               issued,
		" " + issued + "\n":              issued,
		`{"token":"tok-1"}`:              "tok-1",
		`{"token":5,"access_token":"x"}`: "x",
		`{"buddy_token":" y "}`:          "y",
	} {
		if got, problem := parseToken([]byte(body)); got != want || problem != "" {
			t.Errorf("parseToken(%q) = %q, %q", body, got, problem)
		}
	}
	for _, body := range []string{"", `""`, `[1]`, "a'b", `{"token":"a b"}`, strings.Repeat("x", maxTokenLen+1)} {
		if got, problem := parseToken([]byte(body)); problem == "" {
			t.Errorf("parseToken(%q) = %q, want a problem", body, got)
		}
	}
}
