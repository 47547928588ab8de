// Package demo runs the whole oidc-sidecar flow in one process with no
// set-up: a local OIDC issuer (real RSA keys), a small fake Buddy API and the
// sidecar itself (in-memory token store), then walks through what a CI job
// sees — and checks every step behaves as printed.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/fakeapi"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/glyph"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/server"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// ProviderID is the demo provider's ID.
const ProviderID = "550e8400-e29b-41d4-a716-446655440000"

const upstreamToken = "demo-upstream-credential"

// Options configures Run.
type Options struct {
	Out         io.Writer // the walk-through; default os.Stdout
	KeepRunning bool      // leave everything up until ctx ends and print curl commands
	Log         io.Writer // the sidecar's own JSON logs; default discarded
	// Marks are the pass/fail marks; default glyph.Default (✓/✗ in a
	// UTF-8 locale, [ok]/[x] otherwise).
	Marks *glyph.Marks
}

// Run starts the components, walks through the flow and returns an error
// if any step did not behave as printed.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	d := &walk{out: o.Out, client: &http.Client{Timeout: 5 * time.Second}, marks: glyph.Default}
	if o.Marks != nil {
		d.marks = *o.Marks
	}
	start := time.Now()

	// 1. The three components.
	iss, err := oidctest.NewIssuer(oidctest.WithRSA())
	if err != nil {
		return err
	}
	defer iss.Close()
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	api := &http.Server{Handler: fakeapi.New(upstreamToken), ReadHeaderTimeout: 5 * time.Second}
	go api.Serve(apiLn)
	defer api.Close()

	dir, err := os.MkdirTemp("", "oidc-sidecar-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	providers := fmt.Sprintf(`providers:
  - id: %s
    name: GHA-like - octo-repo:deploy
    type: other              # the demo's issuer is local; a real GitHub provider uses type github_actions
    issuer: %s
    audience: Buddy
    lifetime: 10m
    trust_conditions: 'repository_owner is "octo-org" and ref is "refs/heads/main"'
    workspaces: [my-company]
    scopes: [WORKSPACE, EXECUTION_INFO]
`, ProviderID, iss.URL())
	provPath := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(provPath, []byte(providers), 0o600); err != nil {
		return err
	}
	cfg := server.Defaults()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Upstream.URL = "http://" + apiLn.Addr().String()
	cfg.Providers = provPath
	off := false
	cfg.Watch = &off
	adminToken := "demo-admin-credential"
	env := map[string]string{cfg.Upstream.TokenEnv: upstreamToken, cfg.AdminTokenEnv: adminToken}
	logger := slog.New(slog.NewJSONHandler(o.Log, nil))
	srv, err := server.New(ctx, &cfg, server.Options{
		Logger: logger, Getenv: func(k string) string { return env[k] }, Store: token.NewMemory(time.Now),
	})
	if err != nil {
		return fmt.Errorf("starting the sidecar: %w", err)
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	defer func() { stop(); <-served }()
	d.base = "http://" + srv.Addr()

	d.title("oidc-sidecar demo")
	d.say("Started in this process, with no set-up:")
	d.say("  local OIDC issuer   %s   (real RSA-2048 keys, OIDC discovery + JWKS)", iss.URL())
	d.say("  fake Buddy API      %s   (accepts only the sidecar's upstream credential)", cfg.Upstream.URL)
	d.say("  oidc-sidecar        %s   (admin: http://%s; tokens in memory — use Redis in production)", d.base, srv.AdminAddr())
	d.say("")
	d.say("Provider %s (%s):", ProviderID, "GHA-like - octo-repo:deploy")
	d.say(`  trust conditions: repository_owner is "octo-org" and ref is "refs/heads/main"`)
	d.say("  scopes: WORKSPACE, EXECUTION_INFO   workspaces: my-company   lifetime: 10m")

	now := time.Now()
	good := oidctest.GitHubClaims(iss.URL(), "Buddy", "octo-org/octo-repo", "refs/heads/main", now)
	jwt, err := iss.Sign(good)
	if err != nil {
		return err
	}

	// 2. Exchange.
	d.step("A GitHub Actions-like job (octo-org/octo-repo, refs/heads/main) exchanges its OIDC token")
	d.say("POST /user/oidc/tokens {\"provider_id\": \"%s\", \"web_identity_token\": \"eyJ...\"}", ProviderID)
	status, body := d.post("/user/oidc/tokens", "application/json", exchangeBody(jwt), "")
	tok := body // the bare token, as Buddy's service answers (docs/exchange.md)
	d.expect(status == 200 && token.WellFormed(tok), "200 and a token", status, body)
	if tok != "" {
		d.say("→ %d %s…%s  (an opaque token; Redis would hold only its SHA-256)", status, tok[:8], tok[len(tok)-4:])
	}

	// 3. Allowed call.
	d.step("An allowed API call through the sidecar")
	d.say("GET /workspaces/my-company/projects   Authorization: Bearer ocs_…")
	status, body = d.get("/workspaces/my-company/projects", tok)
	d.expect(status == 200 && strings.Contains(body, "projects"), "200 from the fake Buddy API", status, body)
	d.say("→ %d %s", status, short(body))
	if reqs := lastAuth(fakeAPI(api)); reqs != "" {
		d.say("  the API received Authorization: %s (the sidecar token never leaves the sidecar)", reqs)
	}

	// 4. Missing scope.
	d.step("A call that needs a scope the token lacks")
	d.say("POST /workspaces/my-company/projects/web/pipelines/7/executions   (needs EXECUTION_RUN)")
	status, body = d.postAuth("/workspaces/my-company/projects/web/pipelines/7/executions", tok, `{"to_revision":{"revision":"HEAD"}}`)
	wantScope := "Insufficient scopes. Your token has the following scopes: [WORKSPACE, EXECUTION_INFO]. This request requires the following scopes: EXECUTION_RUN"
	d.expect(status == 403 && strings.Contains(body, wantScope), "403 with Buddy's message", status, body)
	d.say("→ %d %s", status, body)

	// 5. Another repository.
	d.step("A token from another repository (evil-org/octo-repo) is denied, and why")
	evil := oidctest.GitHubClaims(iss.URL(), "Buddy", "evil-org/octo-repo", "refs/heads/main", now)
	ejwt, _ := iss.Sign(evil)
	status, body = d.post("/user/oidc/tokens", "application/json", exchangeBody(ejwt), "")
	d.expect(status == 401 && strings.Contains(body, `repository_owner is \"octo-org\"`), "401 naming the failing condition", status, body)
	d.say("→ %d %s", status, body)
	if snap := srv.Engine().Current(); snap != nil {
		dec, err := snap.Exchange(ctx, policy.ExchangeInput{ProviderID: ProviderID, Claims: jsonClaims(evil), ClientIP: "127.0.0.1", Time: now})
		if err == nil {
			d.say("  oidc-sidecar policy eval shows the actual value (the audit log has it too):")
			var buf bytes.Buffer
			dec.Explain(&buf, ProviderID)
			for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
				d.say("    %s", l)
			}
		}
	}

	// 6. Replay.
	d.step("The first job's OIDC token, replayed")
	status, body = d.post("/user/oidc/tokens", "application/json", exchangeBody(jwt), "")
	d.expect(status == 401 && strings.Contains(body, "already exchanged"), "401: each OIDC token is exchanged once", status, body)
	d.say("→ %d %s", status, body)

	// 7. Expired.
	d.step("An expired OIDC token")
	old := oidctest.GitHubClaims(iss.URL(), "Buddy", "octo-org/octo-repo", "refs/heads/main", now.Add(-20*time.Minute))
	old["exp"] = now.Add(-10 * time.Minute).Unix()
	xjwt, _ := iss.Sign(old)
	status, body = d.post("/user/oidc/tokens", "application/json", exchangeBody(xjwt), "")
	d.expect(status == 401 && strings.Contains(body, "expired"), "401: expired", status, body)
	d.say("→ %d %s", status, body)

	d.say("")
	if len(d.failures) > 0 {
		d.say("%s %d step(s) did not behave as printed:", d.marks.Fail, len(d.failures))
		for _, f := range d.failures {
			d.say("  - %s", f)
		}
		return fmt.Errorf("demo: %d step(s) failed", len(d.failures))
	}
	d.say("%s all 6 steps behaved as printed (%.1fs)", d.marks.OK, time.Since(start).Seconds())

	if !o.KeepRunning {
		return nil
	}
	fresh := oidctest.GitHubClaims(iss.URL(), "Buddy", "octo-org/octo-repo", "refs/heads/main", time.Now())
	fresh["exp"] = time.Now().Add(time.Hour).Unix()
	fjwt, _ := iss.Sign(fresh)
	d.say("")
	d.say("Everything stays up until Ctrl-C. Try it:")
	d.say("")
	d.say("  JWT='%s'", fjwt)
	d.say("  TOKEN=$(curl -s %s/user/oidc/tokens -H 'Content-Type: application/json' \\", d.base)
	d.say(`      -d "{\"provider_id\": \"%s\", \"web_identity_token\": \"$JWT\"}" | tr -d '"')`, ProviderID)
	d.say("  curl -s %s/workspaces/my-company/projects -H \"Authorization: Bearer $TOKEN\"", d.base)
	d.say("  curl -s %s/workspaces/other-company/projects -H \"Authorization: Bearer $TOKEN\"   # 403: workspace", d.base)
	d.say("  curl -s http://%s/_sidecar/oauth2/introspect -H 'Authorization: Bearer %s' -d \"token=$TOKEN\"", srv.AdminAddr(), adminToken)
	d.say("  curl -s %s/_sidecar/oauth2/revoke -d \"token=$TOKEN\"", d.base)
	d.say("  curl -s http://%s/metrics | grep oidc_sidecar_", srv.AdminAddr())
	<-ctx.Done()
	return nil
}

