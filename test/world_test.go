package test

// The world a sidecar runs in: three fake OIDC issuers (GitHub-shaped RSA,
// CircleCI-shaped RSA on /org/<id>, a generic ECDSA one), the fake Buddy API
// behind httptest, a real Redis, and the providers.yaml that ties them
// together.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/fakeapi"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

// Provider ids. The providers are all `type: other` (github_actions and
// circleci fix their public issuers; their validation is unit-tested).
const (
	ghID  = "550e8400-e29b-41d4-a716-446655440000" // GitHub-shaped
	ccID  = "9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f" // CircleCI-shaped
	genID = "2a7d3f4e-8b9c-4d1e-a2f3-5b6c7d8e9f01" // generic, ECDSA issuer
	// A configured-looking id that no provider has.
	unknownID = "0d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

	ghAudience  = "Buddy"
	genAudience = "https://buddy.example.com"
	ccOrg       = "4f5e9a52-7c1d-4c8e-9a3b-2b6f0d1e8c77"
	ccProject   = "0b8a6f3e-1d2c-4e5f-8a9b-7c6d5e4f3a21"
	workspace   = "my-company"
	otherWS     = "other-company"
	ghRepo      = "octo-org/octo-repo"
	ghRef       = "refs/heads/main"

	ghScopes  = "WORKSPACE EXECUTION_RUN"
	ccScopes  = "EXECUTION_INFO"
	genScopes = "WORKSPACE VARIABLE_INFO"

	ghCondition = `repository_owner is "octo-org"`
)

type world struct {
	t         testing.TB
	dir       string
	gh        *oidctest.Issuer
	cc        *oidctest.Issuer
	gen       *oidctest.Issuer
	api       *fakeapi.API
	apiSrv    *httptest.Server
	redis     *redistest.Server // nil without Redis
	rdb       *redis.Client
	providers string // path of providers.yaml
	ccSeq     atomic.Int64
}

type worldOpts struct {
	noRedis bool
	// extraProviders is appended, verbatim, to the providers list.
	extraProviders string
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir()}
	if !o.noRedis {
		w.redis = redistest.Start(t)
		w.rdb = w.redis.Client()
	}
	w.gh = newIssuer(t, oidctest.WithRSA())
	w.cc = newIssuer(t, oidctest.WithRSA(), oidctest.WithPath("/org/"+ccOrg))
	w.gen = newIssuer(t, oidctest.WithECDSA())
	w.api = fakeapi.New(upstreamToken)
	w.apiSrv = httptest.NewServer(w.api)
	t.Cleanup(w.apiSrv.Close)
	w.providers = filepath.Join(w.dir, "providers.yaml")
	writeFile(t, w.providers, w.providersYAML(o.extraProviders))
	return w
}

// newIssuer and sign are oidctest's test helpers under the short names
// this package's tests use.
var (
	newIssuer = oidctest.Start
	sign      = oidctest.MustSign
)

func (w *world) providersYAML(extra string) string {
	return fmt.Sprintf(`providers:
  - id: %s
    name: GHA-like - octo-repo:deploy
    type: other
    issuer: %s
    audience: %s
    lifetime: 10m
    trust_conditions: |
      %s
      and repository is "%s"
      and ref is "%s"
    workspaces: [%s]
    scopes: [WORKSPACE, EXECUTION_RUN]
  - id: %s
    name: CircleCI-like - octo-repo
    type: other
    issuer: %s
    audience: %s
    lifetime: 30m
    trust_conditions: >-
      oidc.circleci.com/project-id is "%s"
      and oidc.circleci.com/vcs-ref is "refs/heads/main"
      and oidc.circleci.com/ssh-rerun is false
    scopes: [EXECUTION_INFO]
  - id: %s
    name: Generic - infra
    type: other
    issuer: %s
    audience: %s
    lifetime: 1h
    trust_conditions: 'namespace_path is "infra" and ref_protected is "true"'
    workspaces: [%s]
    scopes: [WORKSPACE, VARIABLE_INFO]
%s`, ghID, w.gh.URL(), ghAudience, ghCondition, ghRepo, ghRef, workspace,
		ccID, w.cc.URL(), ccOrg, ccProject,
		genID, w.gen.URL(), genAudience, workspace, extra)
}

// config is the base sidecar configuration for this world (files source).
func (w *world) config() map[string]any {
	cfg := map[string]any{
		"upstream":        map[string]any{"url": w.apiSrv.URL, "token_env": "BUDDY_TOKEN", "timeout": "10s"},
		"providers":       w.providers,
		"admin_token_env": "OIDC_SIDECAR_ADMIN_TOKEN",
		"log_level":       "info",
		// The suite exchanges many tokens from 127.0.0.1; the limits are
		// not under test except where a test sets them.
		"rate_limits": map[string]any{"per_ip": 0, "per_provider": 0, "window": "1m"},
		"timeouts":    map[string]any{"shutdown": "10s"},
	}
	if w.redis != nil {
		cfg["redis"] = map[string]any{"url": w.redis.URL()}
	}
	return cfg
}

// ---------------------------------------------------------------------------
// Tokens.

// ghClaims returns the claims of a GitHub Actions-like push to main of
// octo-org/octo-repo.
func (w *world) ghClaims() map[string]any {
	return oidctest.GitHubClaims(w.gh.URL(), ghAudience, ghRepo, ghRef, time.Now())
}

