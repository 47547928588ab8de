package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// bothCLTE is a smuggling-shaped request: Content-Length and chunked.
	bothCLTE = "POST /user/oidc/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	// pipelinedGET follows it on the same connection.
	pipelinedGET = "GET /workspaces/acme/projects HTTP/1.1\r\nHost: x\r\n\r\n"
)

// rawConn is a client connection that writes raw bytes and reads responses.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, await)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(await))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// response reads one response and its body.
func (rc *rawConn) response() (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		rc.t.Fatalf("reading a response body: %v", err)
	}
	return resp, string(b)
}

// closed asserts that the server closed the connection and sent nothing
// more: the pipelined request after the refused one was never answered.
func (rc *rawConn) closed() {
	rc.t.Helper()
	b, err := io.ReadAll(rc.r)
	if len(b) > 0 {
		rc.t.Fatalf("the server answered after the refused request: %q", b)
	}
	if err != nil {
		rc.t.Fatalf("read after the refused request: %v, want EOF", err)
	}
}

// buddyMessage decodes {"errors":[{"message":...}]}.
func buddyMessage(t *testing.T, body string) string {
	t.Helper()
	var b struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil || len(b.Errors) != 1 {
		t.Fatalf("body %q is not Buddy's error shape: %v", body, err)
	}
	return b.Errors[0].Message
}

// TestNetHTTPHidesContentLengthWithChunked documents why the guard follows
// the raw framing: net/http accepts a request with both headers, removes
// Content-Length from Request.Header before the handler runs (nothing in
// the Request tells it was there), and keeps the connection open. If a Go
// release changes that, this test says so.
func TestNetHTTPHidesContentLengthWithChunked(t *testing.T) {
	type seen struct {
		cl            []string
		te            []string
		contentLength int64
	}
	var mu sync.Mutex
	var got []seen
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Header.Values("Content-Length"), r.TransferEncoding, r.ContentLength})
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer ts.Close()
	rc := dialRaw(t, ts.Listener.Addr().String())
	rc.send(bothCLTE + pipelinedGET)
	for range 2 {
		if resp, _ := rc.response(); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("handler saw %d requests, want 2 (net/http serves the pipelined one)", len(got))
	}
	if g := got[0]; g.cl != nil || !slices.Equal(g.te, []string{"chunked"}) || g.contentLength != -1 {
		t.Errorf("net/http shows the handler Content-Length %q, TransferEncoding %q, ContentLength %d; "+
			"want none, [chunked], -1 (if Content-Length is now visible, the framing scanner could go)", g.cl, g.te, g.contentLength)
	}
}

// TestAmbiguousFramingClosesConnection: on the sidecar's real listener, a
// request with both Content-Length and Transfer-Encoding gets 400 in Buddy's
// shape and the connection is closed; the request pipelined behind it is
// never answered.
func TestAmbiguousFramingClosesConnection(t *testing.T) {
	h := newRig(t, rigOptions{})
	cases := map[string]struct {
		req, want string
	}{
		"exchange endpoint": {bothCLTE, ambiguousFramingMessage},
		"proxied path": {"POST /workspaces/acme/projects HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			ambiguousFramingMessage},
		"header case and value case": {"POST /workspaces/acme/projects HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n",
			ambiguousFramingMessage},
		"folded Transfer-Encoding": {"POST /workspaces/acme/projects HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
			ambiguousFramingMessage},
		"bare LF line ends": {"POST /workspaces/acme/projects HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n",
			ambiguousFramingMessage},
		"classic smuggling body": {"POST /workspaces/acme/projects HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2e\r\nGET /admin HTTP/1.1\r\nHost: x\r\nX-Pad: 0123456\r\n\r\n0\r\n\r\n", ambiguousFramingMessage},
		"HTTP/1.0 with Transfer-Encoding": {"POST /workspaces/acme/projects HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
			http10TEMessage},
		"HTTP/1.0 with both": {"POST /workspaces/acme/projects HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			ambiguousFramingMessage},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := len(h.api.Requests())
			rc := dialRaw(t, h.srv.Addr())
			rc.send(tc.req + pipelinedGET)
			resp, body := rc.response()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if !resp.Close { // http.ReadResponse consumes the Connection: close header
				t.Errorf("response does not announce Connection: close: %v", resp.Header)
			}
			if msg := buddyMessage(t, body); msg != tc.want {
				t.Errorf("message\n got %s\nwant %s", msg, tc.want)
			}
			rc.closed()
			if n := len(h.api.Requests()) - before; n != 0 {
				t.Errorf("the upstream received %d requests", n)
			}
		})
	}
	if !strings.Contains(h.logs.String(), "ambiguous framing") {
		t.Errorf("no warning logged:\n%s", h.logs.String())
	}
}

