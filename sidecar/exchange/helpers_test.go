package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Provider ids of the test deployment.
const (
	idDeploy   = "550e8400-e29b-41d4-a716-446655440000" // github_actions, conditions on owner and ref
	idGeneric  = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f" // github_actions, denial_detail generic
	idOffice   = "7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d" // github_actions, IP restricted
	idReuse    = "8b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e" // github_actions, allow_token_reuse
	idCircle   = "3f2a9c1e-7b6d-4e5f-9a8b-1c2d3e4f5a6b" // circleci
	idOther    = "0b7e6a52-31f4-4c0e-9d55-2f8a7d1c9e40" // other (ES384 issuer on loopback)
	idMaxAge   = "1c8f7b63-42a5-4d1f-8e66-3a9b8e2d0f51" // github_actions, max_token_age 1m
	idLong     = "2d9e8c74-53b6-4e2a-9f77-4bac9f3e1a62" // github_actions, max_token_lifetime 48h
	idUnknown  = "deadbeef-0000-4000-8000-000000000000" // not configured
	circleOrg  = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
	circleProj = "c0ffee00-1234-4abc-9def-001122334455"
	adminToken = "admin-secret-0123456789"
)

const providersYAML = `
providers:
  - id: ` + idDeploy + `
    name: GHA - deploy
    type: github_actions
    lifetime: 1h30m
    trust_conditions: 'repository_owner is "octo-org" and ref is "refs/heads/main"'
    workspaces: [my-company]
    scopes: [WORKSPACE, EXECUTION_RUN]
  - id: ` + idGeneric + `
    name: GHA - release
    type: github_actions
    trust_conditions: 'repository_owner is "octo-org" and ref matches "refs/tags/v*"'
    scopes: [REPOSITORY_READ, EXECUTION_MANAGE]
    denial_detail: generic
  - id: ` + idOffice + `
    name: GHA - office
    type: github_actions
    trust_conditions: 'repository_owner is "octo-org"'
    ip_restrictions: [203.0.113.0/24, "2001:db8::/32"]
    scopes: [WORKSPACE]
  - id: ` + idReuse + `
    name: GHA - reuse
    type: github_actions
    trust_conditions: 'repository_owner is "octo-org"'
    allow_token_reuse: true
    scopes: [WORKSPACE]
  - id: ` + idMaxAge + `
    name: GHA - fresh only
    type: github_actions
    trust_conditions: 'repository_owner is "octo-org"'
    max_token_age: 1m
    scopes: [WORKSPACE]
  - id: ` + idLong + `
    name: GHA - long-lived tokens
    type: github_actions
    trust_conditions: 'repository_owner is "octo-org"'
    max_token_lifetime: 48h
    scopes: [WORKSPACE]
  - id: ` + idCircle + `
    name: CircleCI - octo
    type: circleci
    organization_id: ` + circleOrg + `
    trust_conditions: oidc.circleci.com/project-id is "` + circleProj + `"
    lifetime: 30m
    scopes: [EXECUTION_INFO]
  - id: ` + idOther + `
    name: local issuer
    type: other
    issuer: %s
    audience: sidecar-test
    trust_conditions: 'sub is "deployer"'
    scopes: [USER_INFO]
`

// quietRedis drops go-redis's own log lines ("connection refused" while
// the fault tests have Redis stopped); the store's errors are asserted.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}

