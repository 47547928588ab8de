package test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestLogin runs the built `oidc-sidecar login` against a running sidecar:
// with --source env:NAME, and in GitHub Actions mode against a fake
// ACTIONS_ID_TOKEN_REQUEST_URL; the tokens it gets work through the proxy.
func TestLogin(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), nil)
	projects := "/workspaces/" + workspace + "/projects"

	t.Run("env source, json output", func(t *testing.T) {
		jwt := w.ghToken(t, nil)
		out, errOut, code := runCLI(t, map[string]string{"MY_JWT": jwt},
			"login", "--sidecar-url", s.URL, "--provider-id", ghID, "--source", "env:MY_JWT", "--format", "json")
		if code != 0 {
			t.Fatalf("login: status %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		var got struct {
			Token       string `json:"token"`
			APIEndpoint string `json:"api_endpoint"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("stdout is not the JSON object: %v: %q", err, out)
		}
		if !strings.HasPrefix(got.Token, "ocs_") || got.APIEndpoint != s.URL {
			t.Fatalf("login printed %q", out)
		}
		if strings.Contains(errOut, got.Token) || strings.Contains(errOut, jwt) || strings.Contains(out, jwt) {
			t.Errorf("login printed a secret on stderr or the JWT: stderr %q", errOut)
		}
		n := w.upstreamCount()
		expectStatus(t, s.call(t, http.MethodGet, projects, got.Token), http.StatusOK)
		w.upstreamSawOnly(t, n, got.Token)
		// The OIDC token was spent by login.
		expectError(t, s.exchangeBuddy(t, ghID, jwt), http.StatusUnauthorized, "already exchanged")
	})

	// A fake GitHub Actions OIDC token endpoint, as the runtime serves it.
	const requestToken = "gha-runtime-request-token-5f2c"
	var ghHits atomic.Int64
	var lastJWT atomic.Value
	repo := ghRepo
	gha := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ghHits.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+requestToken {
			http.Error(rw, `{"message":"bad credentials"}`, http.StatusUnauthorized)
			return
		}
		aud := r.URL.Query().Get("audience")
		c := w.ghClaimsFor(repo)
		c["aud"] = aud
		jwt, err := w.gh.Sign(c)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		lastJWT.Store(jwt)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write(mustJSON(map[string]string{"value": jwt}))
	}))
	t.Cleanup(gha.Close)
	ghaEnv := func(t *testing.T) (map[string]string, string) {
		envFile := filepath.Join(t.TempDir(), "github_env")
		writeFile(t, envFile, "")
		return map[string]string{
			"GITHUB_ACTIONS":                 "true",
			"GITHUB_ENV":                     envFile,
			"ACTIONS_ID_TOKEN_REQUEST_URL":   gha.URL + "/_apis/distributedtask/token?api-version=2.0",
			"ACTIONS_ID_TOKEN_REQUEST_TOKEN": requestToken,
		}, envFile
	}

	t.Run("GitHub Actions mode", func(t *testing.T) {
		env, envFile := ghaEnv(t)
		hits := ghHits.Load()
		out, errOut, code := runCLI(t, env, "login", "--sidecar-url", s.URL, "--provider-id", ghID)
		if code != 0 {
			t.Fatalf("login: status %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if ghHits.Load() != hits+1 {
			t.Errorf("the runtime token endpoint got %d requests, want 1", ghHits.Load()-hits)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		tok, ok := strings.CutPrefix(lines[0], "::add-mask::")
		if !ok || !strings.HasPrefix(tok, "ocs_") {
			t.Fatalf("stdout does not start with ::add-mask::<token>: %q", out)
		}
		if strings.Count(out, tok) != 1 {
			t.Errorf("stdout shows the token outside the mask command: %q", out)
		}
		jwt, _ := lastJWT.Load().(string)
		for _, secret := range []string{jwt, requestToken} {
			if strings.Contains(out, secret) || strings.Contains(errOut, secret) {
				t.Errorf("login printed the OIDC token or the runtime request token")
			}
		}
		if strings.Contains(errOut, tok) {
			t.Error("login printed the token on stderr")
		}
		vars := parseGitHubEnv(t, envFile)
		if vars["BUDDY_TOKEN"] != tok || vars["BUDDY_API_ENDPOINT"] != s.URL || len(vars) != 2 {
			t.Fatalf("GITHUB_ENV holds %v, want BUDDY_TOKEN=<the masked token> and BUDDY_API_ENDPOINT=%s", redactVars(vars), s.URL)
		}
		n := w.upstreamCount()
		expectStatus(t, s.call(t, http.MethodGet, projects, vars["BUDDY_TOKEN"]), http.StatusOK)
		w.upstreamSawOnly(t, n, tok)
	})

	t.Run("GitHub Actions mode, denied by the trust conditions", func(t *testing.T) {
		repo = "evil-org/octo-repo"
		defer func() { repo = ghRepo }()
		env, envFile := ghaEnv(t)
		before := w.keys(t)
		out, errOut, code := runCLI(t, env, "login", "--sidecar-url", s.URL, "--provider-id", ghID)
		if code != 1 {
			t.Fatalf("login: status %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if out != "" {
			t.Errorf("stdout %q, want nothing", out)
		}
		if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "oidc-sidecar: ") ||
			!strings.Contains(lines[0], `repository_owner is \"octo-org\"`) && !strings.Contains(lines[0], `repository_owner is "octo-org"`) {
			t.Errorf("stderr %q, want one line naming the failed condition", errOut)
		}
		if b, _ := os.ReadFile(envFile); len(b) != 0 {
			t.Errorf("GITHUB_ENV was written after a denial: %d bytes", len(b))
		}
		w.expectNoNewKeys(t, before)
	})
}

// parseGitHubEnv reads NAME<<DELIM ... DELIM entries (and NAME=value lines).
func parseGitHubEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok {
			var val []string
			for i++; i < len(lines) && lines[i] != delim; i++ {
				val = append(val, lines[i])
			}
			if i == len(lines) {
				t.Fatalf("GITHUB_ENV: %s has no closing delimiter", name)
			}
			if !strings.HasPrefix(delim, "ghadelim_") {
				t.Errorf("GITHUB_ENV: delimiter %q is not a random ghadelim_", delim)
			}
			vars[name] = strings.Join(val, "\n")
			continue
		}
		name, val, _ := strings.Cut(line, "=")
		vars[name] = val
	}
	return vars
}

func redactVars(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(v, "ocs_") {
			v = v[:8] + "…"
		}
		out[k] = v
	}
	return out
}
