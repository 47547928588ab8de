package test

// The harness of the end-to-end suite: TestMain builds the sidecar binary
// once; startSidecar runs `oidc-sidecar serve --config <tmp>/sidecar.yaml`
// as a subprocess on free loopback ports, waits for /readyz, and stops it
// with SIGTERM at cleanup, asserting a graceful exit (status 0), no data
// race and no secret in its logs.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"go.yaml.in/yaml/v3"
)

// Credentials the sidecar gets from its environment. Neither may ever appear
// in its logs, in a response, or (the admin one) upstream.
const (
	upstreamToken = "upstream-credential-7c1d0e9a4b2f"
	adminToken    = "admin-credential-3e8b5a6d9c0f"
	keyPrefix     = "oidc-sidecar:" // the default Redis key prefix
)

// Generous deadlines: the suite must pass on a loaded 2-core machine with
// the race detector on.
const (
	awaitTimeout = 20 * time.Second // any awaited condition
	readyTimeout = 60 * time.Second // process start to /readyz 200 (race builds compile OPA policies slowly)
	stopTimeout  = 30 * time.Second // SIGTERM to exit
)

var sidecarBin string // built by TestMain

func TestMain(m *testing.M) {
	os.Exit(mainRun(m))
}

func mainRun(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "oidc-sidecar-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	sidecarBin = filepath.Join(dir, "oidc-sidecar")
	args := []string{"build", "-o", sidecarBin}
	// Under -race the sidecar is built with the race detector too, so the
	// end-to-end and fault tests also hunt data races in the product: a
	// race makes the binary exit 66 instead of 0 and print DATA RACE,
	// which every test's cleanup checks. OIDC_SIDECAR_E2E_RACE=0/1 overrides.
	race := raceEnabled
	if v := os.Getenv("OIDC_SIDECAR_E2E_RACE"); v != "" {
		race = v == "1" || v == "true"
	}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/oidc-sidecar")
	start := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s (race=%v) in %s\n", sidecarBin, race, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// The sidecar subprocess.

type sidecar struct {
	t        testing.TB
	URL      string // http://127.0.0.1:port (exchange + proxy); https:// with a tls block
	Addr     string // 127.0.0.1:port
	AdminURL string
	Dir      string
	cmd      *exec.Cmd
	logs     *logSink
	exited   chan struct{}
	exitCode int
	stopped  bool
}

// sidecarEnv is the whole environment of the subprocess: nothing is
// inherited, so a developer's OIDC_SIDECAR_* variables cannot change a test.
func sidecarEnv(extra map[string]string) []string {
	env := map[string]string{
		"PATH":                     os.Getenv("PATH"),
		"HOME":                     os.Getenv("HOME"),
		"BUDDY_TOKEN":              upstreamToken,
		"OIDC_SIDECAR_ADMIN_TOKEN": adminToken,
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

var errPortTaken = errors.New("port taken")

// startSidecar writes cfg (listen and admin_listen added) to
// <tmp>/sidecar.yaml, runs serve, and waits until /readyz answers 200. A
// port taken between picking and binding means another try on new ports.
func startSidecar(t testing.TB, cfg map[string]any, env map[string]string) *sidecar {
	t.Helper()
	var lastErr error
	for range 4 {
		s, err := tryStartSidecar(t, cfg, env)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting the sidecar: %v", lastErr)
	return nil
}

func tryStartSidecar(t testing.TB, cfg map[string]any, env map[string]string) (*sidecar, error) {
	dir := t.TempDir()
	mainAddr, adminAddr := freeAddr(t), freeAddr(t)
	full := map[string]any{}
	for k, v := range cfg {
		full[k] = v
	}
	full["listen"] = mainAddr
	full["admin_listen"] = adminAddr
	data, err := yaml.Marshal(full)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, err
	}
	s, err := launchSidecar(t, dir, mainAddr, adminAddr, env, string(data), "serve", "--config", cfgPath)
	if err == nil {
		if _, ok := cfg["tls"]; ok { // the main listener serves HTTPS (the admin one stays plain)
			s.URL = "https://" + mainAddr
		}
	}
	return s, err
}

// launchSidecar runs the binary with args in dir, waits until adminAddr's
// /readyz answers 200, and stops it at cleanup. what describes the
// configuration for failure messages.
func launchSidecar(t testing.TB, dir, mainAddr, adminAddr string, env map[string]string, what string, args ...string) (*sidecar, error) {
	data := what
	s := &sidecar{
		t: t, URL: "http://" + mainAddr, Addr: mainAddr, AdminURL: "http://" + adminAddr, Dir: dir,
		logs: newLogSink(), exited: make(chan struct{}),
	}
	s.cmd = exec.Command(sidecarBin, args...)
	s.cmd.Dir = dir
	s.cmd.Env = sidecarEnv(env)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	setProcAttr(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := s.cmd.Wait()
		s.exitCode = 0
		if err != nil {
			s.exitCode = -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				s.exitCode = ee.ExitCode()
			}
		}
		close(s.exited)
	}()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-s.exited:
			logs := s.logs.String()
			if strings.Contains(logs, "address already in use") {
				return nil, fmt.Errorf("%w: %s", errPortTaken, lastLine(logs))
			}
			return nil, fmt.Errorf("the sidecar exited with status %d before it was ready; config:\n%s\nlogs:\n%s", s.exitCode, data, logs)
		default:
		}
		if st, _ := quickStatus(s.AdminURL + "/readyz"); st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("the sidecar was not ready within %s; logs:\n%s", readyTimeout, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		if !s.stopped {
			if code := s.Stop(); code != 0 {
				t.Errorf("the sidecar exited with status %d after SIGTERM, want 0 (graceful); log tail:\n%s", code, s.logs.Tail(4096))
			}
		}
		s.checkLogs(t)
	})
	return s, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func quickStatus(u string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Stop sends SIGTERM and returns the exit status (-1: killed after
// stopTimeout).
func (s *sidecar) Stop() int {
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.exitCode
	case <-time.After(stopTimeout):
		s.kill()
		return -1
	}
}

func (s *sidecar) kill() {
	s.stopped = true
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Pid is the subprocess's process id.
func (s *sidecar) Pid() int { return s.cmd.Process.Pid }

// checkLogs fails the test if the sidecar's output has a data race, a panic
// or anything that looks like a credential.
func (s *sidecar) checkLogs(t testing.TB) {
	t.Helper()
	for _, f := range s.logs.Findings() {
		t.Errorf("sidecar log: %s", f)
	}
}

// ---------------------------------------------------------------------------
// logSink collects the sidecar's output line by line: it keeps the first
// maxKeep bytes and a tail, and scans every line (even ones it does not
// keep) for things that must never be printed.

const maxKeep = 4 << 20

var forbiddenInLogs = []struct {
	what string
	re   *regexp.Regexp
}{
	{"a sidecar token", regexp.MustCompile(`ocs_[0-9A-Za-z]{40,}`)},
	{"a JWT", regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)},
	{"the upstream credential", regexp.MustCompile(regexp.QuoteMeta(upstreamToken))},
	{"the admin credential", regexp.MustCompile(regexp.QuoteMeta(adminToken))},
	{"a data race", regexp.MustCompile(`WARNING: DATA RACE`)},
	{"a panic", regexp.MustCompile(`^panic: |goroutine \d+ \[running\]`)},
}

type logSink struct {
	mu       sync.Mutex
	partial  []byte
	kept     bytes.Buffer
	tail     []string // ring of the last lines once kept is full
	lines    int
	findings []string
}

func newLogSink() *logSink { return &logSink{} }

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 1<<20 { // a pathological unterminated line
		l.line(string(l.partial))
		l.partial = nil
	}
	return len(p), nil
}

func (l *logSink) line(s string) {
	l.lines++
	for _, f := range forbiddenInLogs {
		if loc := f.re.FindStringIndex(s); loc != nil && len(l.findings) < 20 {
			l.findings = append(l.findings, fmt.Sprintf("line %d contains %s: %s", l.lines, f.what, redactLine(s, loc)))
		}
	}
	if l.kept.Len() < maxKeep {
		l.kept.WriteString(s)
		l.kept.WriteByte('\n')
		return
	}
	l.tail = append(l.tail, s)
	if len(l.tail) > 200 {
		l.tail = l.tail[len(l.tail)-100:]
	}
}

// redactLine shows the context of a finding without repeating the secret.
func redactLine(s string, loc []int) string {
	from, to := max(0, loc[0]-120), min(len(s), loc[1]+40)
	end := min(loc[0]+8, loc[1])
	return s[from:loc[0]] + s[loc[0]:end] + "…[redacted]…" + s[loc[1]:to]
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.kept.String()
	if len(l.tail) > 0 {
		out += "[...]\n" + strings.Join(l.tail, "\n") + "\n"
	}
	return out + string(l.partial)
}

func (l *logSink) Tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func (l *logSink) Findings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.findings...)
}