// world is what all tests share: the fake issuers (their keys take a while
// to generate), the providers and the compiled policy snapshot.
type world struct {
	gh, circle, other *oidctest.Issuer
	transport         http.RoundTripper
	providers         []*provider.Provider
	snap              *policy.Snapshot
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

// rewriter sends requests for the real CI issuers' hosts to the fake
// issuers on loopback, so github_actions and circleci providers — whose
// issuers are fixed https URLs — verify against real keys in tests.
type rewriter map[string]string

func (rw rewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	if to, ok := rw[r.URL.Host]; ok {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = "http", to, to
	}
	return http.DefaultTransport.RoundTrip(r)
}

func hostOf(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

func getWorld(t testing.TB) *world {
	t.Helper()
	worldOnce.Do(func() { theWorld, worldErr = newWorld() })
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return theWorld
}

func newWorld() (*world, error) {
	w := &world{}
	var err error
	if w.gh, err = oidctest.NewIssuer(oidctest.WithRSA()); err != nil {
		return nil, err
	}
	w.gh.SetIssuerOverride(provider.GitHubIssuer)
	w.gh.SetJWKSURI(provider.GitHubIssuer + oidctest.JWKSPath)
	circleIss := provider.CircleCIIssuerPrefix + circleOrg
	if w.circle, err = oidctest.NewIssuer(oidctest.WithECDSA(), oidctest.WithPath("/org/"+circleOrg)); err != nil {
		return nil, err
	}
	w.circle.SetIssuerOverride(circleIss)
	w.circle.SetJWKSURI(circleIss + oidctest.JWKSPath)
	if w.other, err = oidctest.NewIssuer(oidctest.WithInitialAlg("ES384")); err != nil {
		return nil, err
	}
	w.transport = rewriter{
		hostOf(provider.GitHubIssuer): hostOf(w.gh.URL()),
		hostOf(circleIss):             hostOf(w.circle.URL()),
	}
	f, err := provider.Parse("providers.yaml", []byte(fmt.Sprintf(providersYAML, w.other.URL())))
	if err != nil {
		return nil, err
	}
	w.providers = f.Providers
	ctx := context.Background()
	b, err := policy.Build(ctx, policy.Sources{Providers: f.Providers, Revision: "test-rev-1"})
	if err != nil {
		return nil, err
	}
	if w.snap, err = policy.Compile(ctx, b); err != nil {
		return nil, err
	}
	return w, nil
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct{ testkit.SyncBuffer }

// events returns the decoded JSON lines of the log.
func (s *syncBuffer) events(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// rig is one handler with its own engine, verifier, store and logs.
type rig struct {
	t      testing.TB
	w      *world
	engine *policy.Engine
	store  token.Store
	redis  *redistest.Server // nil for the memory store
	h      *Handler
	main   *mux.Router
	admin  *mux.Router
	audit  *syncBuffer
	logs   *syncBuffer
	now    func() time.Time
	opts   Options // what New was given
}

type rigOption func(*rigConfig)

type rigConfig struct {
	opts     Options
	noPolicy bool
	redisTO  time.Duration // 0: 2s (a loaded test machine is slow); use token.DefaultTimeout for fault tests
	wrap     func(token.Store) token.Store
	vopts    oidc.Options
}

func withOptions(f func(*Options)) rigOption { return func(c *rigConfig) { f(&c.opts) } }
func withClock(now func() time.Time) rigOption {
	return func(c *rigConfig) { c.opts.Now = now; c.vopts.Now = now }
}
func withRedisTimeout(d time.Duration) rigOption { return func(c *rigConfig) { c.redisTO = d } }
func withoutPolicy() rigOption                   { return func(c *rigConfig) { c.noPolicy = true } }
func withStoreWrapper(f func(token.Store) token.Store) rigOption {
	return func(c *rigConfig) { c.wrap = f }
}

// stores lists the store kinds every store-dependent test runs against.
var stores = []string{"memory", "redis"}

func newRig(t testing.TB, storeKind string, opts ...rigOption) *rig {
	t.Helper()
	w := getWorld(t)
	cfg := rigConfig{
		opts: Options{AdminToken: adminToken},
	}
	for _, o := range opts {
		o(&cfg)
	}
	r := &rig{t: t, w: w, engine: &policy.Engine{}, audit: &syncBuffer{}, logs: &syncBuffer{}}
	if !cfg.noPolicy {
		r.engine.Swap(w.snap)
	}
	switch storeKind {
	case "memory":
		now := cfg.opts.Now
		if now == nil {
			now = time.Now
		}
		m := token.NewMemory(now)
		t.Cleanup(func() { _ = m.Close() })
		r.store = m
	case "redis":
		r.redis = redistest.Start(t)
		to := cfg.redisTO
		if to == 0 {
			to = 2 * time.Second
		}
		s, err := token.NewRedis(token.RedisOptions{URL: r.redis.URL(), Timeout: to})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		r.store = s
	default:
		t.Fatalf("unknown store %q", storeKind)
	}
	if cfg.wrap != nil {
		r.store = cfg.wrap(r.store)
	}
	vo := cfg.vopts
	vo.HTTPClient = &http.Client{Transport: w.transport, Timeout: 5 * time.Second}
	v, err := oidc.NewVerifier(vo)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.opts
	o.Engine, o.Verifier, o.Store = r.engine, v, r.store
	o.Audit = slog.New(slog.NewJSONHandler(r.audit, nil))
	o.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	if o.Clients == nil {
		o.Clients, _ = clientip.New(nil)
	}
	r.h, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.now, r.opts = o.Now, o
	if r.now == nil {
		r.now = time.Now
	}
	r.main = mux.NewRouter()
	r.h.Register(r.main)
	r.admin = mux.NewRouter()
	r.h.RegisterAdmin(r.admin)
	return r
}

// ghToken signs a GitHub Actions token for repo at ref.
func (r *rig) ghToken(repo, ref string, edit ...func(map[string]any)) string {
	r.t.Helper()
	c := oidctest.GitHubClaims(provider.GitHubIssuer, provider.DefaultGitHubAudience, repo, ref, r.now())
	for _, e := range edit {
		e(c)
	}
	return oidctest.MustSign(r.t, r.w.gh, c)
}

// circleToken signs a CircleCI token of the configured project. Like
// CircleCI's, it has no jti: two tokens signed in the same second would be
// one token to the replay guard (it keys on the signed content), so each
// call's iat is one second earlier than the previous one's.
func (r *rig) circleToken(project string) string {
	r.t.Helper()
	c := oidctest.CircleCIClaims(provider.CircleCIIssuerPrefix+circleOrg, circleOrg, project, r.now())
	c["iat"] = c["iat"].(int64) - circleSeq.Add(1)%3600
	return oidctest.MustSign(r.t, r.w.circle, c)
}

var circleSeq atomic.Int64

// otherToken signs a token of the "other" issuer with subject sub.
func (r *rig) otherToken(sub string) string {
	r.t.Helper()
	now := r.now().Unix()
	return oidctest.MustSign(r.t, r.w.other, map[string]any{
		"iss": r.w.other.URL(), "aud": "sidecar-test", "sub": sub, "iat": now - 1, "exp": now + 300,
		"jti": oidctest.UUID(), "repository": "infra/tools",
	})
}

// req builds a request from 192.0.2.10 unless edit changes it.
type reqOption func(*http.Request)

func from(addr string) reqOption { return func(r *http.Request) { r.RemoteAddr = addr } }
func header(k, v string) reqOption {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

func (r *rig) do(h http.Handler, method, path, contentType, body string, opts ...reqOption) *httptest.ResponseRecorder {
	r.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.10:40000"
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// buddy posts a Buddy exchange request.
func (r *rig) buddy(providerID, jwt string, opts ...reqOption) *httptest.ResponseRecorder {
	r.t.Helper()
	body, _ := json.Marshal(map[string]string{"provider_id": providerID, "web_identity_token": jwt})
	return r.do(r.main, http.MethodPost, BuddyPath, "application/json", string(body), opts...)
}

// tokenForm posts an RFC 8693 request.
func (r *rig) tokenForm(v url.Values, opts ...reqOption) *httptest.ResponseRecorder {
	r.t.Helper()
	return r.do(r.main, http.MethodPost, TokenPath, "application/x-www-form-urlencoded", v.Encode(), opts...)
}

func exchangeForm(providerID, jwt string) url.Values {
	return url.Values{
		"grant_type":         {GrantTypeTokenExchange},
		"subject_token":      {jwt},
		"subject_token_type": {TokenTypeJWT},
		"client_id":          {providerID},
	}
}

// issued asserts a 200 Buddy answer and returns the token.
func (r *rig) issued(rec *httptest.ResponseRecorder) string {
	r.t.Helper()
	if rec.Code != http.StatusOK {
		r.t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
	}
	tok := rec.Body.String()
	if r.opts.BuddyResponse == BuddyResponseJSONString {
		if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil {
			r.t.Fatalf("body %q is not a JSON string: %v", rec.Body, err)
		}
	}
	if !token.WellFormed(tok) {
		r.t.Fatalf("token %q is not well formed", tok)
	}
	return tok
}

// buddyError asserts status and returns errors[0].message.
func buddyError(t testing.TB, rec *httptest.ResponseRecorder, status int) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var b struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Errors) != 1 {
		t.Fatalf("body %s is not Buddy's error shape: %v", rec.Body, err)
	}
	return b.Errors[0].Message
}

// oauthError asserts status and error code and returns the description.
func oauthError(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	var b map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	if b["error"] != code {
		t.Fatalf("error %v, want %s; body %s", b["error"], code, rec.Body)
	}
	if len(b) != 2 {
		t.Errorf("body has members beyond error and error_description: %s", rec.Body)
	}
	d, _ := b["error_description"].(string)
	return d
}

// tokenKeys lists the token keys in Redis.
func (r *rig) tokenKeys() []string {
	r.t.Helper()
	keys, err := r.redis.Client().Keys(context.Background(), token.DefaultKeyPrefix+"tok:*").Result()
	if err != nil {
		r.t.Fatal(err)
	}
	return keys
}

// introspect asks the admin listener about tok.
func (r *rig) introspect(tok string, opts ...reqOption) *httptest.ResponseRecorder {
	r.t.Helper()
	opts = append([]reqOption{header("Authorization", "Bearer "+adminToken)}, opts...)
	return r.do(r.admin, http.MethodPost, IntrospectPath, "application/x-www-form-urlencoded", url.Values{"token": {tok}}.Encode(), opts...)
}

func (r *rig) revoke(tok string) *httptest.ResponseRecorder {
	r.t.Helper()
	return r.do(r.main, http.MethodPost, RevokePath, "application/x-www-form-urlencoded", url.Values{"token": {tok}}.Encode())
}

// decode decodes a JSON object body.
func decode(t testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return m
}
