package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestMalformedChunkedBody: an authorized request whose chunked body cannot
// be read (a chunk size that overflows, a bare LF in a chunk extension) is
// the client's fault: 400 invalid_body in Buddy's shape, not 502
// upstream_unreachable; the audit line says invalid_body.
func TestMalformedChunkedBody(t *testing.T) {
	f := newRig(t, token.NewMemory(time.Now))
	tok := f.mint(record("EXECUTION_MANAGE"))
	for name, body := range map[string]string{
		"chunk size overflow":          "fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
		"bare LF in a chunk extension": "5;ext\nhello\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := "POST " + runExecutions + " HTTP/1.1\r\nHost: sidecar.test\r\nAuthorization: Bearer " + tok +
				"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(b), `{"errors":[{"message":"Invalid request body: it could not be read (`) {
				t.Fatalf("%d %s, want 400 Invalid request body", res.StatusCode, b)
			}
		})
	}
	lines := f.auditLines()
	if len(lines) != 2 {
		t.Fatalf("%d audit lines, want 2", len(lines))
	}
	for _, l := range lines {
		if l["code"] != CodeInvalidBody || l["status"] != float64(http.StatusBadRequest) {
			t.Errorf("audit line %v, want code invalid_body, status 400", l)
		}
	}
	// A well-formed chunked body still goes through.
	if r := f.do("POST", runExecutions, tok, nil, io.MultiReader(strings.NewReader("{}"))); r.status != http.StatusOK {
		t.Fatalf("a well-formed chunked body: %d %s", r.status, r.body)
	}
}
