package test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// TestAdversarialProxy sends hostile requests through the proxy. The token
// used for path tricks may act on workspace my-company only (scopes
// WORKSPACE, EXECUTION_RUN). Every request is sent on a raw TCP connection
// so that nothing is cleaned or re-encoded client-side, and each case
// asserts what the fake upstream received: nothing, or exactly the
// authorized request, byte for byte.
func TestAdversarialProxy(t *testing.T) {
	w := newWorld(t, worldOpts{})
	s := startSidecar(t, w.config(), nil)
	ctx := ctxT(t)

	ghTok := s.mustExchange(t, ghID, w.ghToken(t, nil))
	// Narrowed at the RFC 8693 endpoint: one level below EXECUTION_RUN.
	r := s.exchange8693(t, ghID, w.ghToken(t, nil), "WORKSPACE EXECUTION_INFO")
	expectStatus(t, r, http.StatusOK)
	infoTok, _ := jsonObject(t, r)["access_token"].(string)
	// The scopes in Buddy's 403 message are the token's, in its order.
	infoScopes := strings.ReplaceAll(jsonObject(t, r)["scope"].(string), " ", ", ")
	expiredTok := s.mustExchange(t, genID, sign(t, w.gen, w.genClaims()))
	revokedTok := s.mustExchange(t, genID, sign(t, w.gen, w.genClaims()))
	unknownTok, _, err := token.New() // well-formed, never issued
	if err != nil {
		t.Fatal(err)
	}
	ghJWT := w.ghToken(t, nil)

	// Expire one token through Redis's native expiry, revoke another; neither
	// has been used, so no proxy cache can hold them.
	w.rdb.PExpire(ctx, tokenKey(expiredTok), 50*time.Millisecond)
	await(t, awaitTimeout, "the token key to expire", func() bool { return w.rdb.Exists(ctx, tokenKey(expiredTok)).Val() == 0 })
	expectStatus(t, s.revoke(t, revokedTok), http.StatusOK)

	get := func(path, auth string) string {
		req := "GET " + path + " HTTP/1.1\r\nHost: " + s.Addr + "\r\n"
		if auth != "" {
			req += "Authorization: " + auth + "\r\n"
		}
		return req + "Connection: close\r\n\r\n"
	}
	post := func(path, tok string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: " + s.Addr + "\r\nAuthorization: Bearer " + tok +
			"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
	}
	bearer := func(tok string) string { return "Bearer " + tok }
	const (
		projects  = "/workspaces/my-company/projects"
		run       = "/workspaces/my-company/projects/web/pipelines/7/executions"
		wrongAuth = "Wrong authentication data"
	)

	cases := []struct {
		name    string
		req     string
		status  int
		want    string // substring of errors[0].message
		forward string // "" = the upstream must receive nothing; else the exact path it must receive
	}{
		// --- Authentication.
		{"no token", get(projects, ""), 401, wrongAuth, ""},
		{"garbage token", get(projects, bearer("garbage")), 401, wrongAuth, ""},
		{"well-formed token never issued", get(projects, bearer(unknownTok)), 401, wrongAuth, ""},
		{"token with a bad checksum", get(projects, bearer(ghTok[:len(ghTok)-1]+flip(ghTok[len(ghTok)-1]))), 401, wrongAuth, ""},
		{"the OIDC token itself", get(projects, bearer(ghJWT)), 401, wrongAuth, ""},
		{"the admin credential", get(projects, bearer(adminToken)), 401, wrongAuth, ""},
		{"the upstream credential", get(projects, bearer(upstreamToken)), 401, wrongAuth, ""},
		{"Basic scheme", get(projects, "Basic "+ghTok), 401, wrongAuth, ""},
		{"expired (Redis expiry)", get(projects, bearer(expiredTok)), 401, wrongAuth, ""},
		{"revoked", get(projects, bearer(revokedTok)), 401, wrongAuth, ""},
		{"conflicting header and query tokens", get(projects+"?access_token="+infoTok, bearer(ghTok)), 400, "two different access tokens", ""},

		// --- Authorization.
		{"scope one level too low (EXECUTION_INFO on run)", post(run, infoTok), 403,
			"Insufficient scopes. Your token has the following scopes: [" + infoScopes + "]. This request requires the following scopes: EXECUTION_RUN", ""},
		{"EXECUTION_INFO token reads executions", get(run, bearer(infoTok)), 200, "", run},
		{"another workspace", get("/workspaces/other-company/projects", bearer(ghTok)), 403, `Access to workspace "other-company" is not allowed`, ""},
		{"unknown route", get("/workspaces/my-company/secrets", bearer(ghTok)), 403, "is not in the sidecar's route table", ""},
		{"unknown route in another workspace", get("/workspaces/other-company/secrets", bearer(ghTok)), 403, "", ""},
		{"route under another method", "DELETE " + projects + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ghTok + "\r\nConnection: close\r\n\r\n", 405, "Method DELETE is not allowed", ""},
		{"route under another letter case", get("/Workspaces/my-company/projects", bearer(ghTok)), 400, "differs only in letter case", ""},
		{"another workspace in letter case", get("/workspaces/My-Company/projects", bearer(ghTok)), 403, `Access to workspace "My-Company" is not allowed`, ""},
		{"legacy access_token query is authorized and stripped", get(projects+"?access_token="+ghTok+"&page=2", ""), 200, "", projects},

		// --- Path tricks: nothing unauthorized may be reached.
		{"dot-dot into another workspace", get("/workspaces/my-company/../other-company/projects", bearer(ghTok)), 400, "dot segment", ""},
		{"dot-dot back into the allowed workspace", get("/workspaces/other-company/../my-company/projects", bearer(ghTok)), 400, "dot segment", ""},
		{"trailing dot-dot", get("/workspaces/my-company/projects/..", bearer(ghTok)), 400, "dot segment", ""},
		{"encoded slash %2F", get("/workspaces/my-company%2F..%2Fother-company/projects", bearer(ghTok)), 400, "encoded slash", ""},
		{"encoded slash %2f", get("/workspaces/my-company%2f..%2fother-company/projects", bearer(ghTok)), 400, "encoded slash", ""},
		{"workspace with an encoded slash", get("/workspaces/other-company%2Fprojects", bearer(ghTok)), 400, "encoded slash", ""},
		{"double slash", get("/workspaces//other-company/projects", bearer(ghTok)), 400, "empty segment", ""},
		{"leading double slash", get("//workspaces/my-company/projects", bearer(ghTok)), 400, "empty segment", ""},
		{"dot segment", get("/workspaces/./my-company/projects", bearer(ghTok)), 400, "dot segment", ""},
		{"trailing dot on the workspace", get("/workspaces/my-company./projects", bearer(ghTok)), 403, `Access to workspace "my-company." is not allowed`, ""},
		{"trailing dots on the workspace", get("/workspaces/my-company../projects", bearer(ghTok)), 403, `Access to workspace "my-company.." is not allowed`, ""},
		{"encoded dots %2e%2e", get("/workspaces/my-company/%2e%2e/other-company/projects", bearer(ghTok)), 400, "encoded dot", ""},
		{"encoded dots %2E%2E", get("/workspaces/my-company/%2E%2E/other-company/projects", bearer(ghTok)), 400, "encoded dot", ""},
		{"half-encoded dots .%2e", get("/workspaces/my-company/.%2e/other-company/projects", bearer(ghTok)), 400, "encoded dot", ""},
		{"double-encoded slash %252F", get("/workspaces/my-company%252F..%252Fother-company/projects", bearer(ghTok)), 400, "encoded percent", ""},
		{"backslash", get(`/workspaces/my-company\..\other-company/projects`, bearer(ghTok)), 400, "Invalid request path", ""},
		{"encoded backslash", get("/workspaces/my-company%5C..%5Cother-company/projects", bearer(ghTok)), 400, "encoded backslash", ""},
		{"semicolon path parameter", get("/workspaces/my-company;/../other-company/projects", bearer(ghTok)), 400, "';'", ""},
		{"encoded unreserved character", get("/workspaces/%6Dy-company/projects", bearer(ghTok)), 400, "needs no encoding", ""},
		{"fragment character", get("/workspaces/other-company/projects#/../../my-company/projects", bearer(ghTok)), 400, "", ""},
		{"query that looks like a path", get("/workspaces/other-company/projects?/../../my-company/projects", bearer(ghTok)), 403, `workspace "other-company"`, ""},
		{"overlong UTF-8 dots are a plain segment, forwarded verbatim", get("/workspaces/my-company/projects/%C0%AE%C0%AE/pipelines/7/executions", bearer(ghTok)), 200, "", "/workspaces/my-company/projects/%C0%AE%C0%AE/pipelines/7/executions"},
		{"trailing slash is removed", get(projects+"/", bearer(ghTok)), 200, "", projects},
		{"absolute-form target naming another host", "GET http://evil.example" + projects + " HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " + ghTok + "\r\nConnection: close\r\n\r\n", 200, "", projects},
		{"absolute-form target into another workspace", "GET http://evil.example/workspaces/other-company/projects HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " + ghTok + "\r\nConnection: close\r\n\r\n", 403, `workspace "other-company"`, ""},
		{"CONNECT", "CONNECT api.buddy.works:443 HTTP/1.1\r\nHost: api.buddy.works:443\r\nAuthorization: Bearer " + ghTok + "\r\nConnection: close\r\n\r\n", 405, "Method CONNECT is not supported", ""},
		// net/http answers OPTIONS * itself (200, empty); nothing is forwarded.
		{"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ghTok + "\r\nConnection: close\r\n\r\n", 200, "", ""},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := w.upstreamCount()
			r := rawHTTP(t, s.Addr, c.req)
			switch {
			case c.status == -1: // any refusal, as long as nothing is forwarded
				if r.Status < 400 {
					t.Fatalf("got %s, want a 4xx/5xx refusal", r)
				}
			default:
				expectStatus(t, r, c.status)
			}
			if c.want != "" {
				if msg := errMessage(t, r); !strings.Contains(msg, c.want) {
					t.Fatalf("message %q does not contain %q", msg, c.want)
				}
			}
			if c.forward == "" {
				w.expectUpstreamUntouched(t, n)
				return
			}
			rs := w.upstreamSawOnly(t, n, "")
			if len(rs) != 1 || rs[0].Path != c.forward {
				var got []string
				for _, x := range rs {
					got = append(got, x.Method+" "+x.Path)
				}
				t.Fatalf("upstream received %v, want exactly %s", got, c.forward)
			}
			if up := strings.TrimPrefix(w.apiSrv.URL, "http://"); rs[0].Host != up {
				t.Errorf("upstream Host %q, want %q", rs[0].Host, up)
			}
			if strings.Contains(rs[0].RawQuery, "access_token") {
				t.Errorf("the access_token query parameter was forwarded: %q", rs[0].RawQuery)
			}
		})
	}

	t.Run("request smuggling: Content-Length and Transfer-Encoding", func(t *testing.T) {
		// CL says the body runs into a second request; TE (which net/http
		// obeys, as RFC 9112 says) ends it at once. Whatever the sidecar
		// makes of it, the upstream must get at most the authorized POST,
		// never the smuggled GET on another workspace.
		n := w.upstreamCount()
		smuggled := "GET /workspaces/other-company/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ghTok + "\r\n\r\n"
		req := "POST " + run + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ghTok +
			"\r\nContent-Length: " + strconv.Itoa(5+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
		statuses := rawHTTPPipelined(t, s.Addr, req, 2)
		rs := w.upstreamSawOnly(t, n, ghTok)
		for _, x := range rs {
			if x.Method != "POST" || x.Path != run || len(x.Body) != 0 {
				t.Errorf("upstream received %s %s (%d body bytes); want only the authorized POST with an empty body", x.Method, x.Path, len(x.Body))
			}
			if len(x.Header.Values("Content-Length")) > 0 && len(x.Header.Values("Transfer-Encoding")) > 0 {
				t.Errorf("forwarded with both Content-Length and Transfer-Encoding")
			}
		}
		if len(statuses) == 2 && statuses[1] != http.StatusForbidden {
			t.Errorf("the smuggled request on another workspace was answered %d, want 403", statuses[1])
		}
		t.Logf("CL+TE: statuses %v on one connection; the upstream received %d request(s)", statuses, len(rs))
	})

	t.Run("client headers that must not reach the upstream as sent", func(t *testing.T) {
		n := w.upstreamCount()
		req := "GET " + projects + " HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " + ghTok +
			"\r\nX-OIDC-Sidecar-Provider: " + ccID + "\r\nX-Oidc-Sidecar-Scopes: EXECUTION_MANAGE\r\nX-Forwarded-For: 203.0.113.9\r\n" +
			"Forwarded: for=203.0.113.9\r\nConnection: close\r\n\r\n"
		expectStatus(t, rawHTTP(t, s.Addr, req), 200)
		rs := w.upstreamSawOnly(t, n, ghTok)
		if len(rs) != 1 {
			t.Fatalf("upstream received %d requests", len(rs))
		}
		h := rs[0].Header
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "x-oidc-sidecar-") {
				t.Errorf("client identity header %s reached the upstream", k)
			}
		}
		if xff := h.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want only the real client 127.0.0.1 (not a trusted proxy)", xff)
		}
		if f := h.Get("Forwarded"); strings.Contains(f, "203.0.113.9") {
			t.Errorf("a spoofed Forwarded header reached the upstream: %q", f)
		}
		if rs[0].Host == "evil.example" {
			t.Error("the client's Host reached the upstream")
		}
	})

	t.Run("a token's bytes never reach the upstream", func(t *testing.T) {
		// Every request the upstream has received during this test carried
		// exactly the upstream credential.
		w.upstreamSawOnly(t, 0, ghTok)
		w.upstreamSawOnly(t, 0, infoTok)
	})
}

// flip changes a base62 character into another one.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// rawHTTPPipelined writes request bytes on one connection and reads up to
// max responses (stopping at EOF or after 3 s of silence); it returns their
// statuses.
func rawHTTPPipelined(t *testing.T, addr, request string, max int) []int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var out []int
	for len(out) < max {
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
	return out
}
