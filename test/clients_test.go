package test

// Real clients against the built sidecar over HTTPS: Buddy's official
// GitHub Action (buddy/login 1.6.0, its released dist/index.js run with
// node) and the curl commands of examples/circleci.yml (Buddy's documented
// CircleCI pattern) run with bash.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// needTool returns the path of a command the test runs; without it the
// test is skipped locally and fails under CI=true (.ci/run installs it).
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (.ci/run installs the Debian package %s)", name, pkg)
		}
		t.Skipf("skipping: %s is not installed (Debian package %s; .ci/run installs it in CI)", name, pkg)
	}
	return p
}

// sidecarTLS is a test CA and a server certificate for 127.0.0.1 and
// localhost, as PEM files, with the config block that serves them.
type sidecarTLS struct {
	caFile string
	pool   *x509.CertPool
	block  map[string]any // the config's tls block
}

func newSidecarTLS(t *testing.T) *sidecarTLS {
	t.Helper()
	ca := testkit.NewCA(t, "oidc-sidecar e2e CA")
	leaf := ca.Server(t, 24*time.Hour, "127.0.0.1", "localhost")
	dir := t.TempDir()
	st := &sidecarTLS{caFile: filepath.Join(dir, "ca.pem"), pool: ca.Pool(), block: map[string]any{
		"cert_file": filepath.Join(dir, "tls.crt"), "key_file": filepath.Join(dir, "tls.key"),
	}}
	writeFile(t, st.caFile, string(ca.CertPEM))
	writeFile(t, st.block["cert_file"].(string), string(leaf.CertPEM))
	writeFile(t, st.block["key_file"].(string), string(leaf.KeyPEM))
	return st
}

// call sends a proxied request over HTTPS, trusting only the test CA.
func (st *sidecarTLS) call(t *testing.T, method, u, tok string) *response {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: st.pool}}}
	req := newRequest(t, method, u, "", "")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// fakeGitHubRuntime serves ACTIONS_ID_TOKEN_REQUEST_URL as the Actions
// runtime does: with the request token as bearer, it answers
// {"value": <ID token>} for the audience asked, signed by the world's
// GitHub-shaped issuer for the repository in repo.
type fakeGitHubRuntime struct {
	srv          *httptest.Server
	requestToken string
	repo         atomic.Value // string
	audiences    atomic.Value // []string asked so far
}