// Lines returns the kept lines that contain all of subs.
func (l *logSink) Lines(subs ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok && line != "" {
			out = append(out, line)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// HTTP helpers.

// client never follows redirects and never reuses a response's connection
// for another test's request in a way that matters (keep-alive is fine).
var client = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
	Dur    time.Duration
}

func (r *response) String() string {
	return fmt.Sprintf("HTTP %d %s", r.Status, truncate(string(r.Body), 600))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func do(t testing.TB, req *http.Request) *response {
	t.Helper()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: body, Dur: time.Since(start)}
}

func newRequest(t testing.TB, method, u, contentType string, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// exchangeBuddy posts to the Buddy-compatible endpoint.
func (s *sidecar) exchangeBuddy(t testing.TB, providerID, jwt string) *response {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"provider_id": providerID, "web_identity_token": jwt})
	return do(t, newRequest(t, http.MethodPost, s.URL+"/user/oidc/tokens", "application/json", string(body)))
}

// exchange8693 posts an RFC 8693 token exchange.
func (s *sidecar) exchange8693(t testing.TB, providerID, jwt, scope string) *response {
	t.Helper()
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {jwt},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
		"client_id":          {providerID},
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	return do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/token", "application/x-www-form-urlencoded", form.Encode()))
}

// mustExchange exchanges jwt at the Buddy endpoint and returns the token.
func (s *sidecar) mustExchange(t testing.TB, providerID, jwt string) string {
	t.Helper()
	r := s.exchangeBuddy(t, providerID, jwt)
	if r.Status != http.StatusOK {
		t.Fatalf("exchange for provider %s: %s", providerID, r)
	}
	return bareToken(t, r)
}

