package login

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const runtimeBearer = "runtime-bearer-0123456789abcdef"

// fakeGitHub is the Actions runtime's ID token endpoint: it checks the
// bearer and the original query, records the audience, and answers with
// answerFn (default: {"value": testJWT}).
func fakeGitHub(t *testing.T, answerFn func(n int, w http.ResponseWriter)) (*httptest.Server, *atomic.Int32, *atomic.Value) {
	t.Helper()
	var n atomic.Int32
	var aud atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := int(n.Add(1))
		if r.Method != http.MethodGet || r.URL.Path != "/idtoken" {
			http.Error(w, "wrong route", http.StatusNotFound)
			return
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+runtimeBearer {
			http.Error(w, `{"message":"bad bearer"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "the runtime URL's own query was lost", http.StatusBadRequest)
			return
		}
		aud.Store(r.URL.Query().Get("audience"))
		if answerFn != nil {
			answerFn(c, w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"count": 1, "value": "` + testJWT + `"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n, &aud
}

func githubEnv(srv *httptest.Server) map[string]string {
	return map[string]string{
		"GITHUB_ACTIONS":                 "true",
		"ACTIONS_ID_TOKEN_REQUEST_URL":   srv.URL + "/idtoken?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": runtimeBearer,
	}
}

func TestGitHubSource(t *testing.T) {
	for _, tc := range []struct {
		name, source, audience, wantAud string
	}{
		{"auto, default audience", "auto", "", "Buddy"},
		{"explicit, custom audience", "github", "api://my aud/x&y=z", "api://my aud/x&y=z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gh, calls, aud := fakeGitHub(t, nil)
			sc := newSidecar(t, okJSONString)
			h := newRig(githubEnv(gh))
			o := h.options(sc.URL)
			o.Source, o.Audience = tc.source, tc.audience
			if e := h.run(t, context.Background(), o); e != nil {
				t.Fatal(e)
			}
			if calls.Load() != 1 || aud.Load() != tc.wantAud {
				t.Fatalf("GitHub called %d times with audience %q, want once with %q", calls.Load(), aud.Load(), tc.wantAud)
			}
			if b := sc.lastBody(); b["web_identity_token"] != testJWT || b["provider_id"] != providerID {
				t.Fatalf("exchange body %v", b)
			}
			if got := h.stdout.String(); got != issued+"\n" {
				t.Fatalf("stdout %q", got)
			}
		})
	}
}

func TestGitHubAudienceEncoding(t *testing.T) {
	var raw string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw = r.URL.RawQuery
		_, _ = w.Write([]byte(`{"value":"` + testJWT + `"}`))
	}))
	defer srv.Close()
	sc := newSidecar(t, okJSONString)
	h := newRig(map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": srv.URL + "/x?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t"})
	o := h.options(sc.URL)
	o.Source, o.Audience = "github", "a b&c"
	if e := h.run(t, context.Background(), o); e != nil {
		t.Fatal(e)
	}
	if raw != "api-version=2.0&audience=a%20b%26c" {
		t.Fatalf("query %q", raw)
	}
}

func TestGitHubSourceErrors(t *testing.T) {
	t.Run("no permission", func(t *testing.T) {
		sc := newSidecar(t, okJSONString)
		h := newRig(map[string]string{"GITHUB_ACTIONS": "true"})
		e := h.run(t, context.Background(), withSource(h.options(sc.URL), "auto"))
		wantErr(t, e, StepOIDCToken)
		if e.Line != `ACTIONS_ID_TOKEN_REQUEST_URL is not set: the job needs "permissions: id-token: write"` {
			t.Fatalf("line %q", e.Line)
		}
		if sc.count() != 0 {
			t.Fatal("the sidecar was called")
		}
	})
	t.Run("no request token", func(t *testing.T) {
		h := newRig(map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": "https://example.invalid/x?a=b"})
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "github"))
		wantErr(t, e, StepOIDCToken, `ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set: the job needs "permissions: id-token: write"`)
	})
	t.Run("refused, not retried", func(t *testing.T) {
		gh, calls, _ := fakeGitHub(t, func(_ int, w http.ResponseWriter) {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"Can't issue ID_TOKEN for audience"}`))
		})
		h := newRig(githubEnv(gh))
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "auto"))
		wantErr(t, e, StepOIDCToken, "GitHub refused the OIDC token request (HTTP 403: Can't issue ID_TOKEN for audience)", `--audience "Buddy"`)
		if calls.Load() != 1 {
			t.Fatalf("%d calls", calls.Load())
		}
	})
	t.Run("5xx retried", func(t *testing.T) {
		gh, calls, _ := fakeGitHub(t, func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			_, _ = w.Write([]byte(`{"value":"` + testJWT + `"}`))
		})
		sc := newSidecar(t, okJSONString)
		h := newRig(githubEnv(gh))
		if e := h.run(t, context.Background(), withSource(h.options(sc.URL), "github")); e != nil {
			t.Fatal(e)
		}
		if calls.Load() != 2 {
			t.Fatalf("%d calls", calls.Load())
		}
	})
	t.Run("5xx every time", func(t *testing.T) {
		gh, calls, _ := fakeGitHub(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
		h := newRig(githubEnv(gh))
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "github"))
		wantErr(t, e, StepOIDCToken, "GitHub's OIDC token endpoint failed with HTTP 503 after 3 attempts")
		if calls.Load() != 3 || e.Status != 503 {
			t.Fatalf("%d calls, status %d", calls.Load(), e.Status)
		}
	})
	t.Run("network errors every time", func(t *testing.T) {
		gh, calls, _ := fakeGitHub(t, func(int, http.ResponseWriter) { panic(http.ErrAbortHandler) })
		h := newRig(githubEnv(gh))
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "github"))
		wantErr(t, e, StepOIDCToken, "cannot get the job's OIDC token from GitHub after 3 attempts")
		if calls.Load() != 3 {
			t.Fatalf("%d calls", calls.Load())
		}
	})
	t.Run("no value", func(t *testing.T) {
		gh, _, _ := fakeGitHub(t, func(_ int, w http.ResponseWriter) { _, _ = w.Write([]byte(`{"count":0}`)) })
		h := newRig(githubEnv(gh))
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "github"))
		wantErr(t, e, StepOIDCToken, `GitHub's OIDC token response has no "value" (HTTP 200)`)
	})
	t.Run("value is not a JWT", func(t *testing.T) {
		gh, _, _ := fakeGitHub(t, func(_ int, w http.ResponseWriter) { _, _ = w.Write([]byte(`{"value":"not a jwt"}`)) })
		h := newRig(githubEnv(gh))
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "github"))
		wantErr(t, e, StepOIDCToken, "the OIDC token from GitHub Actions is not a JWT")
	})
}

