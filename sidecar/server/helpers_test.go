package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/fakeapi"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Provider IDs used by the tests.
const (
	provA = "550e8400-e29b-41d4-a716-446655440000"
	provB = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
)

// await is the deadline for anything the tests wait for: generous, so a
// loaded 2-core machine running -race does not flake.
const await = 20 * time.Second

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct{ testkit.SyncBuffer }

// lines returns the JSON log lines, decoded.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, l)
		}
		out = append(out, m)
	}
	return out
}

func randomSecret(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// providerSpec is one provider of a generated providers.yaml.
type providerSpec struct {
	id, name, issuer, conditions string
	scopes                       string // YAML flow list body, e.g. "WORKSPACE, EXECUTION_INFO"
}

func providersYAML(ps ...providerSpec) string {
	var b strings.Builder
	b.WriteString("providers:\n")
	for _, p := range ps {
		cond := p.conditions
		if cond == "" {
			cond = `repository_owner is "octo-org"`
		}
		scopes := p.scopes
		if scopes == "" {
			scopes = "WORKSPACE, EXECUTION_INFO"
		}
		fmt.Fprintf(&b, `  - id: %s
    name: %s
    type: other
    issuer: %s
    audience: Buddy
    lifetime: 10m
    trust_conditions: '%s'
    workspaces: [my-company]
    scopes: [%s]
`, p.id, p.name, p.issuer, cond, scopes)
	}
	return b.String()
}

// writeAtomic replaces path the way editors and `bundle build` do: write a
// temporary file in the same directory, then rename it over path.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// rig is a sidecar with its real components around it: a fake issuer,
// the fake Buddy API as upstream, captured logs.
type rig struct {
	t        *testing.T
	iss      *oidctest.Issuer
	api      *fakeapi.API
	upstream *httptest.Server
	dir      string
	provPath string
	cfg      *Config
	env      map[string]string
	srv      *Server
	logs     *syncBuffer
	audit    *syncBuffer
	base     string // http://main listener
	admin    string // http://admin listener
	client   *http.Client

	upstreamToken, adminToken string

	stop   context.CancelFunc
	served chan error
}

type rigOptions struct {
	configure func(h *rig)                    // before New: edit h.cfg, h.env, files
	upstream  func(http.Handler) http.Handler // wraps the fake API
	store     token.Store
}

// newRig builds the components and the configuration (providers.yaml
// with provider A on the fake issuer, watch on, rate limits off), applies
// o.configure, and starts the sidecar.
func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	h := newRigNoStart(t, o)
	h.start(o.store)
	return h
}

func newRigNoStart(t *testing.T, o rigOptions) *rig {
	t.Helper()
	iss := oidctest.Start(t, oidctest.WithRSA())
	h := &rig{
		t: t, iss: iss, dir: t.TempDir(), logs: &syncBuffer{}, audit: &syncBuffer{},
		upstreamToken: randomSecret("upstream-cred-"), adminToken: randomSecret("admin-cred-"),
		client: &http.Client{Timeout: await},
	}
	h.api = fakeapi.New(h.upstreamToken)
	var handler http.Handler = h.api
	if o.upstream != nil {
		handler = o.upstream(handler)
	}
	h.upstream = httptest.NewServer(handler)
	t.Cleanup(h.upstream.Close)

	h.provPath = filepath.Join(h.dir, "providers.yaml")
	writeAtomic(t, h.provPath, []byte(providersYAML(providerSpec{id: provA, name: "test A", issuer: iss.URL()})))
	cfg := Defaults()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Upstream.URL = h.upstream.URL
	cfg.Providers = h.provPath
	cfg.RateLimits.PerIP, cfg.RateLimits.PerProvider = 0, 0
	cfg.Timeouts.Shutdown = Duration(await)
	h.cfg = &cfg
	h.env = map[string]string{cfg.Upstream.TokenEnv: h.upstreamToken, cfg.AdminTokenEnv: h.adminToken}
	if o.configure != nil {
		o.configure(h)
	}
	return h
}

func (h *rig) options(store token.Store) Options {
	return Options{
		Logger: NewLogger(h.logs, "debug"),
		Audit:  slog.New(slog.NewJSONHandler(h.audit, nil)),
		Getenv: func(k string) string { return h.env[k] },
		Store:  store,
	}
}