type walk struct {
	out      io.Writer
	marks    glyph.Marks
	client   *http.Client
	base     string
	n        int
	failures []string
}

func (d *walk) title(s string) { fmt.Fprintf(d.out, "%s\n%s\n", s, strings.Repeat("=", len(s))) }
func (d *walk) say(f string, a ...any) {
	fmt.Fprintf(d.out, f+"\n", a...)
}
func (d *walk) step(s string) {
	d.n++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.n, s)
}

func (d *walk) expect(ok bool, what string, status int, body string) {
	if ok {
		fmt.Fprintf(d.out, "   %s %s\n", d.marks.OK, what)
		return
	}
	fmt.Fprintf(d.out, "   %s expected %s, got %d %s\n", d.marks.Fail, what, status, short(body))
	d.failures = append(d.failures, fmt.Sprintf("step %d: expected %s, got %d %s", d.n, what, status, short(body)))
}

func (d *walk) do(req *http.Request) (int, string) {
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (d *walk) post(path, ctype, body, bearer string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, d.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return d.do(req)
}

func (d *walk) postAuth(path, bearer, body string) (int, string) {
	return d.post(path, "application/json", body, bearer)
}

func (d *walk) get(path, bearer string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, d.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	return d.do(req)
}

func exchangeBody(jwt string) string {
	b, _ := json.Marshal(map[string]string{"provider_id": ProviderID, "web_identity_token": jwt})
	return string(b)
}

// jsonClaims round-trips claims through JSON so numbers are json.Number, as
// the verifier hands them to the policy.
func jsonClaims(c map[string]any) map[string]any {
	b, _ := json.Marshal(c)
	out, err := policy.ReadClaims(bytes.NewReader(b))
	if err != nil {
		return c
	}
	return out
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:157] + "..."
	}
	return s
}

func fakeAPI(s *http.Server) *fakeapi.API {
	api, _ := s.Handler.(*fakeapi.API)
	return api
}

// lastAuth is the Authorization the fake API last received, with the
// credential elided.
func lastAuth(api *fakeapi.API) string {
	if api == nil {
		return ""
	}
	reqs := api.Requests()
	if len(reqs) == 0 {
		return ""
	}
	a := reqs[len(reqs)-1].Header.Get("Authorization")
	if a == "Bearer "+upstreamToken {
		return "Bearer <upstream credential>"
	}
	return a
}