func withSource(o Options, src string) Options {
	o.Source = src
	return o
}

func TestCircleCISource(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		source   string
		wantNote string
	}{
		{"v2 preferred", map[string]string{"CIRCLECI": "true", "CIRCLE_OIDC_TOKEN_V2": " " + testJWT + "\n", "CIRCLE_OIDC_TOKEN": "x.y.z"}, "auto", ""},
		{"v1 fallback", map[string]string{"CIRCLECI": "true", "CIRCLE_OIDC_TOKEN": testJWT}, "auto", "CIRCLE_OIDC_TOKEN_V2 is not set; using CIRCLE_OIDC_TOKEN"},
		{"explicit without CIRCLECI", map[string]string{"CIRCLE_OIDC_TOKEN_V2": testJWT}, "circleci", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := newSidecar(t, okJSONString)
			h := newRig(tc.env)
			if e := h.run(t, context.Background(), withSource(h.options(sc.URL), tc.source)); e != nil {
				t.Fatal(e)
			}
			if got := sc.lastBody()["web_identity_token"]; got != testJWT {
				t.Fatalf("sent %q", got)
			}
			if tc.wantNote != "" && !strings.Contains(h.stderr.String(), tc.wantNote) {
				t.Fatalf("stderr %q lacks %q", h.stderr.String(), tc.wantNote)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		h := newRig(map[string]string{"CIRCLECI": "true"})
		e := h.run(t, context.Background(), withSource(h.options("http://127.0.0.1:1"), "auto"))
		wantErr(t, e, StepOIDCToken, "CIRCLE_OIDC_TOKEN_V2 and CIRCLE_OIDC_TOKEN are not set", "context")
	})
}

func TestEnvAndFileSources(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("\n  "+testJWT+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxTokenBytes+10), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MY_TOKEN": "\t" + testJWT + " ", "BLANK": "  ", "NOT_JWT": "hello"}

	for _, src := range []string{"env:MY_TOKEN", "file:" + good} {
		t.Run(src, func(t *testing.T) {
			sc := newSidecar(t, okJSONString)
			h := newRig(env)
			if e := h.run(t, context.Background(), withSource(h.options(sc.URL), src)); e != nil {
				t.Fatal(e)
			}
			if got := sc.lastBody()["web_identity_token"]; got != testJWT {
				t.Fatalf("sent %q", got)
			}
		})
	}
	for _, tc := range []struct{ source, want string }{
		{"env:UNSET", "environment variable UNSET is empty or not set"},
		{"env:BLANK", "environment variable BLANK is empty or not set"},
		{"env:NOT_JWT", "the OIDC token from environment variable NOT_JWT is not a JWT"},
		{"file:" + filepath.Join(dir, "nope"), "cannot read the OIDC token file " + filepath.Join(dir, "nope") + ": no such file or directory: check --source file:PATH"},
		{"file:" + empty, "the OIDC token file " + empty + " is empty"},
		{"file:" + big, "is larger than 64 KiB"},
		{"auto", "no OIDC token found: --source auto looks for GitHub Actions (GITHUB_ACTIONS=true) and CircleCI (CIRCLECI=true)"},
	} {
		t.Run(tc.source, func(t *testing.T) {
			sc := newSidecar(t, okJSONString)
			h := newRig(env)
			e := h.run(t, context.Background(), withSource(h.options(sc.URL), tc.source))
			wantErr(t, e, StepOIDCToken, tc.want)
			if sc.count() != 0 {
				t.Fatal("the sidecar was called without a token")
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for s, want := range map[string]bool{
		testJWT:     true,
		"a.b.":      true,
		"a.b.c.d.e": false,
		"a..c":      false,
		"a.b":       false,
		"a b.c.d":   false,
		"":          false,
	} {
		if got := looksLikeJWT(s); got != want {
			t.Errorf("looksLikeJWT(%q) = %v", s, got)
		}
	}
}