// call sends a proxied request with the token as a bearer credential.
func (s *sidecar) call(t testing.TB, method, path, tok string) *response {
	t.Helper()
	req := newRequest(t, method, s.URL+path, "", "")
	if method == http.MethodPost || method == http.MethodPatch {
		req = newRequest(t, method, s.URL+path, "application/json", `{"comment":"e2e"}`)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return do(t, req)
}

func (s *sidecar) revoke(t testing.TB, tok string) *response {
	t.Helper()
	return do(t, newRequest(t, http.MethodPost, s.URL+"/_sidecar/oauth2/revoke", "application/x-www-form-urlencoded",
		url.Values{"token": {tok}}.Encode()))
}

// introspect asks the admin listener about tok with the given admin
// credential ("" sends no Authorization header).
func (s *sidecar) introspect(t testing.TB, tok, admin string) *response {
	t.Helper()
	req := newRequest(t, http.MethodPost, s.AdminURL+"/_sidecar/oauth2/introspect", "application/x-www-form-urlencoded",
		url.Values{"token": {tok}}.Encode())
	if admin != "" {
		req.Header.Set("Authorization", "Bearer "+admin)
	}
	return do(t, req)
}

func (s *sidecar) readyz(t testing.TB) (int, map[string]any) {
	t.Helper()
	r := do(t, newRequest(t, http.MethodGet, s.AdminURL+"/readyz", "", ""))
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("/readyz: %v: %s", err, r.Body)
	}
	return r.Status, m
}

// metric returns the value of the sample whose name and labels start with
// series (e.g. `oidc_sidecar_policy_reloads_total{result="error"}`), 0 when
// absent.
func (s *sidecar) metric(t testing.TB, series string) float64 {
	t.Helper()
	r := do(t, newRequest(t, http.MethodGet, s.AdminURL+"/metrics", "", ""))
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %s", r)
	}
	return metricValue(string(r.Body), series)
}