// guardedServer serves handler behind the framing guard, wired as Serve
// wires the main listener.
func guardedServer(t *testing.T, handler http.Handler) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := &Server{log: NewLogger(logs, "debug")}
	ts := httptest.NewUnstartedServer(s.guardFraming(handler))
	ts.Listener = framingListener{Listener: ts.Listener, maxHeaderBytes: ts.Config.MaxHeaderBytes}
	ts.Config.ConnContext = framingConnContext
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, logs
}

// echo answers "<method> <request target> <body bytes read>"; it leaves the
// body unread (net/http then discards it) when the request has X-No-Read.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n := int64(-1)
	if r.Header.Get("X-No-Read") == "" {
		n, _ = io.Copy(io.Discard, r.Body)
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.RequestURI, n)
})

// TestFramingGuardKeepsNormalConnections: well-formed requests of every
// framing, one after the other or pipelined on one keep-alive connection,
// are all served as before and the connection stays open (the scanner keeps
// in step with net/http, including bodies that look like requests); a
// request with both headers at the end of the same connection is still
// caught.
func TestFramingGuardKeepsNormalConnections(t *testing.T) {
	ts, logs := guardedServer(t, echo)
	type exchange struct{ req, want string }
	chunkedBody := "GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
	steps := []exchange{
		{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a 0"},
		// chunked, with a chunk extension, a body that looks like a
		// request with both headers, and trailers
		{"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x;ext=\"v\"\r\n%s\r\n", len(chunkedBody), chunkedBody) +
			"3\r\nxyz\r\n0\r\nX-Trailer: 1\r\n\r\n", fmt.Sprintf("POST /b %d", len(chunkedBody)+3)},
		// the same, left unread by the handler: net/http discards it
		{"POST /c HTTP/1.1\r\nHost: x\r\nX-No-Read: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(bothCLTE), bothCLTE), "POST /c -1"},
		// a Content-Length body holding a request with both headers
		{fmt.Sprintf("POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(bothCLTE), bothCLTE), fmt.Sprintf("POST /d %d", len(bothCLTE))},
		{fmt.Sprintf("PUT /e HTTP/1.1\r\nHost: x\r\nX-No-Read: 1\r\nContent-Length: %d\r\n\r\n%s", len(bothCLTE), bothCLTE), "PUT /e -1"},
		// net/http answers OPTIONS * itself
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		// a long header that is neither Content-Length nor Transfer-Encoding,
		// and a long target
		{"GET /f HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 40000) + "\r\n\r\n", "GET /f 0"},
		{"GET /g" + strings.Repeat("g", 40000) + " HTTP/1.1\r\nHost: x\r\n\r\n", "GET /g" + strings.Repeat("g", 40000) + " 0"},
		// a Content-Length line padded past 16 KiB (net/http trims it)
		{"POST /j HTTP/1.1\r\nHost: x\r\nContent-Length: 2" + strings.Repeat(" ", 17000) + "\r\n\r\nok", "POST /j 2"},
		// empty lines after a POST body are tolerated
		{"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\r\n", "POST /h 2"},
		{"DELETE /i HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "DELETE /i 0"},
	}
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) {
			rc := dialRaw(t, ts.Listener.Addr().String())
			if pipelined {
				var all strings.Builder
				for _, st := range steps {
					all.WriteString(st.req)
				}
				rc.send(all.String())
			}
			for i, st := range steps {
				if !pipelined {
					rc.send(st.req)
				}
				resp, body := rc.response()
				if resp.StatusCode != 200 || resp.Close || body != st.want {
					t.Fatalf("request %d: %d close=%v %q, want 200 %q on an open connection", i, resp.StatusCode, resp.Close, body, st.want)
				}
			}
			rc.send(bothCLTE + pipelinedGET)
			if resp, body := rc.response(); resp.StatusCode != 400 || buddyMessage(t, body) != ambiguousFramingMessage || !resp.Close {
				t.Fatalf("request with both headers after %d good ones: %d %s", len(steps), resp.StatusCode, body)
			}
			rc.closed()
		})
	}
	if n := strings.Count(logs.String(), "ambiguous framing"); n != 2 {
		t.Errorf("%d warnings logged, want 2:\n%s", n, logs.String())
	}
}

// scanFeed feeds a stream to a scanner in pieces of n bytes (0: at once).
func scanFeed(stream string, n int) *framingScanner {
	sc := &framingScanner{}
	if n == 0 {
		sc.feed([]byte(stream))
		return sc
	}
	for len(stream) > 0 {
		k := min(n, len(stream))
		sc.feed([]byte(stream[:k]))
		stream = stream[k:]
	}
	return sc
}

func TestFramingScanner(t *testing.T) {
	long := "/" + strings.Repeat("a", 40000)
	postTE := []scannedHeader{{method: "POST", proto11: true, target: "/a", hasTE: true}}
	postCL := []scannedHeader{{method: "POST", proto11: true, target: "/a", hasCL: true}}
	cases := []struct {
		name   string
		stream string
		want   []scannedHeader
		broken bool
		state  scanState
	}{
		{name: "two GETs", stream: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?q=1 HTTP/1.1\r\n\r\n",
			want: []scannedHeader{{method: "GET", proto11: true, target: "/a"}, {method: "GET", proto11: true, target: "/b?q=1"}}},
		{name: "Content-Length body skipped", stream: "POST /a HTTP/1.1\r\nContent-Length: 30\r\n\r\nGET /fake HTTP/1.1\r\n\r\n12345678PUT /b HTTP/1.1\r\n\r\n",
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasCL: true}, {method: "PUT", proto11: true, target: "/b"}}},
		{name: "duplicate equal Content-Length", stream: "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length:  1 \r\n\r\nxGET /b HTTP/1.1\r\n\r\n",
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasCL: true}, {method: "GET", proto11: true, target: "/b"}}},
		{name: "chunked with extension and trailers", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3;x=y \r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\nU: 2\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasTE: true}, {method: "GET", proto11: true, target: "/b"}}},
		{name: "both headers, chunked wins", stream: "POST /a HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasCL: true, hasTE: true}, {method: "GET", proto11: true, target: "/b"}}},
		{name: "HTTP/1.0 ignores Transfer-Encoding", stream: "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\nGET /b HTTP/1.0\r\n\r\n",
			want: []scannedHeader{{method: "POST", target: "/a", hasCL: true, hasTE: true}, {method: "GET", target: "/b"}}},
		{name: "bare LF and folded field", stream: "POST /a HTTP/1.1\nX: 1\nTransfer-Encoding:\n\tchunked\n\n0\r\n\r\n\r\nGET /b HTTP/1.1\n\n",
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasTE: true}, {method: "GET", proto11: true, target: "/b"}}},
		{name: "long target kept whole", stream: "GET " + long + " HTTP/1.1\r\n\r\n",
			want: []scannedHeader{{method: "GET", proto11: true, target: long}}},
		{name: "waiting for the body", stream: "POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345",
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasCL: true}}, state: scanBody},
		// The scanner stops where it cannot follow; the headers it parsed
		// before that point stay queued (and are still checked).
		{name: "chunk line with bare LF", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", broken: true, want: postTE},
		{name: "chunk data without CRLF", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", broken: true, want: postTE},
		{name: "bad chunk size", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", broken: true, want: postTE},
		{name: "chunk size too long", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\n", broken: true, want: postTE},
		{name: "chunk line of 4094 bytes and CRLF", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", 4092) + "\r\nz\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
			want: append(postTE, scannedHeader{method: "GET", proto11: true, target: "/b"})},
		{name: "chunk line over net/http's 4096-byte buffer", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", 4093) + "\r\nz\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n", broken: true, want: postTE},
		{name: "chunk overhead over net/http's limit", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("x", 4000)+"\r\nz\r\n", 5), broken: true, want: postTE},
		{name: "trailer with a bare LF", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\r\n", broken: true, want: postTE},
		{name: "trailer longer than net/http's buffer", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: " + strings.Repeat("t", 4092) + "\r\n\r\n", broken: true, want: postTE},
		{name: "folded trailer", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n 2\r\n\r\n", broken: true, want: postTE},
		{name: "unsupported Transfer-Encoding", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", broken: true, want: postTE},
		{name: "two Transfer-Encoding fields", stream: "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", broken: true, want: postTE},
		{name: "differing Content-Length", stream: "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", broken: true, want: postCL},
		{name: "bad Content-Length", stream: "POST /a HTTP/1.1\r\nContent-Length: +1\r\n\r\n", broken: true, want: postCL},
		{name: "empty Content-Length", stream: "POST /a HTTP/1.1\r\nContent-Length: \r\n\r\n", broken: true, want: postCL},
		{name: "malformed request line", stream: "GARBAGE\r\n\r\n", broken: true},
		{name: "header without colon", stream: "GET /a HTTP/1.1\r\nNoColon\r\n\r\n", broken: true},
		{name: "fold before any field", stream: "GET /a HTTP/1.1\r\n folded: x\r\n\r\n", broken: true},
		// Issue 11's three ways around the old scanner.
		{name: "both headers, then garbage in the same write", stream: "POST /a HTTP/1.1\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGARBAGE\r\n", broken: true,
			want: []scannedHeader{{method: "POST", proto11: true, target: "/a", hasCL: true, hasTE: true}}},
		{name: "HTTP/1.0 with Transfer-Encoding and its body", stream: "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", broken: true,
			want: []scannedHeader{{method: "POST", target: "/a", hasTE: true}}},
		{name: "Content-Length padded past 16 KiB", stream: "POST /a HTTP/1.1\r\nContent-Length: 0" + strings.Repeat(" ", 17000) + "\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
			want: append(postCL, scannedHeader{method: "GET", proto11: true, target: "/b"})},
		// net/http skips up to four CR/LF bytes after a POST, and no others.
		{name: "four CR LF bytes after a POST", stream: "POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
			want: append(postCL, scannedHeader{method: "GET", proto11: true, target: "/b"})},
		{name: "five CR LF bytes after a POST", stream: "POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n\r\n\r\n\nGET /b HTTP/1.1\r\n\r\n", broken: true, want: postCL},
		{name: "empty line after a GET", stream: "GET /a HTTP/1.1\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n", broken: true,
			want: []scannedHeader{{method: "GET", proto11: true, target: "/a"}}},
	}
	for _, tc := range cases {
		for _, n := range []int{0, 1, 7} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, n), func(t *testing.T) {
				sc := scanFeed(tc.stream, n)
				if sc.broken != tc.broken {
					t.Fatalf("broken = %v (%s), want %v", sc.broken, sc.reason, tc.broken)
				}
				if !slices.Equal(sc.queue, tc.want) {
					t.Errorf("queue\n got %+v\nwant %+v", sc.queue, tc.want)
				}
				if !tc.broken && sc.state != tc.state {
					t.Errorf("state %d, want %d", sc.state, tc.state)
				}
			})
		}
	}
}

// TestFramingConnNext: the handler side matches requests to parsed headers,
// skips "OPTIONS *" (net/http answers it without a handler), and gives up
// on a mismatch instead of guessing.
func TestFramingConnNext(t *testing.T) {
	fc := &framingConn{}
	fc.sc.feed([]byte("OPTIONS * HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /c HTTP/1.1\r\n\r\n"))
	req := func(target string) *http.Request {
		return &http.Request{Method: http.MethodGet, RequestURI: target, ProtoMajor: 1, ProtoMinor: 1}
	}
	if h, reason := fc.next(req("/a")); reason != "" || h.hasCL || h.hasTE {
		t.Fatalf("/a: %+v %q", h, reason)
	}
	if h, reason := fc.next(req("/b")); reason != "" || !h.hasCL || !h.hasTE {
		t.Fatalf("/b: %+v %q", h, reason)
	}
	if _, reason := fc.next(req("/not-c")); reason != "the request differs from the one the scanner parsed" {
		t.Fatalf("a request that does not match the parsed header: reason %q", reason)
	}
	if _, reason := fc.next(req("/c")); reason == "" || !fc.sc.broken {
		t.Fatal("the scanner did not stop after a mismatch")
	}
	fc.sc.feed([]byte("GET /d HTTP/1.1\r\n\r\n"))
	if _, reason := fc.next(req("/d")); reason == "" || len(fc.sc.queue) != 0 {
		t.Fatal("a scanner that stopped came back")
	}

	// Headers parsed before the point where the scanner stopped are still
	// served (and checked); the request after it is refused.
	fc = &framingConn{}
	fc.sc.feed([]byte("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGARBAGE\r\n"))
	if !fc.sc.broken {
		t.Fatal("the scanner followed GARBAGE")
	}
	if h, reason := fc.next(req("/a")); reason != "" || h.hasTE {
		t.Fatalf("/a: %+v %q", h, reason)
	}
	if h, reason := fc.next(req("/b")); reason != "" || !h.hasCL || !h.hasTE {
		t.Fatalf("/b: %+v %q: the header with both fields was lost when the scanner stopped", h, reason)
	}
	if _, reason := fc.next(req("/x")); reason != "a malformed request line" {
		t.Fatalf("the request after the point the scanner stopped: reason %q", reason)
	}
}

func TestFramingConnCloseWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fl := framingListener{Listener: ln}
	done := make(chan error, 1)
	go func() {
		c, err := fl.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		cw, ok := c.(interface{ CloseWrite() error })
		if !ok {
			done <- errors.New("framingConn has no CloseWrite")
			return
		}
		done <- cw.CloseWrite()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(await))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after CloseWrite the client read %d, %v; want EOF (a half close)", n, err)
	}
}

// BenchmarkFramingScanner is the guard's cost per request on the main
// listener: scanning a typical proxied GET and a small exchange POST.
//
//	go test -run '^$' -bench FramingScanner -benchmem ./sidecar/server
func BenchmarkFramingScanner(b *testing.B) {
	get := []byte("GET /workspaces/acme/projects/web/pipelines/7/executions?page=1 HTTP/1.1\r\nHost: sidecar:8080\r\nUser-Agent: buddy-cli/1.0\r\nAuthorization: Bearer ocs_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n")
	post := []byte("POST /user/oidc/tokens HTTP/1.1\r\nHost: sidecar:8080\r\nContent-Type: application/json\r\nContent-Length: 1300\r\n\r\n" + strings.Repeat("x", 1300))
	for _, tc := range []struct {
		name string
		req  []byte
	}{{"GET", get}, {"POST-1.3KB", post}} {
		b.Run(tc.name, func(b *testing.B) {
			var sc framingScanner
			b.SetBytes(int64(len(tc.req)))
			b.ReportAllocs()
			for b.Loop() {
				sc.feed(tc.req)
				if len(sc.queue) > 0 {
					sc.queue = sc.queue[:0]
				}
			}
			if sc.broken {
				b.Fatal("the scanner gave up on a well-formed request")
			}
		})
	}
}

// FuzzFramingScanner: whatever the bytes and however they are split across
// reads, the scanner never panics, keeps its memory bounded, and comes to
// the same conclusion (broken or not, the same headers queued) as when it
// is fed everything at once.
//
//	go test -run '^$' -fuzz FuzzFramingScanner -fuzztime 60s ./sidecar/server
func FuzzFramingScanner(f *testing.F) {
	for _, s := range []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n",
		"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /a HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n\r\n",
	} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, stream string, split uint8) {
		whole := scanFeed(stream, 0)
		n := int(split%16) + 1
		parts := scanFeed(stream, n)
		if whole.broken != parts.broken {
			t.Fatalf("broken: at once %v, in %d-byte reads %v", whole.broken, n, parts.broken)
		}
		if !whole.broken && !slices.Equal(whole.queue, parts.queue) {
			t.Fatalf("queued: at once %+v, in %d-byte reads %+v", whole.queue, n, parts.queue)
		}
		for _, sc := range []*framingScanner{whole, parts} {
			if len(sc.queue) > maxScanQueue {
				t.Fatalf("%d headers queued, limit %d", len(sc.queue), maxScanQueue)
			}
			if cap(sc.line) > sc.maxHeader || cap(sc.field) > sc.maxHeader {
				t.Fatalf("line buffer %d, field %d bytes: unbounded", cap(sc.line), len(sc.field))
			}
		}
	})
}

