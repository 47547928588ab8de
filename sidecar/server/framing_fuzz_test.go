package server

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// servedRequest is what a handler behind the framing guard saw.
type servedRequest struct {
	method, target string
	proto11        bool
	contentLength  int64
	chunked        bool
	read           bool // the handler read the body
	bodyLen        int
	bodyErr        error
}

// netHTTPRig is a real net/http server behind the framing guard, as Serve
// wires the main listener (MaxHeaderBytes 4096, the smallest the config
// allows, so the fuzzer reaches the header limit). Its handler records
// every request the guard lets through, per client connection.
type netHTTPRig struct {
	ts   *httptest.Server
	mu   sync.Mutex
	seen map[string]*rigConn // by the client's local address
}

type rigConn struct {
	readMask uint8
	served   []servedRequest
}

var (
	rigOnce sync.Once
	netRig  *netHTTPRig
)

func netHTTPFramingRig() *netHTTPRig {
	rigOnce.Do(func() {
		netRig = &netHTTPRig{seen: map[string]*rigConn{}}
		s := &Server{log: NewLogger(io.Discard, "error")}
		ts := httptest.NewUnstartedServer(s.guardFraming(http.HandlerFunc(netRig.handle)))
		ts.Config.MaxHeaderBytes = 4096
		ts.Config.ReadHeaderTimeout = 10 * time.Second
		ts.Config.ErrorLog = log.New(io.Discard, "", 0)
		ts.Listener = framingListener{Listener: ts.Listener, maxHeaderBytes: ts.Config.MaxHeaderBytes}
		ts.Config.ConnContext = framingConnContext
		ts.Start()
		netRig.ts = ts // never closed: it lives as long as the test binary
	})
	return netRig
}

func (g *netHTTPRig) handle(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	c := g.seen[r.RemoteAddr]
	g.mu.Unlock()
	if c == nil {
		http.Error(w, "unknown connection", http.StatusInternalServerError)
		return
	}
	s := servedRequest{method: r.Method, target: r.RequestURI, proto11: r.ProtoAtLeast(1, 1),
		contentLength: r.ContentLength, chunked: len(r.TransferEncoding) > 0}
	if i := len(c.served); i >= 8 || c.readMask&(1<<i) != 0 {
		b, err := io.ReadAll(r.Body)
		s.read, s.bodyLen, s.bodyErr = true, len(b), err
	}
	g.mu.Lock()
	c.served = append(c.served, s)
	g.mu.Unlock()
}

// serve sends stream on a fresh connection, half-closes it, waits until the
// server has closed it, and returns what the handler was given.
func (g *netHTTPRig) serve(t *testing.T, stream []byte, readMask uint8) []servedRequest {
	conn, err := net.Dial("tcp", g.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &rigConn{readMask: readMask}
	key := conn.LocalAddr().String()
	g.mu.Lock()
	g.seen[key] = c
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.seen, key)
		g.mu.Unlock()
	}()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(stream)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server neither answered nor closed the connection within 20s")
	}
	<-werr // the server may close before reading everything: a write error is fine
	g.mu.Lock()
	defer g.mu.Unlock()
	return c.served
}

// scanAll is the scanner's view of a whole stream: every request it parsed,
// in order, without the "OPTIONS *" ones net/http answers itself.
func scanAll(stream []byte) ([]scannedRequest, *framingScanner) {
	var recs []scannedRequest
	sc := &framingScanner{maxHeader: headerBudget(4096), record: &recs}
	sc.feed(stream)
	var out []scannedRequest
	for _, r := range recs {
		if r.method == http.MethodOptions && r.target == "*" {
			continue
		}
		out = append(out, r)
	}
	return out, sc
}

// checkFramingAgainstNetHTTP: every request that net/http hands to a
// handler through the guard is the request the scanner parsed at the same
// position, with the same framing and the same body length; a request whose
// framing is ambiguous never gets through; and after a body net/http could
// not read, nothing more is served. Otherwise the guard must have refused.
func checkFramingAgainstNetHTTP(t *testing.T, stream []byte, readMask uint8) {
	served := netHTTPFramingRig().serve(t, stream, readMask)
	scanned, sc := scanAll(stream)
	describe := func() string {
		return fmt.Sprintf("\nstream %q\nnet/http served (through the guard) %+v\nscanner parsed %+v (stopped: %v %s)", stream, served, scanned, sc.broken, sc.reason)
	}
	for i, s := range served {
		if i >= len(scanned) {
			t.Fatalf("request %d was served but the scanner never parsed it%s", i, describe())
		}
		h := scanned[i]
		if s.method != h.method || s.target != h.target || s.proto11 != h.proto11 {
			t.Fatalf("request %d: net/http saw %s %s, the scanner %s %s at that position%s", i, s.method, s.target, h.method, h.target, describe())
		}
		if h.hasCL && h.hasTE || h.hasTE && !h.proto11 {
			t.Fatalf("request %d with ambiguous framing was let through%s", i, describe())
		}
		if s.chunked != (h.hasTE && h.proto11) {
			t.Fatalf("request %d: chunked for net/http %v, for the scanner %v%s", i, s.chunked, h.hasTE, describe())
		}
		if !s.chunked && s.contentLength != h.bodyLen {
			t.Fatalf("request %d: Content-Length %d for net/http, %d for the scanner%s", i, s.contentLength, h.bodyLen, describe())
		}
		if s.read && s.bodyErr == nil && h.complete && int64(s.bodyLen) != h.bodyLen {
			t.Fatalf("request %d: net/http read a body of %d bytes, the scanner %d%s", i, s.bodyLen, h.bodyLen, describe())
		}
		if !h.complete && i != len(served)-1 {
			// The scanner stopped inside this request (stricter than
			// net/http, or where net/http failed too): it cannot know
			// where the next one starts.
			t.Fatalf("request %d: the scanner did not follow its body to the end, yet a later request was served%s", i, describe())
		}
		if s.read && s.bodyErr != nil && i != len(served)-1 {
			t.Fatalf("request %d: net/http could not read its body (%v), yet a later request was served%s", i, s.bodyErr, describe())
		}
	}
}

// FuzzFramingAgainstNetHTTP compares the framing scanner with net/http's
// own server on arbitrary byte streams: for any stream, the request
// boundaries the scanner sees equal net/http's, or the guard refuses the
// request (checkFramingAgainstNetHTTP). readMask picks which requests'
// bodies the handler reads (the others net/http discards itself).
//
//	go test -run '^$' -fuzz FuzzFramingAgainstNetHTTP -fuzztime 10m ./sidecar/server
func FuzzFramingAgainstNetHTTP(f *testing.F) {
	pad := strings.Repeat(" ", 17000)
	for _, s := range []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGARBAGE",
		"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0" + pad[:3000] + "\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2e\r\nPOST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /a HTTP/1.1\nHost: x\nContent-Length: 3\n\nabcDELETE /b HTTP/1.1\nHost: x\n\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("v", 8000) + "\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0xff))
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, stream []byte, readMask uint8) {
		checkFramingAgainstNetHTTP(t, stream, readMask)
	})
}