// ccClaims: CircleCI tokens have no jti and RS256 signatures are
// deterministic, so two tokens with the same claims signed in the same
// second are byte-identical (and the second exchange is a replay). Each
// call therefore moves iat one more second back.
func (w *world) ccClaims() map[string]any {
	k := w.ccSeq.Add(1)
	c := oidctest.CircleCIClaims(w.cc.URL(), ccOrg, ccProject, time.Now())
	c["iat"] = c["iat"].(int64) - k
	return c
}

func (w *world) genClaims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss": w.gen.URL(), "aud": genAudience, "sub": "project_path:infra/deploy:ref_type:branch:ref:main",
		"namespace_path": "infra", "project_path": "infra/deploy", "ref": "main", "ref_protected": "true",
		"iat": now - 5, "nbf": now - 5, "exp": now + 300, "jti": oidctest.UUID(),
	}
}

func signRaw(t testing.TB, iss *oidctest.Issuer, payload string, opts ...oidctest.SignOption) string {
	t.Helper()
	return oidctest.MustSignRaw(t, iss, []byte(payload), opts...)
}

// ghToken signs a GitHub-shaped token after mutate edits its claims.
func (w *world) ghToken(t testing.TB, mutate func(map[string]any)) string {
	t.Helper()
	c := w.ghClaims()
	if mutate != nil {
		mutate(c)
	}
	return sign(t, w.gh, c)
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// handSign builds a compact JWS by hand: header and payload exactly as
// given, signed with key (RS256 or ES256), so that tests control every
// header byte.
func handSign(t testing.TB, header map[string]any, payload []byte, key crypto.Signer) string {
	t.Helper()
	alg := "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	return oidctest.MustHandSign(t, alg, key, mustJSON(header), payload)
}

// ---------------------------------------------------------------------------
// Redis assertions.

// keys returns every key under the prefix except rate-limit counters and
// the console's recent-decision streams, sorted (rate limits are counted
// before any verification, and every exchange decision is recorded for
// the console, both by design).
func (w *world) keys(t testing.TB) []string {
	t.Helper()
	var out []string
	iter := w.rdb.Scan(ctxT(t), 0, keyPrefix+"*", 1000).Iterator()
	for iter.Next(ctxT(t)) {
		if k := iter.Val(); !strings.HasPrefix(k, keyPrefix+"rl:") && !strings.HasPrefix(k, keyPrefix+"decisions:") {
			out = append(out, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	sort.Strings(out)
	return out
}

func (w *world) tokKeys(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, k := range w.keys(t) {
		if strings.HasPrefix(k, keyPrefix+"tok:") {
			out = append(out, k)
		}
	}
	return out
}

// expectNoNewKeys fails if any token or replay key appeared since before.
func (w *world) expectNoNewKeys(t testing.TB, before []string) {
	t.Helper()
	if added := w.newKeys(t, before); len(added) > 0 {
		t.Fatalf("Redis gained %d key(s), want none: %v", len(added), added)
	}
}

// newKeys returns the keys that appeared since before.
func (w *world) newKeys(t testing.TB, before []string) []string {
	t.Helper()
	old := map[string]bool{}
	for _, k := range before {
		old[k] = true
	}
	var added []string
	for _, k := range w.keys(t) {
		if !old[k] {
			added = append(added, k)
		}
	}
	return added
}

// upstreamCount is how many requests the fake API has received.
func (w *world) upstreamCount() int { return len(w.api.Requests()) }

// expectUpstreamUntouched fails if the fake API received anything since n.
func (w *world) expectUpstreamUntouched(t testing.TB, n int) {
	t.Helper()
	if rs := w.api.Requests(); len(rs) != n {
		var got []string
		for _, r := range rs[n:] {
			got = append(got, r.Method+" "+r.Path)
		}
		t.Fatalf("the upstream received %d request(s), want none: %v", len(rs)-n, got)
	}
}

// runCLI runs the built binary with args and the given environment (nothing
// inherited but PATH and HOME).
func runCLI(t testing.TB, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLIIn(t, "", env, args...)
}

// runCLIIn is runCLI in the working directory dir ("" for the test's).
func runCLIIn(t testing.TB, dir string, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sidecarBin, args...)
	cmd.Dir = dir
	full := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		full = append(full, k+"="+v)
	}
	cmd.Env = full
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	setProcAttr(cmd)
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("%s %v: %v", sidecarBin, args, err)
		}
	}
	return out.String(), errb.String(), code
}

// upstreamSawOnly checks that every request the upstream received since n
// carried exactly the upstream credential and nothing of the client's
// sidecar token (headers, query, body).
func (w *world) upstreamSawOnly(t testing.TB, n int, clientToken string) []fakeapi.Received {
	t.Helper()
	rs := w.api.Requests()[n:]
	for _, r := range rs {
		if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+upstreamToken {
			t.Errorf("upstream %s %s: Authorization %q, want exactly the upstream credential", r.Method, r.Path, got)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, "ocs_") || (clientToken != "" && strings.Contains(v, clientToken)) || strings.Contains(v, adminToken) {
					t.Errorf("upstream %s %s: header %s carries a sidecar or admin token", r.Method, r.Path, k)
				}
			}
		}
		if strings.Contains(r.RawQuery, "ocs_") || strings.Contains(r.Path, "ocs_") || strings.Contains(string(r.Body), "ocs_") {
			t.Errorf("upstream %s %s?%s: a sidecar token reached the upstream in the URL or body", r.Method, r.Path, r.RawQuery)
		}
	}
	return rs
}

// statusOf is for error messages.
func statusOf(code int) string { return fmt.Sprintf("%d %s", code, http.StatusText(code)) }

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