// TestFramingGuardFailsClosed: when the scanner stops following a
// connection (here at a trailer line ending in a bare LF, which net/http
// tolerates), the request it parsed before that point is served, the next
// one net/http hands over is refused with 400, Connection: close and the
// reason, and a WARN line names the reason.
func TestFramingGuardFailsClosed(t *testing.T) {
	ts, logs := guardedServer(t, echo)
	rc := dialRaw(t, ts.Listener.Addr().String())
	rc.send("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\n" + pipelinedGET)
	if resp, body := rc.response(); resp.StatusCode != 200 || body != "POST /a 0" {
		t.Fatalf("the request before the point the scanner stopped: %d %q", resp.StatusCode, body)
	}
	resp, body := rc.response()
	want := fmt.Sprintf(unfollowableMessage, "a trailer line does not end with CRLF")
	if resp.StatusCode != 400 || !resp.Close || buddyMessage(t, body) != want {
		t.Fatalf("the request after it: %d close=%v %s; want 400, close, %q", resp.StatusCode, resp.Close, body, want)
	}
	rc.closed()
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), `"reason":"a trailer line does not end with CRLF"`) {
		t.Errorf("no WARN line with the reason:\n%s", logs.String())
	}
}

// TestFramingGuardFailsClosedWithoutWrapper: a server wired with the
// guard's ConnContext whose listener was not wrapped in framingListener
// refuses every request instead of serving it unchecked.
func TestFramingGuardFailsClosedWithoutWrapper(t *testing.T) {
	logs := &syncBuffer{}
	s := &Server{log: NewLogger(logs, "debug")}
	ts := httptest.NewUnstartedServer(s.guardFraming(echo))
	ts.Config.ConnContext = framingConnContext // but no framingListener
	ts.Start()
	t.Cleanup(ts.Close)
	resp, err := http.Get(ts.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "not followed by the framing guard") {
		t.Fatalf("unwrapped connection: %d %s, want 400 naming the missing guard", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("the response did not close the connection")
	}
	if !strings.Contains(logs.String(), "not followed by the framing guard") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
}
