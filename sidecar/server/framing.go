package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/apierr"
)

// RFC 9112 §6.1: a request with both Content-Length and Transfer-Encoding
// may be an attempt at request smuggling; a server that handles it anyway
// MUST close the connection after responding. The same goes for an
// HTTP/1.0 request with Transfer-Encoding (its framing is faulty).
//
// net/http accepts such a request (Transfer-Encoding wins) and keeps the
// connection open, and it deletes Content-Length (and Transfer-Encoding)
// from Request.Header before any handler runs, so a handler cannot see that
// the request carried both. The main listener therefore wraps each
// connection in a framingConn that follows the HTTP/1.x request framing of
// the bytes net/http reads (request line, header fields, Content-Length or
// chunked bodies, trailers) exactly as net/http parses it, and notes, for
// every request header, whether it had Content-Length and
// Transfer-Encoding. guardFraming then matches the k-th request a handler
// sees on a connection with the k-th header the scanner parsed (method and
// request target) and answers a request with ambiguous framing with 400
// and Connection: close.
//
// The guard fails closed. Its limits are at least net/http's (the header
// block may be as long as net/http's MaxHeaderBytes allowance, chunk lines
// and trailers as long as net/http's buffer), so nothing net/http accepts
// is beyond it. Wherever the scanner cannot follow the stream (bytes
// net/http would reject too: a malformed request line, a bad chunk, a
// trailer net/http refuses, ...), it stops there: the requests it parsed
// before that point are still checked, and every later request on the
// connection — one it cannot vouch for — gets 400 and the connection is
// closed. A request that does not match the header the scanner parsed
// is refused the same way. Every refusal is logged (WARN, with the reason).
// FuzzFramingAgainstNetHTTP checks that, for any byte stream, the scanner
// sees the same request boundaries as net/http or the request is refused.

// The 400 messages.
const (
	ambiguousFramingMessage = "the request had both Content-Length and Transfer-Encoding headers, which makes its length ambiguous (RFC 9112 section 6.1); send only one of them. The connection is closed."
	http10TEMessage         = "the request is HTTP/1.0 but has a Transfer-Encoding header, so its framing is faulty (RFC 9112 section 6.1); use HTTP/1.1, or Content-Length only. The connection is closed."
	unfollowableMessage     = "the sidecar could not follow the framing of the requests on this connection (%s), so it cannot tell where this request begins and ends; send well-formed HTTP/1.1 requests, each with a valid Content-Length or chunked body. The connection is closed."
)

// Scanner limits, as net/http's.
const (
	// headerSlack is added to the server's MaxHeaderBytes to bound one
	// request's header block: net/http allows MaxHeaderBytes + 4096 bytes
	// read from the wire for it, plus what its 4 KiB read buffer already
	// held when it started, so no header net/http accepts is longer.
	headerSlack = 4096 + 4096
	// bufioSize is the size of net/http's connection read buffer: a chunk
	// size line (with its CRLF) and a trailer (up to its final CRLF CRLF)
	// must fit in it.
	bufioSize = 4096
	// maxChunkExcess is net/http's bound on chunk overhead ("chunked
	// encoding contains too much non-data").
	maxChunkExcess = 16 << 10
	// maxScanQueue bounds the headers waiting for their handlers; net/http
	// reads at most 4 KiB ahead, so a real connection stays far below it.
	maxScanQueue     = 1024
	chunkLenMaxDigit = 16
)

// framingListener wraps accepted connections in framingConns.
type framingListener struct {
	net.Listener
	// maxHeaderBytes is the http.Server's MaxHeaderBytes (0: net/http's
	// default).
	maxHeaderBytes int
}

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c, sc: framingScanner{maxHeader: headerBudget(l.maxHeaderBytes)}}, nil
}

// headerBudget is the longest header block (request line, fields, final
// empty line) net/http can accept with this MaxHeaderBytes.
func headerBudget(maxHeaderBytes int) int {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	return maxHeaderBytes + headerSlack
}