func metricValue(text, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			if err == nil {
				return v
			}
		}
	}
	return 0
}

// bareToken reads the Buddy endpoint's answer: the token itself, unquoted
// (buddy_response: text, the default), or a JSON string (json_string).
func bareToken(t testing.TB, r *response) string {
	t.Helper()
	tok := string(r.Body)
	if strings.HasPrefix(tok, `"`) {
		if err := json.Unmarshal(r.Body, &tok); err != nil {
			t.Fatalf("exchange answer is neither a bare token nor a JSON string: %v: %s", err, r.Body)
		}
	}
	if !strings.HasPrefix(tok, "ocs_") || len(tok) != 53 {
		t.Fatalf("exchange answer %q is not an ocs_ token", truncate(tok, 20))
	}
	return tok
}

// errMessage returns errors[0].message of a Buddy-shaped error body,
// failing unless the body has exactly that shape.
func errMessage(t testing.TB, r *response) string {
	t.Helper()
	var b struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || len(b.Errors) != 1 {
		t.Fatalf("not a Buddy error body (%v): %s", err, r)
	}
	return b.Errors[0].Message
}

// oauthError returns the error and error_description of an RFC 6749 error.
func oauthError(t testing.TB, r *response) (string, string) {
	t.Helper()
	var b struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || b.Error == "" {
		t.Fatalf("not an OAuth error body (%v): %s", err, r)
	}
	return b.Error, b.Description
}

func jsonObject(t testing.TB, r *response) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("not a JSON object (%v): %s", err, r)
	}
	return m
}

// expectStatus fails unless r has the status.
func expectStatus(t testing.TB, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want HTTP %d", r, status)
	}
}

// expectError checks the status and that errors[0].message contains every
// one of wants.
func expectError(t testing.TB, r *response, status int, wants ...string) string {
	t.Helper()
	expectStatus(t, r, status)
	msg := errMessage(t, r)
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Fatalf("HTTP %d message %q does not contain %q", status, msg, w)
		}
	}
	return msg
}

// rawHTTP sends request bytes exactly as given on a new connection
// (nothing is cleaned or re-encoded client-side) and reads one response.
func rawHTTP(t testing.TB, addr, request string) *response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", firstLine(request), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: body, Dur: time.Since(start)}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// ---------------------------------------------------------------------------
// Misc.

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// await is testkit.Await under the name this package's tests use.
var await = testkit.Await

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// tokenKey is the Redis key holding tok's record.
func tokenKey(tok string) string { return keyPrefix + "tok:" + sha256Hex(tok) }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLogSinkFindsSecrets checks the detector every sidecar's output goes
// through: a clean audit line passes; each secret shape is reported once,
// redacted, even when a line arrives in pieces.
func TestLogSinkFindsSecrets(t *testing.T) {
	l := newLogSink()
	clean := `{"msg":"exchange","event":"exchange","token_hash_prefix":"0123456789ab","sub":"repo:octo-org/octo-repo:ref:refs/heads/main"}` + "\n"
	_, _ = l.Write([]byte(clean))
	if f := l.Findings(); len(f) != 0 {
		t.Fatalf("clean line flagged: %v", f)
	}
	tok := "ocs_" + strings.Repeat("A", 43) + "abcdef"
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ.c2ln"
	for _, line := range []string{
		`{"msg":"oops","token":"` + tok + `"}`,
		`{"msg":"oops","jwt":"` + jwt + `"}`,
		`{"msg":"oops","auth":"Bearer ` + upstreamToken + `"}`,
		`{"msg":"oops","auth":"` + adminToken + `"}`,
		"WARNING: DATA RACE",
		"panic: runtime error: index out of range",
	} {
		half := len(line) / 2
		_, _ = l.Write([]byte(line[:half]))
		_, _ = l.Write([]byte(line[half:] + "\n"))
	}
	f := l.Findings()
	if len(f) != 6 {
		t.Fatalf("%d findings, want 6: %v", len(f), f)
	}
	for _, s := range f {
		for _, secret := range []string{tok, jwt, upstreamToken, adminToken} {
			if strings.Contains(s, secret) {
				t.Errorf("a finding repeats the secret: %s", s)
			}
		}
	}
}
