package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestRefusedTokenNotLogged: a token refused because it was sent in the
// path or in X-Request-Id (token_in_request) is not written to the audit
// log either; the audit line shows where it was, not what it was.
func TestRefusedTokenNotLogged(t *testing.T) {
	f := newRig(t, token.NewMemory(nil))
	tok := f.mint(record("EXECUTION_INFO"))
	other, _, err := token.New()
	if err != nil {
		t.Fatal(err)
	}
	if r := f.do("GET", "/workspaces/acme/projects/"+other+"/pipelines/7/executions", tok, nil, nil); r.status != http.StatusBadRequest {
		t.Fatalf("token in the path: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/workspaces/acme/projects/web/repository/branches/"+other+"%2Fx", tok, nil, nil); r.status != http.StatusBadRequest {
		t.Fatalf("token in a branch name: %d %s", r.status, r.body)
	}
	if r := f.do("GET", runExecutions, tok, http.Header{"X-Request-Id": {other}}, nil); r.status != http.StatusBadRequest {
		t.Fatalf("token in X-Request-Id: %d %s", r.status, r.body)
	}
	f.wantUpstreamUntouched()
	f.waitAudit()
	if strings.Contains(f.audit.String(), other) || strings.Contains(f.logs.String(), other) {
		t.Fatalf("the refused token is in the logs:\naudit:\n%s\nlog:\n%s", f.audit.String(), f.logs.String())
	}
	lines := f.auditLines()
	if len(lines) != 3 {
		t.Fatalf("%d audit lines, want 3: %v", len(lines), lines)
	}
	if got, want := lines[0]["path"], "/workspaces/acme/projects/"+redactedToken+"/pipelines/7/executions"; got != want {
		t.Errorf("audit path %q, want %q", got, want)
	}
	if lines[0]["code"] != CodeTokenInRequest || lines[2]["code"] != CodeTokenInRequest || lines[2]["client_request_id"] != "" {
		t.Errorf("audit lines %v", lines)
	}
}

func TestLoggablePath(t *testing.T) {
	tok, _, _ := token.New()
	for in, want := range map[string]string{
		"/workspaces/acme/projects":                 "/workspaces/acme/projects",
		"/a/ocs_short/b":                            "/a/ocs_short/b",
		"/a/" + tok + "/b/" + tok:                   "/a/" + redactedToken + "/b/" + redactedToken,
		"/a/x" + tok + "y":                          "/a/x" + redactedToken + "y",
		"/a/" + strings.ReplaceAll(tok, "_", "%5F"): "/[redacted: the path holds a percent-encoded sidecar token]",
	} {
		if got := loggablePath(in); got != want {
			t.Errorf("loggablePath(%q) = %q, want %q", in, got, want)
		}
	}
}