// framingConn feeds everything net/http reads to a framingScanner.
type framingConn struct {
	net.Conn
	mu sync.Mutex
	sc framingScanner
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.sc.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// CloseWrite keeps net/http's graceful close (FIN, then a short wait
// before the full close) working through the wrapper.
func (c *framingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// next returns what the scanner saw in the header of r, the next request
// net/http hands to a handler on this connection. When the scanner has no
// such header (it stopped following the stream before r) or its header
// does not match r, next returns why, and the scanner stops for good.
func (c *framingConn) next(r *http.Request) (h scannedHeader, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := &c.sc
	// net/http answers "OPTIONS *" itself, without calling a handler.
	for len(sc.queue) > 0 && sc.queue[0].method == http.MethodOptions && sc.queue[0].target == "*" && !sc.queue[0].matches(r) {
		sc.queue = sc.queue[1:]
	}
	if len(sc.queue) == 0 {
		if !sc.broken {
			sc.stop("a request arrived that the scanner had not parsed")
		}
		return scannedHeader{}, sc.reason
	}
	h = sc.queue[0]
	sc.queue[0] = scannedHeader{}
	sc.queue = sc.queue[1:]
	if !h.matches(r) {
		const mismatch = "the request differs from the one the scanner parsed"
		sc.stop(mismatch)
		sc.queue = nil
		return scannedHeader{}, mismatch
	}
	return h, ""
}

type framingConnKey struct{}

// framingConnContext makes the connection's framingConn available to
// guardFraming (the main http.Server's ConnContext). A connection of the
// main server that is not a framingConn is recorded as such (a nil
// *framingConn), and guardFraming refuses its requests: the guard fails
// closed if the listener is ever composed without it.
func framingConnContext(ctx context.Context, c net.Conn) context.Context {
	fc, _ := c.(*framingConn)
	return context.WithValue(ctx, framingConnKey{}, fc)
}

// guardFraming answers 400 with Connection: close to a request whose
// header had both Content-Length and Transfer-Encoding (or
// Transfer-Encoding in HTTP/1.0), and to a request the scanner cannot vouch
// for. A request served by the main server on a connection that is not a
// framingConn is refused too; one served without the main server's
// ConnContext (a test's own server around Handler) passes.
func (s *Server) guardFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Context().Value(framingConnKey{})
		if v == nil {
			next.ServeHTTP(w, r)
			return
		}
		var h scannedHeader
		var reason string
		fc := v.(*framingConn)
		if fc == nil {
			reason = "the connection is not followed by the framing guard (the main listener was composed without it)"
		} else {
			h, reason = fc.next(r)
		}
		var msg string
		switch {
		case reason != "":
			msg = fmt.Sprintf(unfollowableMessage, reason)
		case h.hasTE && h.hasCL:
			msg, reason = ambiguousFramingMessage, "ambiguous framing: both Content-Length and Transfer-Encoding"
		case h.hasTE && !h.proto11:
			msg, reason = http10TEMessage, "ambiguous framing: Transfer-Encoding in HTTP/1.0"
		default:
			// net/http sets r.TLS only when the connection is a *tls.Conn,
			// which the framingConn hides: set it here, so the proxy knows
			// the request came over HTTPS (X-Forwarded-Proto).
			if r.TLS == nil && fc != nil {
				if tc, ok := fc.Conn.(*tlsServerConn); ok {
					st := tc.ConnectionState()
					r.TLS = &st
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		s.log.Warn("refused a request whose framing the sidecar cannot vouch for (possible request smuggling); closing the connection",
			"reason", reason, "remote", r.RemoteAddr, "method", r.Method, "proto", r.Proto,
			"content_length", h.hasCL, "transfer_encoding", h.hasTE)
		// net/http closes the connection after the response when the
		// handler sets Connection: close.
		w.Header().Set("Connection", "close")
		apierr.Write(w, http.StatusBadRequest, msg)
	})
}

// scannedHeader is what the scanner records for one request header.
type scannedHeader struct {
	method, target string
	proto11        bool // HTTP/1.1 or later
	hasCL, hasTE   bool
}

func (h scannedHeader) matches(r *http.Request) bool {
	return h.method == r.Method && h.target == r.RequestURI
}

// scannedRequest is one whole request as the scanner followed it (tests).
type scannedRequest struct {
	scannedHeader
	bodyLen  int64 // bytes of body content (chunk data for chunked bodies)
	complete bool  // the body (and trailer) ended
}

type scanState uint8

const (
	scanRequestLine scanState = iota
	scanHeaders
	scanBody      // remaining bytes of a Content-Length body
	scanChunkSize // a chunk-size line
	scanChunkData // remaining bytes of a chunk
	scanChunkCRLF // the CRLF after chunk data; crlf bytes seen so far
	scanTrailer   // trailer fields after the last chunk, up to an empty line
)

// framingScanner follows the framing of a stream of HTTP/1.x requests as
// net/http's server parses it. Not safe for concurrent use (framingConn
// locks).
type framingScanner struct {
	maxHeader int // longest header block net/http accepts; 0: headerBudget(0)

	state     scanState
	broken    bool
	reason    string // why the scanner stopped (safe to show: no request bytes)
	line      []byte // the current line, whole (bounded by maxHeader or bufioSize)
	hdrBytes  int    // bytes of the current header block so far
	remaining uint64 // scanBody, scanChunkData
	crlf      int    // scanChunkCRLF
	excess    int64  // chunk overhead, as net/http's chunkedReader counts it
	trailer   int    // bytes of trailer seen
	skipCRLF  int    // CR/LF bytes net/http still skips before a request line
	lastPOST  bool   // the previous request was a POST (net/http then skips up to 4 CR/LF bytes)

	cur      scannedHeader
	field    []byte   // the current header field, continuation lines joined
	cls, tes []string // Content-Length and Transfer-Encoding values

	queue []scannedHeader // parsed headers whose handlers have not run yet

	// record, when set (tests), receives every request the scanner parsed.
	record *[]scannedRequest
}

// stop makes the scanner give up on the rest of the stream; the headers
// already queued are still served (they were parsed before the point it
// could not follow).
func (sc *framingScanner) stop(reason string) {
	if sc.broken {
		return
	}
	sc.broken, sc.reason = true, reason
	sc.line, sc.field = nil, nil
}

// feed processes bytes in the order net/http read them.
func (sc *framingScanner) feed(p []byte) {
	if sc.maxHeader == 0 {
		sc.maxHeader = headerBudget(0)
	}
	for len(p) > 0 && !sc.broken {
		switch sc.state {
		case scanBody, scanChunkData:
			n := uint64(len(p))
			if n > sc.remaining {
				n = sc.remaining
			}
			sc.remaining -= n
			p = p[n:]
			if sc.remaining == 0 {
				if sc.state == scanBody {
					sc.endRequest()
				} else {
					sc.state, sc.crlf = scanChunkCRLF, 0
				}
			}
		case scanChunkCRLF:
			if p[0] != "\r\n"[sc.crlf] {
				sc.stop("a chunk of a chunked body is not followed by CRLF")
				return
			}
			p = p[1:]
			if sc.crlf++; sc.crlf == 2 {
				sc.state = scanChunkSize
			}
		default: // line-based states
			if sc.state == scanRequestLine && len(sc.line) == 0 && sc.skipCRLF > 0 {
				// net/http's tolerance for a CRLF after a POST body: it
				// skips the CR and LF bytes among the next four.
				if p[0] == '\r' || p[0] == '\n' {
					p = p[1:]
					sc.skipCRLF--
					continue
				}
				sc.skipCRLF = 0
			}
			var limit int
			switch sc.state {
			case scanRequestLine, scanHeaders:
				limit = sc.maxHeader - sc.hdrBytes
			case scanChunkSize:
				limit = bufioSize
			case scanTrailer:
				limit = bufioSize - sc.trailer
			}
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i+1]
			}
			if len(sc.line)+len(chunk) > limit {
				sc.stop(sc.tooLong())
				return
			}
			p = p[len(chunk):]
			if i < 0 {
				sc.line = append(sc.line, chunk...)
				continue
			}
			line := chunk
			if len(sc.line) > 0 {
				sc.line = append(sc.line, chunk...)
				line = sc.line
			}
			sc.endLine(line)
			if cap(sc.line) > bufioSize {
				sc.line = nil // a long line's buffer is not kept for the connection's life
			} else if !sc.broken {
				sc.line = sc.line[:0]
			}
		}
	}
}