func newFakeGitHubRuntime(t *testing.T, w *world) *fakeGitHubRuntime {
	f := &fakeGitHubRuntime{requestToken: "gha-runtime-request-token-91e4"}
	f.repo.Store(ghRepo)
	f.audiences.Store([]string(nil))
	f.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.requestToken {
			http.Error(rw, `{"message":"bad credentials"}`, http.StatusUnauthorized)
			return
		}
		aud := r.URL.Query().Get("audience")
		f.audiences.Store(append(f.audiences.Load().([]string), aud))
		c := w.ghClaimsFor(f.repo.Load().(string))
		c["aud"] = aud
		jwt, err := w.gh.Sign(c)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write(mustJSON(map[string]string{"value": jwt}))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// actionRun is one run of the action's dist/index.js.
type actionRun struct {
	stdout string
	code   int
	env    map[string]string // what it wrote to $GITHUB_ENV
	output map[string]string // what it wrote to $GITHUB_OUTPUT
}

// buddyLoginActionSHA256 is the SHA-256 of dist/index.js of buddy/login
// release 1.6.0 (tag v1.6.0, commit a3d23650f16ba3a7c455ebff1fc08ec76ff86598).
const buddyLoginActionSHA256 = "37a30c99aa2ddb61521e565a92d8d47f17d23ae2fac819f2d9d52a7897a73cad"

// buddyLoginActionScript returns the path of the official action's
// dist/index.js, from a checkout of github.com/buddy/login at v1.6.0 named
// by OIDC_SIDECAR_BUDDY_LOGIN_ACTION. The action's code is third-party and
// is not kept in this repository (see test/testdata/buddy-login-action/).
// Without the variable the test skips, in CI too: nothing can fetch it there.
// A file whose SHA-256 is not release 1.6.0's fails the test.
func buddyLoginActionScript(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OIDC_SIDECAR_BUDDY_LOGIN_ACTION")
	if dir == "" {
		t.Skip("skipping: set OIDC_SIDECAR_BUDDY_LOGIN_ACTION to a checkout of github.com/buddy/login at tag v1.6.0 " +
			"(git clone --branch v1.6.0 https://github.com/buddy/login) to run Buddy's official login action against the sidecar")
	}
	script, err := filepath.Abs(filepath.Join(dir, "dist", "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatalf("OIDC_SIDECAR_BUDDY_LOGIN_ACTION=%s: %v (it must name a checkout of buddy/login v1.6.0 with dist/index.js)", dir, err)
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(data)); sum != buddyLoginActionSHA256 {
		t.Fatalf("%s has SHA-256 %s, not release 1.6.0's %s: check out tag v1.6.0, or update buddyLoginActionSHA256 after reviewing the new release", script, sum, buddyLoginActionSHA256)
	}
	return script
}

// runBuddyLoginAction runs the action's dist/index.js
// with node as a GitHub runner runs a `uses: buddy/login@v1` step with
// these inputs: INPUT_<NAME> variables (the runner also sets the inputs'
// defaults: region US), the runtime's ID-token variables, GITHUB_ENV and
// GITHUB_OUTPUT files, and NODE_EXTRA_CA_CERTS for the sidecar's test CA.
func runBuddyLoginAction(t *testing.T, node, script string, rt *fakeGitHubRuntime, caFile string, inputs map[string]string) actionRun {
	t.Helper()
	dir := t.TempDir()
	envFile, outFile := filepath.Join(dir, "github_env"), filepath.Join(dir, "github_output")
	writeFile(t, envFile, "")
	writeFile(t, outFile, "")
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"GITHUB_ACTIONS=true", "CI=true", "RUNNER_TEMP=" + dir,
		"GITHUB_ENV=" + envFile, "GITHUB_OUTPUT=" + outFile,
		"ACTIONS_ID_TOKEN_REQUEST_URL=" + rt.srv.URL + "/_apis/distributedtask/token?api-version=2.0",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + rt.requestToken,
		"NODE_EXTRA_CA_CERTS=" + caFile,
		"INPUT_REGION=US", // action.yml's default, which the runner passes
	}
	for k, v := range inputs {
		env = append(env, "INPUT_"+strings.ToUpper(k)+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Env = env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	setProcAttr(cmd)
	run := actionRun{}
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("node %s: %v\n%s", script, err, out.String())
		}
		run.code = ee.ExitCode()
	}
	run.stdout = out.String()
	run.env = readFileCommands(t, envFile)
	run.output = readFileCommands(t, outFile)
	return run
}

// readFileCommands parses a $GITHUB_ENV / $GITHUB_OUTPUT file: NAME=value
// lines, or NAME<<DELIMITER, the value's lines, DELIMITER.
func readFileCommands(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if name, delim, ok := strings.Cut(l, "<<"); ok {
			var val []string
			for i++; i < len(lines) && lines[i] != delim; i++ {
				val = append(val, lines[i])
			}
			if i == len(lines) {
				t.Fatalf("%s: %s has no closing delimiter %q:\n%s", path, name, delim, data)
			}
			out[name] = strings.Join(val, "\n")
		} else if name, val, ok := strings.Cut(l, "="); ok {
			out[name] = val
		}
	}
	return out
}

