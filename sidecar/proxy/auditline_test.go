package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/logline"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestAuditLinesMatchSlog: the audit line written with Options.AuditLines
// (the server's fast path) is, byte for byte, the one the slog logger the
// server would otherwise use writes for the same request — once the values
// that differ between any two requests (times, ids, duration) are masked.
func TestAuditLinesMatchSlog(t *testing.T) {
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	viaSlog := newRig(t, st) // the server's logger: a JSONHandler, With("log", "audit")
	viaSlog.proxy.audit = slog.New(slog.NewJSONHandler(viaSlog.audit, nil)).With("log", "audit")
	viaLines := newRig(t, st, func(o *Options) {
		o.Audit = nil
	})
	viaLines.proxy.lines = logline.New(viaLines.audit, nil).With("log", "audit")

	rec := record("WORKSPACE", "EXECUTION_INFO")
	rec.Subject = "repo:octo-org/\"odd\"\trepo\u2028:ref:refs/heads/żółw" // escapes in a value
	tok := viaSlog.mint(rec)
	requests := []struct {
		method, target, tok string
		hdr                 http.Header
	}{
		{"GET", "/workspaces/acme/projects", tok, http.Header{"X-Request-Id": {"ci-run-42"}}}, // allowed
		{"GET", "/workspaces/acme/projects", "", nil},                                         // no token: 401
		{"GET", "/workspaces/other/projects", tok, nil},                                       // another workspace: 403
		{"GET", "/workspaces/acme/a%00b", tok, nil},                                           // invalid path: no decision
		{"DELETE", "/workspaces/acme/projects/web/pipelines/7", tok, nil},                     // scope missing
		{"GET", "/nowhere/in/the/table", tok, nil},                                            // unmatched
	}
	for _, r := range requests {
		a := viaSlog.do(r.method, r.target, r.tok, r.hdr, nil)
		b := viaLines.do(r.method, r.target, r.tok, r.hdr, nil)
		if a.status != b.status {
			t.Fatalf("%s %s: status %d via slog, %d via AuditLines", r.method, r.target, a.status, b.status)
		}
	}
	want, got := auditLines(t, viaSlog), auditLines(t, viaLines)
	if len(want) != len(requests) || len(got) != len(requests) {
		t.Fatalf("%d lines via slog, %d via AuditLines, want %d each", len(want), len(got), len(requests))
	}
	for i := range want {
		if mask(got[i]) != mask(want[i]) {
			t.Errorf("request %d: the lines differ\n AuditLines: %s\n       slog: %s", i+1, got[i], want[i])
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(got[i]), &m); err != nil || m["log"] != "audit" || m["event"] != "proxy" {
			t.Errorf("request %d: %v: %s", i+1, err, got[i])
		}
	}
	if !strings.Contains(got[0], `"client_request_id":"ci-run-42"`) || !strings.Contains(got[0], `"result":{"allow":true}`) {
		t.Errorf("the allowed request's line lacks its fields: %s", got[0])
	}
}

func auditLines(t *testing.T, f *rig) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(f.audit.String()), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

var varying = regexp.MustCompile(`"(time|timestamp|request_id|decision_id)":"[^"]*"|"duration_ms":[0-9.e-]+`)

func mask(line string) string { return varying.ReplaceAllString(line, `"$1":…`) }

// At log_level warn the audit line is off, through AuditLines as through
// the slog logger.
func TestAuditLinesFollowLevel(t *testing.T) {
	st := token.NewMemory(time.Now)
	t.Cleanup(func() { st.Close() })
	f := newRig(t, st, func(o *Options) { o.Audit = nil })
	f.proxy.lines = logline.New(f.audit, slog.LevelWarn).With("log", "audit")
	tok := f.mint(record("WORKSPACE"))
	if r := f.do("GET", "/workspaces/acme/projects", tok, nil, nil); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if s := f.audit.String(); s != "" {
		t.Fatalf("an audit line at log level warn: %s", s)
	}
}
