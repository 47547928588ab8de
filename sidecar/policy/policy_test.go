package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/glyph"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

const (
	ghaID    = "550e8400-e29b-41d4-a716-446655440000"
	relID    = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	circleID = "9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f"
	otherID  = "2a7d3f4e-8b9c-4d1e-a2f3-5b6c7d8e9f01"
)

func exampleProviders(t testing.TB) []*provider.Provider {
	t.Helper()
	f, err := provider.Load("../../examples/providers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return f.Providers
}

func fixture(t testing.TB, name string) map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join("../../policies/testdata/claims", name, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ReadClaims(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func with(c map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func snapshot(t testing.TB, ps []*provider.Provider) *Snapshot {
	t.Helper()
	ctx := context.Background()
	b, err := Build(ctx, Sources{Providers: ps})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func buildAndCompile(ctx context.Context, s Sources) (*Snapshot, error) {
	b, err := Build(ctx, s)
	if err != nil {
		return nil, err
	}
	return Compile(ctx, b)
}

func exchange(t *testing.T, s *Snapshot, id string, claims map[string]any, ip string) *ExchangeDecision {
	t.Helper()
	d, err := s.Exchange(context.Background(), ExchangeInput{ProviderID: id, Claims: claims, ClientIP: ip, Time: time.Unix(1795000001, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestExchangeDecisionsWithGeneratedConditions(t *testing.T) {
	s := snapshot(t, exampleProviders(t))
	push := fixture(t, "github_push_main")

	d := exchange(t, s, ghaID, push, "198.51.100.1")
	if !d.Allow || strings.Join(d.Scopes, ",") != "WORKSPACE,EXECUTION_RUN" || d.LifetimeSeconds != 600 ||
		len(d.Workspaces) != 1 || d.Workspaces[0] != "my-company" || len(d.Reasons) != 0 {
		t.Fatalf("push to main: %+v", d)
	}

	pr := fixture(t, "github_pull_request")
	d = exchange(t, s, ghaID, pr, "198.51.100.1")
	if d.Allow || len(d.Reasons) != 1 {
		t.Fatalf("pull request: %+v", d)
	}
	r := d.Reasons[0]
	if r.Code != "condition_failed" || r.Claim != "ref" || r.Condition != `ref is "refs/heads/main"` ||
		r.Actual != "refs/pull/42/merge" || r.Expected != "refs/heads/main" || r.Missing {
		t.Fatalf("pull request reason: %+v", r)
	}

	other := with(push, "repository_owner", "evil-org", "repository", "evil-org/octo-repo")
	d = exchange(t, s, ghaID, other, "198.51.100.1")
	if d.Allow || len(d.Reasons) != 2 {
		t.Fatalf("other repository: %+v", d)
	}

	// All four clause kinds of the release provider, with typed values.
	env := with(fixture(t, "github_environment_deploy"), "ref", "refs/tags/v1.2.0")
	if d := exchange(t, s, relID, env, "198.51.100.1"); !d.Allow {
		t.Fatalf("release from production: %+v", d.Reasons)
	}
	if d := exchange(t, s, relID, with(env, "environment", nil), "198.51.100.1"); d.Allow || !d.Reasons[0].Missing {
		t.Fatalf("missing environment must deny with missing=true: %+v", d)
	}
	if d := exchange(t, s, relID, with(env, "ref", "refs/tags/v1/evil"), "198.51.100.1"); d.Allow {
		t.Fatalf("glob * must not cross /: %+v", d)
	}
	if d := exchange(t, s, relID, with(env, "event_name", nil), "198.51.100.1"); d.Allow {
		t.Fatal("a missing claim satisfied a negative condition")
	}

	// CircleCI: array claim (contains), boolean claim, IP restriction.
	cc := fixture(t, "circleci_main")
	if d := exchange(t, s, circleID, cc, "203.0.113.50"); !d.Allow {
		t.Fatalf("circleci: %+v", d.Reasons)
	}
	if d := exchange(t, s, circleID, cc, "198.51.100.1"); d.Allow || d.Reasons[0].Code != "ip_not_allowed" {
		t.Fatalf("circleci from outside the CIDR: %+v", d)
	}
	if d := exchange(t, s, circleID, with(cc, "oidc.circleci.com/ssh-rerun", true), "203.0.113.50"); d.Allow {
		t.Fatal("ssh rerun must be denied")
	}
	if d := exchange(t, s, circleID, with(cc, "oidc.circleci.com/context-ids", []any{"other"}), "203.0.113.50"); d.Allow {
		t.Fatal("a token without the deploy context must be denied")
	}

	// Unknown provider: a decision, not an error.
	if d := exchange(t, s, "00000000-0000-4000-8000-000000000000", push, "198.51.100.1"); d.Allow || d.Reasons[0].Code != "unknown_provider" {
		t.Fatalf("unknown provider: %+v", d)
	}

	// Default guardrail.
	if d := exchange(t, s, ghaID, with(push, "event_name", "pull_request_target"), "198.51.100.1"); d.Allow || d.Reasons[0].Code != "guardrail" {
		t.Fatalf("pull_request_target: %+v", d)
	}
}

func TestRequestedScopes(t *testing.T) {
	s := snapshot(t, exampleProviders(t))
	push := fixture(t, "github_push_main")
	d, err := s.Exchange(context.Background(), ExchangeInput{ProviderID: ghaID, Claims: push, ClientIP: "1.2.3.4", Time: time.Now(), RequestedScopes: []string{"EXECUTION_INFO"}})
	if err != nil || !d.Allow || strings.Join(d.Scopes, ",") != "EXECUTION_INFO" || len(d.InvalidScopes) != 0 {
		t.Fatalf("narrowing through the hierarchy: %+v %v", d, err)
	}
	d, err = s.Exchange(context.Background(), ExchangeInput{ProviderID: ghaID, Claims: push, ClientIP: "1.2.3.4", Time: time.Now(), RequestedScopes: []string{"EXECUTION_MANAGE"}})
	if err != nil || strings.Join(d.InvalidScopes, ",") != "EXECUTION_MANAGE" {
		t.Fatalf("scope beyond the grant: %+v %v", d, err)
	}
}

func TestProxyDecision(t *testing.T) {
	s := snapshot(t, exampleProviders(t))
	var run *routes.Route
	for i, r := range s.Routes {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/executions") {
			run = &s.Routes[i]
		}
	}
	tok, err := TokenValue(map[string]any{"provider_id": ghaID, "scopes": []any{"WORKSPACE", "EXECUTION_INFO"}, "workspaces": []any{"my-company"}})
	if err != nil {
		t.Fatal(err)
	}
	in := ProxyInput{Method: "POST", Path: "/workspaces/my-company/projects/web/pipelines/1/executions", Route: run,
		Vars: map[string]string{"workspace": "my-company"}, Token: tok, ClientIP: "1.2.3.4", Time: time.Now()}
	d, err := s.Authorize(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := "Insufficient scopes. Your token has the following scopes: [WORKSPACE, EXECUTION_INFO]. This request requires the following scopes: EXECUTION_RUN"
	if d.Allow || d.Status != 403 || d.Message != want {
		t.Fatalf("got %+v", d)
	}
	in.Token = nil
	if d, _ := s.Authorize(context.Background(), in); d.Status != 401 || d.Message != "Wrong authentication data" {
		t.Fatalf("no token: %+v", d)
	}
}

func TestCompileErrorsKeepTheOldSnapshot(t *testing.T) {
	ctx := context.Background()
	good := snapshot(t, exampleProviders(t))
	var e Engine
	if e.Current() != nil {
		t.Fatal("zero engine serves something")
	}
	e.Swap(good)

	pols, err := EmbeddedPolicies(false)
	if err != nil {
		t.Fatal(err)
	}
	bad := append(append([]File(nil), pols...), File{Path: "broken.rego", Src: []byte("package sidecar.guardrails\n\ndeny contains x if {\n\tx := undefined_fn(1)\n}\n")})
	_, err = buildAndCompile(ctx, Sources{Providers: exampleProviders(t), Policies: bad})
	if err == nil || !strings.Contains(err.Error(), "broken.rego:4:") || !strings.Contains(err.Error(), "undefined function") {
		t.Fatalf("want a located compile error, got %v", err)
	}
	if e.Current() != good {
		t.Fatal("a failed build replaced the served snapshot")
	}

	// Policies without the entry points.
	_, err = buildAndCompile(ctx, Sources{Providers: exampleProviders(t), Policies: []File{{Path: "g.rego", Src: []byte("package sidecar.guardrails\n")}}})
	if err == nil || !strings.Contains(err.Error(), "data.sidecar.exchange.decision") {
		t.Fatalf("missing entry point: %v", err)
	}

	// A provider naming a hand-written policy that does not exist.
	ps := exampleProviders(t)
	ps[0].Policy = "nosuch"
	if _, err := buildAndCompile(ctx, Sources{Providers: ps}); err == nil || !strings.Contains(err.Error(), `names policy "nosuch"`) {
		t.Fatalf("missing custom policy: %v", err)
	}

	// A network builtin in a policy.
	net := append(append([]File(nil), pols...), File{Path: "net.rego", Src: []byte("package sidecar.guardrails\n\ndeny contains x if {\n\tx := http.send({\"method\": \"GET\", \"url\": \"http://x\"})\n}\n")})
	if _, err := buildAndCompile(ctx, Sources{Providers: exampleProviders(t), Policies: net}); err == nil || !strings.Contains(err.Error(), "http.send") {
		t.Fatalf("http.send must be refused: %v", err)
	}
}

func TestHandWrittenProviderPolicy(t *testing.T) {
	ctx := context.Background()
	ps := exampleProviders(t)
	ps[0].Policy = "deploy"
	pols, _ := EmbeddedPolicies(false)
	pols = append(pols, File{Path: "custom/deploy.rego", Src: []byte(`package sidecar.custom.deploy

default allow := false

allow if input.claims.environment == "production"

deny contains "deployments must run in the production environment" if not allow
`)})
	b, err := Build(ctx, Sources{Providers: ps, Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	push := fixture(t, "github_push_main")
	d := exchange(t, s, ghaID, push, "1.2.3.4")
	if d.Allow || d.Reasons[0].Code != "custom_policy" || d.Reasons[0].Message != "deployments must run in the production environment" {
		t.Fatalf("custom policy must deny: %+v", d)
	}
	if d := exchange(t, s, ghaID, with(push, "environment", "production"), "1.2.3.4"); !d.Allow {
		t.Fatalf("conditions and custom policy both allow: %+v", d.Reasons)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	ctx := context.Background()
	b, err := Build(ctx, Sources{Providers: exampleProviders(t)})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Build(ctx, Sources{Providers: exampleProviders(t)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Revision != b2.Manifest.Revision || !strings.HasPrefix(b.Manifest.Revision, "sha256-") {
		t.Fatalf("revision not content-stable: %q vs %q", b.Manifest.Revision, b2.Manifest.Revision)
	}
	var buf bytes.Buffer
	if err := WriteBundle(&buf, b); err != nil {
		t.Fatal(err)
	}
	rb, err := ReadBundle(&buf)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(ctx, rb)
	if err != nil {
		t.Fatal(err)
	}
	if s.Revision != b.Manifest.Revision || len(s.Providers) != 4 || len(s.Routes) != len(routes.Default()) {
		t.Fatalf("round trip: rev %s providers %d routes %d", s.Revision, len(s.Providers), len(s.Routes))
	}
	if s.Providers[circleID].Issuer != "https://oidc.circleci.com/org/4f5e9a52-7c1d-4c8e-9a3b-2b6f0d1e8c77" {
		t.Fatalf("issuer from bundle data: %q", s.Providers[circleID].Issuer)
	}
	d := exchange(t, s, ghaID, fixture(t, "github_push_main"), "1.2.3.4")
	if !d.Allow {
		t.Fatalf("decision from a read-back bundle: %+v", d.Reasons)
	}
	if _, err := ReadBundle(strings.NewReader("not a tarball")); err == nil {
		t.Fatal("garbage accepted as a bundle")
	}
}

func TestScopeGraphMustNameEveryNode(t *testing.T) {
	ctx := context.Background()
	b, err := Build(ctx, Sources{Providers: exampleProviders(t)})
	if err != nil {
		t.Fatal(err)
	}
	b.Data["sidecar"].(map[string]any)["scopes"] = map[string]any{"implies": map[string]any{"A": []any{"B"}}}
	if _, err := Compile(ctx, b); err == nil || !strings.Contains(err.Error(), `names "B"`) {
		t.Fatalf("incomplete scope graph accepted: %v", err)
	}
}

func TestRunEmbeddedTests(t *testing.T) {
	var out bytes.Buffer
	sum, err := RunTests(context.Background(), TestOptions{Out: &out, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.Pass < 30 {
		t.Fatalf("embedded policy tests: %+v\n%s", sum, out.String())
	}
	if !strings.Contains(out.String(), "test_scope_one_level_too_low_gets_buddys_message: PASS") {
		t.Fatalf("verbose output lacks a test line:\n%s", out.String())
	}
}

func TestRunTestsReportsFailures(t *testing.T) {
	dir := t.TempDir()
	pols, _ := EmbeddedPolicies(false)
	for _, f := range pols {
		if err := os.WriteFile(filepath.Join(dir, f.Path), f.Src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	test := "package sidecar.mine_test\n\nimport data.sidecar.exchange\n\n" +
		"test_example_provider_allows_main if {\n\td := exchange.decision with input as {\"provider_id\": \"" + ghaID + "\", \"claims\": {\"repository_owner\": \"octo-org\", \"repository\": \"octo-org/octo-repo\", \"ref\": \"refs/heads/main\"}, \"client_ip\": \"1.2.3.4\", \"time\": 0}\n\td.allow\n}\n\n" +
		"test_this_one_fails if {\n\tfalse\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "mine_test.rego"), []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sum, err := RunTests(context.Background(), TestOptions{Paths: []string{dir}, Providers: exampleProviders(t), Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Pass != 1 || sum.Fail != 1 || sum.OK() {
		t.Fatalf("summary %+v\n%s", sum, out.String())
	}
	if !strings.Contains(out.String(), "test_this_one_fails") || !strings.Contains(out.String(), "FAIL: 1/2") {
		t.Fatalf("output:\n%s", out.String())
	}
}

func TestExplain(t *testing.T) {
	s := snapshot(t, exampleProviders(t))
	d := exchange(t, s, ghaID, fixture(t, "github_pull_request"), "1.2.3.4")
	var out bytes.Buffer
	d.Explain(&out, ghaID)
	for _, want := range []string{"decision:   DENY (1 reason(s))", glyph.Default.Fail + ` ref is "refs/heads/main"`, `claim ref = "refs/pull/42/merge"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, out.String())
		}
	}
	j, _ := json.Marshal(d)
	if !strings.Contains(string(j), `"allow":false`) {
		t.Fatal(string(j))
	}
}

// TestStaleScopeGrantsRefused: data.sidecar.scopes.grants, the proxy's
// precomputed hierarchy, must match implies; a bundle whose grants would
// give more than the hierarchy does not load.
func TestStaleScopeGrantsRefused(t *testing.T) {
	ctx := context.Background()
	b, err := Build(ctx, Sources{Providers: manyProviders(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sc := b.Data[Root].(map[string]any)["scopes"].(map[string]any)
	grants := sc["grants"].(map[string]any)
	if got := fmt.Sprint(grants["EXECUTION_MANAGE"]); got != "[EXECUTION_INFO EXECUTION_MANAGE EXECUTION_RUN]" {
		t.Fatalf("grants[EXECUTION_MANAGE] = %s", got)
	}
	if _, err := Compile(ctx, b); err != nil {
		t.Fatalf("built bundle: %v", err)
	}
	grants["EXECUTION_INFO"] = []any{"EXECUTION_INFO", "EXECUTION_MANAGE"}
	_, err = Compile(ctx, b)
	if err == nil || !strings.Contains(err.Error(), "data.sidecar.scopes.grants does not match data.sidecar.scopes.implies") {
		t.Fatalf("stale grants: err = %v", err)
	}
	delete(sc, "grants")
	s, err := Compile(ctx, b)
	if err != nil {
		t.Fatalf("without grants: %v", err)
	}
	tok, _ := TokenValue(map[string]any{"provider_id": manyProviders(t, 1)[0].ID, "scopes": []any{"EXECUTION_MANAGE"}, "workspaces": nil, "ip_restrictions": []any{}})
	var route *routes.Route
	for i, r := range s.Routes {
		if len(r.Scopes) == 1 && r.Scopes[0] == "EXECUTION_INFO" {
			route = &s.Routes[i]
			break
		}
	}
	d, err := s.Authorize(ctx, ProxyInput{Method: route.Method, Path: "/x", Route: route, Vars: map[string]string{"workspace": "acme"}, Token: tok, ClientIP: "203.0.113.7", Time: time.Unix(1795000001, 0)})
	if err != nil || !d.Allow {
		t.Fatalf("without grants, EXECUTION_MANAGE on an EXECUTION_INFO route: %+v, %v", d, err)
	}
}

// TestProxyDecisionPure: the shipped proxy policy depends on nothing but its
// inputs and the bundle; reading input.time, the whole input, or calling a
// non-deterministic builtin anywhere the decision reaches makes it impure.
func TestProxyDecisionPure(t *testing.T) {
	ctx := context.Background()
	s := snapshot(t, manyProviders(t, 1))
	if pure, why := s.ProxyDecisionPure(); !pure {
		t.Fatalf("shipped policies: not pure: %s", why)
	}
	for _, tc := range []struct{ rule, want string }{
		{"late if input.time > 0", "reads input.time"},
		{"late if time.now_ns() > 0", "calls time.now_ns, which is not deterministic"},
		{"late if count(input) > 0", "uses input as a whole"},
		{"late if {\n\tsome k\n\tinput[k] == 1\n}", "reads input with a computed key"},
		{"late if rand.intn(\"x\", 2) == 0", "calls rand.intn, which is not deterministic"},
	} {
		pols, _ := EmbeddedPolicies(false)
		for i, f := range pols {
			if f.Path == "proxy.rego" {
				// A helper two rules away from decision.
				pols[i].Src = append(bytes.Replace(f.Src, []byte("\tnot token\n} else := deny(401, \"unknown_provider\""), []byte("\tnot token\n\tnot helper\n} else := deny(401, \"unknown_provider\""), 1),
					[]byte("\nhelper if late\n\n"+tc.rule+"\n")...)
			}
		}
		s, err := buildAndCompile(ctx, Sources{Providers: manyProviders(t, 1), Policies: pols})
		if err != nil {
			t.Fatalf("%s: %v", tc.rule, err)
		}
		pure, why := s.ProxyDecisionPure()
		if pure || !strings.Contains(why, tc.want) || !strings.Contains(why, "data.sidecar.proxy.late") {
			t.Errorf("%s: pure=%v why=%q, want %q in data.sidecar.proxy.late", tc.rule, pure, why, tc.want)
		}
	}
}

// TestFailedConditionsInWrittenOrder: a denial lists its failed conditions
// in the order they were written, whatever their messages' order.
func TestFailedConditionsInWrittenOrder(t *testing.T) {
	ps := manyProviders(t, 1)
	src := `repository_owner is "octo-org" and ref is "zzz" and event_name is "aaa" and sha exists and actor is "mmm"`
	x, err := trust.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	ps[0].TrustConditions, ps[0].Conditions = src, x
	s := snapshot(t, ps)
	d := exchange(t, s, string(ps[0].ID), fixture(t, "github_push_main"), "203.0.113.7")
	if d.Allow {
		t.Fatal("allowed")
	}
	var got []string
	for _, r := range d.Reasons {
		got = append(got, fmt.Sprintf("%d %s", r.Clause, r.Claim))
	}
	want := []string{"2 ref", "3 event_name", "5 actor"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("reasons %v, want %v", got, want)
	}
}

// TestGeneratedModulesAreNotReparsed: Build takes the generated modules'
// trees from the generator (trust.GenerateModule), already parsed, and a
// changed provider decides by its new conditions.
func TestGeneratedModulesAreNotReparsed(t *testing.T) {
	ctx := context.Background()
	ps := manyProviders(t, 3)
	src := `repository_owner is "someone-else" and ref is "refs/heads/main"`
	x, err := trust.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	ps[0].TrustConditions, ps[0].Conditions = src, x
	b, err := Build(ctx, Sources{Providers: ps})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range b.Modules {
		if strings.HasPrefix(m.Path, "sidecar/conditions/") {
			n++
			// Built, not parsed: the parser would have kept the header comments.
			if m.Parsed == nil || len(m.Parsed.Comments) != 0 {
				t.Errorf("%s: not the generator's tree", m.Path)
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d generated modules, want 3", n)
	}
	s, err := Compile(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if d := exchange(t, s, string(ps[0].ID), fixture(t, "github_push_main"), "203.0.113.7"); d.Allow || d.Reasons[0].Claim != "repository_owner" {
		t.Fatalf("provider 0 decided %+v; its conditions now require someone-else", d)
	}
	if d := exchange(t, s, string(ps[1].ID), fixture(t, "github_push_main"), "203.0.113.7"); d.Allow {
		t.Fatal("provider 1 (org-1) allowed octo-org")
	}
}