// TestBuddyLoginAction runs Buddy's official login action (release 1.6.0,
// unmodified) against `serve` with TLS: it exchanges the job's ID token,
// exports BUDDY_TOKEN and BUDDY_API_ENDPOINT, and that token works through
// the proxy; a job the trust conditions refuse fails with the sidecar's
// message. With buddy_response: json_string the action fails (why the
// bare token is the default), while `oidc-sidecar login` reads both forms.
func TestBuddyLoginAction(t *testing.T) {
	node := needTool(t, "node", "nodejs")
	script := buddyLoginActionScript(t)
	w := newWorld(t, worldOpts{})
	st := newSidecarTLS(t)
	cfg := w.config()
	cfg["tls"] = st.block
	s := startSidecar(t, cfg, nil)
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("sidecar URL %s is not https", s.URL)
	}
	rt := newFakeGitHubRuntime(t, w)
	inputs := map[string]string{"provider_id": ghID, "api_url": s.URL, "audience": ghAudience}
	projects := s.URL + "/workspaces/" + workspace + "/projects"

	t.Run("token exported and usable through the proxy", func(t *testing.T) {
		run := runBuddyLoginAction(t, node, script, rt, st.caFile, inputs)
		if run.code != 0 {
			t.Fatalf("the action exited %d:\n%s", run.code, run.stdout)
		}
		tok := run.env["BUDDY_TOKEN"]
		if !strings.HasPrefix(tok, "ocs_") || len(tok) != 53 {
			t.Fatalf("BUDDY_TOKEN %q is not an ocs_ token; GITHUB_ENV %v\n%s", truncate(tok, 20), run.env, run.stdout)
		}
		if got := run.env["BUDDY_API_ENDPOINT"]; got != s.URL {
			t.Errorf("BUDDY_API_ENDPOINT %q, want %q", got, s.URL)
		}
		if run.output["token"] != tok || run.output["api_endpoint"] != s.URL {
			t.Errorf("outputs %v", run.output)
		}
		if !strings.Contains(run.stdout, "::add-mask::"+tok) {
			t.Errorf("the action did not mask the token:\n%s", run.stdout)
		}
		if auds := rt.audiences.Load().([]string); len(auds) == 0 || auds[len(auds)-1] != ghAudience {
			t.Errorf("ID token audiences asked: %v, want %q", auds, ghAudience)
		}
		n := w.upstreamCount()
		r := st.call(t, http.MethodGet, projects, tok)
		expectStatus(t, r, http.StatusOK)
		w.upstreamSawOnly(t, n, tok)
		// The provider's workspace restriction holds for the action's token.
		expectStatus(t, st.call(t, http.MethodGet, s.URL+"/workspaces/"+otherWS+"/projects", tok), http.StatusForbidden)
	})

	t.Run("refused job shows the sidecar's message", func(t *testing.T) {
		rt.repo.Store("evil-org/octo-repo")
		defer rt.repo.Store(ghRepo)
		run := runBuddyLoginAction(t, node, script, rt, st.caFile, inputs)
		if run.code != 1 {
			t.Fatalf("the action exited %d, want 1:\n%s", run.code, run.stdout)
		}
		want := `::error::Error: Token exchange failed: OIDC token rejected by provider "GHA-like - octo-repo:deploy": `
		if !strings.Contains(run.stdout, want) || !strings.Contains(run.stdout, `repository_owner is "octo-org"`) ||
			!strings.Contains(run.stdout, "(HTTP 401 Unauthorized)") {
			t.Errorf("the action's error output lacks the sidecar's message %q:\n%s", want, run.stdout)
		}
		if _, ok := run.env["BUDDY_TOKEN"]; ok {
			t.Errorf("a refused job exported BUDDY_TOKEN")
		}
	})

	t.Run("plain http api_url is refused by the action", func(t *testing.T) {
		in := map[string]string{"provider_id": ghID, "api_url": "http://" + s.Addr, "audience": ghAudience}
		run := runBuddyLoginAction(t, node, script, rt, st.caFile, in)
		if run.code != 1 || !strings.Contains(run.stdout, "Invalid API URL format. Must be a valid HTTPS URL.") {
			t.Errorf("http:// api_url: exit %d\n%s", run.code, run.stdout)
		}
	})

	t.Run("json_string form", func(t *testing.T) {
		cfg := w.config()
		cfg["tls"] = st.block
		cfg["buddy_response"] = "json_string"
		sq := startSidecar(t, cfg, nil)
		run := runBuddyLoginAction(t, node, script, rt, st.caFile, map[string]string{"provider_id": ghID, "api_url": sq.URL, "audience": ghAudience})
		if run.code != 1 || !strings.Contains(run.stdout, "No token found in response. Expected fields: token, access_token, or buddy_token") {
			t.Errorf("the action against the quoted form: exit %d, want the failure the issue reported:\n%s", run.code, run.stdout)
		}

		// `oidc-sidecar login` reads both forms.
		for _, target := range []*sidecar{s, sq} {
			jwt := w.ghToken(t, nil)
			out, errOut, code := runCLI(t, map[string]string{"MY_JWT": jwt, "SSL_CERT_FILE": st.caFile},
				"login", "--sidecar-url", target.URL, "--provider-id", ghID, "--source", "env:MY_JWT", "--format", "token")
			tok := strings.TrimSpace(out)
			if code != 0 || !strings.HasPrefix(tok, "ocs_") {
				t.Fatalf("login against %s: status %d\nstdout: %s\nstderr: %s", target.URL, code, out, errOut)
			}
			expectStatus(t, st.call(t, http.MethodGet, target.URL+"/workspaces/"+workspace+"/projects", tok), http.StatusOK)
		}
	})
}

// circleStep is the job and the exchange step of examples/circleci.yml.
type circleStep struct {
	env     map[string]string
	command string
}

func readCircleCIExample(t *testing.T) circleStep {
	t.Helper()
	var cfg struct {
		Jobs map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Steps       []any             `yaml:"steps"`
		} `yaml:"jobs"`
	}
	data, err := os.ReadFile("../examples/circleci.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("examples/circleci.yml: %v", err)
	}
	for _, job := range cfg.Jobs {
		for _, s := range job.Steps {
			m, _ := s.(map[string]any)
			run, _ := m["run"].(map[string]any)
			if c, _ := run["command"].(string); strings.Contains(c, "/user/oidc/tokens") {
				return circleStep{env: job.Environment, command: c}
			}
		}
	}
	t.Fatal("examples/circleci.yml: no step posts to /user/oidc/tokens")
	return circleStep{}
}