func (sc *framingScanner) tooLong() string {
	switch sc.state {
	case scanChunkSize:
		return "a chunk size line is longer than 4096 bytes"
	case scanTrailer:
		return "the trailer of a chunked body is longer than 4096 bytes"
	}
	return "the request header is longer than the server accepts"
}

// endLine handles one complete line, including its '\n'. The line may be
// a sub-slice of the fed bytes: it must not be kept.
func (sc *framingScanner) endLine(raw []byte) {
	switch sc.state {
	case scanRequestLine:
		sc.hdrBytes = len(raw)
		// As net/http's readRequest and parseRequestLine.
		line := string(trimEOL(raw))
		method, rest, ok1 := strings.Cut(line, " ")
		target, proto, ok2 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || method == "" {
			sc.stop("a malformed request line")
			return
		}
		major, minor, ok := http.ParseHTTPVersion(proto)
		if !ok {
			sc.stop("a malformed HTTP version")
			return
		}
		sc.cur = scannedHeader{method: method, target: target, proto11: major > 1 || major == 1 && minor >= 1}
		sc.field, sc.cls, sc.tes = sc.field[:0], nil, nil
		sc.state = scanHeaders
	case scanHeaders:
		sc.hdrBytes += len(raw)
		line := trimEOL(raw)
		if len(line) == 0 {
			sc.endField()
			sc.endHeader()
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: net/textproto joins it to the previous field with
			// one space.
			if len(sc.field) == 0 {
				sc.stop("a header starts with a continuation line")
				return
			}
			sc.field = append(sc.field, ' ')
			sc.field = append(sc.field, trimASCII(line)...)
			return
		}
		sc.endField()
		if bytes.IndexByte(line, ':') < 0 {
			sc.stop("a header line without a colon")
			return
		}
		sc.field = append(sc.field[:0], trimASCII(line)...)
	case scanChunkSize:
		// As net/http/internal's chunkedReader: CRLF only, no other CR,
		// trailing whitespace and chunk extensions dropped, up to 16 hex
		// digits, at most 16 KiB of overhead beyond 16 bytes per chunk and
		// twice the data.
		if len(raw) < 2 || raw[len(raw)-2] != '\r' || bytes.IndexByte(raw, '\r') != len(raw)-2 {
			sc.stop("a chunk size line does not end with CRLF")
			return
		}
		line := raw[:len(raw)-2]
		sc.excess += int64(len(line)) + 2
		line = bytes.TrimRight(line, " \t")
		line, _, _ = bytes.Cut(line, []byte(";"))
		n, ok := parseChunkLen(line)
		if !ok {
			sc.stop("a malformed chunk size")
			return
		}
		// The same int64 arithmetic as net/http, wrap-around included.
		sc.excess -= 16 + (2 * int64(n))
		sc.excess = max(sc.excess, 0)
		if sc.excess > maxChunkExcess {
			sc.stop("a chunked body with too much non-data")
			return
		}
		if n == 0 {
			sc.state, sc.trailer = scanTrailer, 0
			return
		}
		sc.state, sc.remaining = scanChunkData, n
		if sc.record != nil {
			(*sc.record)[len(*sc.record)-1].bodyLen += int64(n)
		}
	case scanTrailer:
		// Stricter than net/http, never looser: fields each ending in CRLF
		// (no bare LF, no other CR, no folding), a valid name and value,
		// and the final empty line within net/http's 4 KiB peek.
		sc.trailer += len(raw)
		if len(raw) < 2 || raw[len(raw)-2] != '\r' || bytes.IndexByte(raw, '\r') != len(raw)-2 {
			sc.stop("a trailer line does not end with CRLF")
			return
		}
		line := raw[:len(raw)-2]
		if len(line) == 0 {
			sc.endRequest()
			return
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validFieldName(name) || !validFieldValue(value) {
			sc.stop("a malformed trailer field")
			return
		}
	}
}

// endField records a complete header field.
func (sc *framingScanner) endField() {
	if len(sc.field) == 0 {
		return
	}
	name, value, _ := bytes.Cut(sc.field, []byte(":"))
	sc.field = sc.field[:0]
	// net/textproto refuses names with bytes other than token characters
	// (and net/http's server those with spaces), so an exact ASCII
	// case-insensitive match is what net/http sees.
	isCL := asciiEqualFold(name, "Content-Length")
	isTE := asciiEqualFold(name, "Transfer-Encoding")
	if !isCL && !isTE {
		return
	}
	v := string(bytes.TrimLeft(value, " \t"))
	if isCL {
		sc.cur.hasCL = true
		sc.cls = append(sc.cls, v)
	} else {
		sc.cur.hasTE = true
		sc.tes = append(sc.tes, v)
	}
}

// endHeader queues the parsed header and picks the body framing as
// net/http does (transfer.go: readTransfer, parseTransferEncoding,
// fixLength, parseContentLength), in the same order.
func (sc *framingScanner) endHeader() {
	if len(sc.queue) >= maxScanQueue {
		sc.stop("too many pipelined requests")
		return
	}
	sc.queue = append(sc.queue, sc.cur)
	if sc.record != nil {
		*sc.record = append(*sc.record, scannedRequest{scannedHeader: sc.cur})
	}
	sc.lastPOST = sc.cur.method == http.MethodPost
	chunked := false
	if sc.cur.proto11 && len(sc.tes) > 0 {
		// net/http supports exactly one Transfer-Encoding field, "chunked";
		// anything else is a 501 and the connection is closed.
		if len(sc.tes) != 1 || !asciiEqualFold([]byte(trimASCIIString(sc.tes[0])), "chunked") {
			sc.stop("an unsupported Transfer-Encoding")
			return
		}
		chunked = true
	}
	// HTTP/1.0 ignores Transfer-Encoding; Content-Length is checked even
	// when the body is chunked.
	var n uint64
	if len(sc.cls) > 0 {
		first := trimASCIIString(sc.cls[0])
		for _, v := range sc.cls[1:] {
			if trimASCIIString(v) != first {
				sc.stop("differing Content-Length values")
				return
			}
		}
		var err error
		if n, err = strconv.ParseUint(first, 10, 63); err != nil {
			sc.stop("an invalid Content-Length")
			return
		}
	}
	switch {
	case chunked:
		sc.state, sc.excess = scanChunkSize, 0
	case n > 0:
		sc.state, sc.remaining = scanBody, n
		if sc.record != nil {
			(*sc.record)[len(*sc.record)-1].bodyLen = int64(n)
		}
	default:
		sc.endRequest()
	}
}

// endRequest is the end of a request's body (or of its header, without one).
func (sc *framingScanner) endRequest() {
	sc.state, sc.hdrBytes = scanRequestLine, 0
	if sc.lastPOST {
		sc.skipCRLF = 4
	}
	if sc.record != nil {
		(*sc.record)[len(*sc.record)-1].complete = true
	}
}

// trimEOL drops a line's "\n" or "\r\n" (as bufio.Reader.ReadLine).
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// trimASCII trims what net/textproto trims: space, tab, CR and LF.
func trimASCII(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
}

func trimASCIIString(s string) string {
	return strings.Trim(s, " \t\r\n")
}

// asciiEqualFold compares ASCII case-insensitively (no Unicode folding:
// net/http's header names are ASCII tokens).
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validFieldName: a non-empty RFC 9110 token.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validFieldValue: visible characters, space, tab and obs-text.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// parseChunkLen parses a chunk size as net/http/internal.parseHexUint.
func parseChunkLen(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > chunkLenMaxDigit {
		return 0, false
	}
	var n uint64
	for _, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(b)
	}
	return n, true
}
