package test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFramingAttacks (issue 11, item 1): the three ways the outside attack
// switched the framing guard off, replayed against the built binary with a
// logging upstream (the fake API records every request and body). Each must
// end with 400 and a closed connection, nothing unauthorized forwarded, and
// a WARN line with the reason.
func TestFramingAttacks(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), nil)
	attacker := s.mustExchange(t, ghID, w.ghToken(t, nil))
	victim := s.mustExchange(t, ghID, w.ghToken(t, nil))
	const (
		projects = "/workspaces/my-company/projects"
		run      = "/workspaces/my-company/projects/web/pipelines/7/executions"
		both     = "the request had both Content-Length and Transfer-Encoding headers"
		http10   = "the request is HTTP/1.0 but has a Transfer-Encoding header"
	)

	t.Run("both headers, then unparsable bytes in the same write", func(t *testing.T) {
		n := w.upstreamCount()
		c := dialSidecar(t, s.Addr)
		c.send("POST " + run + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + attacker +
			"\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGARBAGE\r\n\r\n")
		c.expectRefusal(t, both)
		w.expectUpstreamUntouched(t, n)
	})

	t.Run("HTTP/1.0 with Transfer-Encoding and its body in the same write", func(t *testing.T) {
		n := w.upstreamCount()
		c := dialSidecar(t, s.Addr)
		c.send("POST " + run + " HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nAuthorization: Bearer " + attacker +
			"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
		c.expectRefusal(t, http10)
		w.expectUpstreamUntouched(t, n)
	})

	t.Run("full smuggle: padded Content-Length, CL.TE, victim", func(t *testing.T) {
		// As a front proxy that frames by Content-Length would send it on
		// one backend connection: a request whose Content-Length line is
		// padded past 16 KiB (net/http trims it), a CL.TE request whose
		// Content-Length body hides a POST with Content-Length 99, then a
		// victim's request, whose request line and Authorization header
		// would become the smuggled POST's body.
		n := w.upstreamCount()
		smuggled := "POST " + run + "?SMUGGLED=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + attacker +
			"\r\nContent-Type: text/plain\r\nContent-Length: 99\r\n\r\n"
		body := "0\r\n\r\n" + smuggled
		padded := "GET " + projects + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + attacker +
			"\r\nContent-Length: 0" + strings.Repeat(" ", 17000) + "\r\n\r\n"
		clte := "POST " + run + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + attacker +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body
		victimReq := "GET " + projects + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + victim + "\r\n\r\n"
		c := dialSidecar(t, s.Addr)
		c.send(padded + clte)
		c.send(victimReq)
		resp, b := c.response(t)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the padded request (which net/http accepts): %d %s", resp.StatusCode, b)
		}
		c.expectRefusal(t, both)
		rs := w.upstreamSawOnly(t, n, victim)
		if len(rs) != 1 || rs[0].Method != http.MethodGet || rs[0].Path != projects {
			var got []string
			for _, r := range rs {
				got = append(got, r.Method+" "+r.Path+"?"+r.RawQuery)
			}
			t.Fatalf("the upstream received %v, want only the padded GET", got)
		}
		for _, r := range w.api.Requests()[n:] {
			if strings.Contains(r.RawQuery, "SMUGGLED") || strings.Contains(string(r.Body), victim) || strings.Contains(string(r.Body), "Authorization") {
				t.Fatalf("the smuggled request reached the upstream: %s %s?%s body %q", r.Method, r.Path, r.RawQuery, r.Body)
			}
		}
	})

	await(t, awaitTimeout, "the refusals to be logged", func() bool {
		return len(s.logs.Lines(`"level":"WARN"`, "cannot vouch for", `"reason":"ambiguous framing`)) >= 3
	})
}

// sidecarConn is one raw client connection.
type sidecarConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSidecar(t *testing.T, addr string) *sidecarConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &sidecarConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *sidecarConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sidecarConn) response(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// expectRefusal reads a 400 in Buddy's shape whose message starts with
// want, announcing Connection: close, and then the end of the connection:
// nothing sent after the refused request is answered.
func (c *sidecarConn) expectRefusal(t *testing.T, want string) {
	t.Helper()
	resp, body := c.response(t)
	var e struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) != 1 ||
		!strings.HasPrefix(e.Errors[0].Message, want) {
		t.Fatalf("got %d %s, want 400 %q", resp.StatusCode, body, want)
	}
	if !resp.Close {
		t.Error("the refusal does not close the connection")
	}
	rest, err := io.ReadAll(c.r)
	if len(rest) > 0 {
		t.Fatalf("the sidecar answered after the refused request: %q", rest)
	}
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("after the refusal: %v, want the connection closed", err)
	}
}