// TestCircleCIExampleCommands runs the exchange step of
// examples/circleci.yml, as written, with bash and curl against `serve`
// over HTTPS: the job's environment from the example with OIDC_SIDECAR_URL
// pointing at the sidecar, CircleCI's CIRCLE_OIDC_TOKEN_V2 /
// CIRCLE_OIDC_TOKEN and build variables. The token from the exchange runs
// the pipeline in the next command; a refused job fails the step with the
// sidecar's message.
func TestCircleCIExampleCommands(t *testing.T) {
	bash := needTool(t, "bash", "bash")
	needTool(t, "curl", "curl")
	step := readCircleCIExample(t)
	w := newWorld(t, worldOpts{})
	// The example's provider (examples/providers.yaml) runs pipelines:
	// the CircleCI-shaped provider with scope EXECUTION_RUN.
	writeFile(t, w.providers, `providers:
  - id: `+step.env["OIDC_SIDECAR_PROVIDER_ID"]+`
    name: CircleCI - octo-repo deploy
    type: other
    issuer: `+w.cc.URL()+`
    audience: `+ccOrg+`
    lifetime: 30m
    trust_conditions: >-
      oidc.circleci.com/project-id is "`+ccProject+`"
      and oidc.circleci.com/vcs-ref is "refs/heads/main"
    workspaces: [`+step.env["BUDDY_WORKSPACE"]+`]
    scopes: [EXECUTION_RUN]
`)
	st := newSidecarTLS(t)
	cfg := w.config()
	cfg["tls"] = st.block
	s := startSidecar(t, cfg, nil)

	run := func(t *testing.T, tokens map[string]string) (stdout, stderr string, code int) {
		t.Helper()
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CIRCLECI=true",
			"CIRCLE_SHA1=3f786850e387550fdab836ed7e6dc881de23001b", "CIRCLE_BUILD_NUM=42",
			"CURL_CA_BUNDLE=" + st.caFile}
		for k, v := range step.env {
			if k == "OIDC_SIDECAR_URL" {
				v = s.URL
			}
			env = append(env, k+"="+v)
		}
		for k, v := range tokens {
			env = append(env, k+"="+v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bash, "-c", step.command)
		cmd.Env = env
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		setProcAttr(cmd)
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	executions := "/workspaces/" + step.env["BUDDY_WORKSPACE"] + "/projects/octo-repo/pipelines/1/executions"
	ranPipeline := func(t *testing.T, n int, stdout string) {
		t.Helper()
		var posts int
		for _, r := range w.api.Requests()[n:] {
			if r.Method == http.MethodPost && r.Path == executions && strings.Contains(string(r.Body), "CircleCI build 42") {
				posts++
			}
		}
		if posts != 1 || !strings.Contains(stdout, "INPROGRESS") {
			t.Errorf("the pipeline was run %d times (want 1); stdout:\n%s", posts, stdout)
		}
	}

	t.Run("CIRCLE_OIDC_TOKEN_V2 preferred", func(t *testing.T) {
		n := w.upstreamCount()
		// The older token would be refused (another project): V2 must be the one sent.
		old := w.ccClaims()
		old["oidc.circleci.com/project-id"] = "00000000-0000-4000-8000-000000000000"
		stdout, stderr, code := run(t, map[string]string{
			"CIRCLE_OIDC_TOKEN_V2": sign(t, w.cc, w.ccClaims()),
			"CIRCLE_OIDC_TOKEN":    sign(t, w.cc, old),
		})
		if code != 0 {
			t.Fatalf("the step exited %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		ranPipeline(t, n, stdout)
		w.upstreamSawOnly(t, n, "")
	})

	t.Run("CIRCLE_OIDC_TOKEN when V2 is unset", func(t *testing.T) {
		n := w.upstreamCount()
		stdout, stderr, code := run(t, map[string]string{"CIRCLE_OIDC_TOKEN": sign(t, w.cc, w.ccClaims())})
		if code != 0 {
			t.Fatalf("the step exited %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		ranPipeline(t, n, stdout)
	})

	t.Run("refused job fails the step with the sidecar's message", func(t *testing.T) {
		n := w.upstreamCount()
		c := w.ccClaims()
		c["oidc.circleci.com/vcs-ref"] = "refs/heads/feature"
		stdout, stderr, code := run(t, map[string]string{"CIRCLE_OIDC_TOKEN_V2": sign(t, w.cc, c)})
		if code == 0 {
			t.Fatalf("the step succeeded for a refused token\nstdout: %s", stdout)
		}
		if !strings.Contains(stderr, "token exchange failed: ") ||
			!strings.Contains(stderr, `OIDC token rejected by provider \"CircleCI - octo-repo deploy\": this trust condition failed: oidc.circleci.com/vcs-ref is \"refs/heads/main\"`) {
			t.Errorf("stderr lacks the sidecar's message:\n%s", stderr)
		}
		w.expectUpstreamUntouched(t, n)
	})
}