// start runs New, Listen and Serve (in a goroutine); cleanup stops it and
// checks that Serve returned nil.
func (h *rig) start(store token.Store) {
	t := h.t
	t.Helper()
	srv, err := New(context.Background(), h.cfg, h.options(store))
	if err != nil {
		t.Fatalf("New: %v\nlogs:\n%s", err, h.logs.String())
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.base, h.admin = "http://"+srv.Addr(), "http://"+srv.AdminAddr()
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.served = make(chan error, 1)
	go func() { h.served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		if err := h.shutdown(); err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
}

// shutdown cancels Serve's context and waits for Serve to return (once).
func (h *rig) shutdown() error {
	if h.stop == nil {
		return nil
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.served:
		return err
	case <-time.After(2 * await):
		return fmt.Errorf("Serve did not return within %s of cancel", 2*await)
	}
}

// jwt signs a GitHub-like token for owner/repo on main.
func (h *rig) jwt(iss *oidctest.Issuer, owner string) string {
	h.t.Helper()
	return oidctest.MustSign(h.t, iss, oidctest.GitHubClaims(iss.URL(), "Buddy", owner+"/repo", "refs/heads/main", time.Now()))
}

// do sends a request and returns status and body; transport errors fail the test.
func (h *rig) do(method, url, bearer, contentType string, body io.Reader) (int, string) {
	h.t.Helper()
	status, b, err := h.try(method, url, bearer, contentType, body)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, b
}

func (h *rig) try(method, url, bearer, contentType string, body io.Reader) (int, string, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, "", err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// exchange posts a Buddy-style exchange; on 200 it returns the token.
func (h *rig) exchange(providerID, jwt string) (status int, body, tok string, err error) {
	b, _ := json.Marshal(map[string]string{"provider_id": providerID, "web_identity_token": jwt})
	status, body, err = h.try(http.MethodPost, h.base+"/user/oidc/tokens", "", "application/json", bytes.NewReader(b))
	if err == nil && status == http.StatusOK {
		// buddy_response: text (the default) is the bare token; json_string quotes it.
		tok = body
		if strings.HasPrefix(body, `"`) {
			_ = json.Unmarshal([]byte(body), &tok)
		}
	}
	return status, body, tok, err
}

// mustExchange exchanges a fresh token of iss for providerID and returns
// the sidecar token.
func (h *rig) mustExchange(iss *oidctest.Issuer, providerID string) string {
	h.t.Helper()
	status, body, tok, err := h.exchange(providerID, h.jwt(iss, "octo-org"))
	if err != nil || status != http.StatusOK || !token.WellFormed(tok) {
		h.t.Fatalf("exchange for %s: %d %s %v", providerID, status, body, err)
	}
	return tok
}

type readiness struct {
	Status          string   `json:"status"`
	Revision        string   `json:"revision"`
	Providers       int      `json:"providers"`
	Store           string   `json:"store"`
	LoadedAt        string   `json:"loaded_at"`
	Source          string   `json:"source"`
	LastReloadError string   `json:"last_reload_error"`
	Problems        []string `json:"problems"`
}

func (h *rig) readyz() (int, readiness) {
	h.t.Helper()
	status, body := h.do(http.MethodGet, h.admin+ReadyPath, "", "", nil)
	var r readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		h.t.Fatalf("/readyz body: %v: %s", err, body)
	}
	return status, r
}

// awaitReady polls /readyz until cond holds.
func (h *rig) awaitReady(what string, cond func(int, readiness) bool) readiness {
	h.t.Helper()
	deadline := time.Now().Add(await)
	for {
		status, r := h.readyz()
		if cond(status, r) {
			return r
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waited %s for %s; last /readyz: %d %+v\nlogs:\n%s", await, what, status, r, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *rig) revision() string {
	h.t.Helper()
	_, r := h.readyz()
	return r.Revision
}

func (h *rig) awaitRevisionChange(old string) string {
	h.t.Helper()
	return h.awaitReady("a revision other than "+old, func(_ int, r readiness) bool {
		return r.Revision != "" && r.Revision != old
	}).Revision
}

func (h *rig) metricsText() string {
	h.t.Helper()
	status, body := h.do(http.MethodGet, h.admin+MetricsPath, "", "", nil)
	if status != http.StatusOK {
		h.t.Fatalf("/metrics: %d", status)
	}
	return body
}

// metric returns the value of the sample name{labels...} (labels given
// as k, v pairs must match; others are ignored), summed over matches; -1
// when there is none.
func metric(text, name string, labels ...string) float64 {
	total, found := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, val := line[:i], line[i+1:]
		n, ls := series, ""
		if j := strings.IndexByte(series, '{'); j >= 0 {
			n, ls = series[:j], series[j:]
		}
		if n != name {
			continue
		}
		got := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(ls, -1) {
			got[m[1]] = m[2]
		}
		ok := true
		for k := 0; k+1 < len(labels); k += 2 {
			if got[labels[k]] != labels[k+1] {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		total += v
		found = true
	}
	if !found {
		return -1
	}
	return total
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// awaitMetric polls /metrics until cond holds for the sample's value.
func (h *rig) awaitMetric(what string, cond func(text string) bool) string {
	h.t.Helper()
	deadline := time.Now().Add(await)
	for {
		text := h.metricsText()
		if cond(text) {
			return text
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waited %s for %s\nlogs:\n%s", await, what, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *rig) reloadsTotal(result string) float64 {
	h.t.Helper()
	v := metric(h.metricsText(), "oidc_sidecar_policy_reloads_total", "result", result)
	if v < 0 {
		return 0
	}
	return v
}

// awaitReloadErrors waits until policy_reloads_total{result="error"} > n.
func (h *rig) awaitReloadErrors(n float64) {
	h.t.Helper()
	h.awaitMetric(fmt.Sprintf("policy_reloads_total{result=error} > %v", n), func(text string) bool {
		return metric(text, "oidc_sidecar_policy_reloads_total", "result", "error") > n
	})
}

// logHas reports whether some captured log line has every k, v pair.
func logHas(t *testing.T, buf *syncBuffer, kv ...string) bool {
	t.Helper()
	for _, l := range buf.lines(t) {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			s, _ := l[kv[i]].(string)
			if !strings.Contains(s, kv[i+1]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
