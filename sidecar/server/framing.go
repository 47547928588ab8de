package server

import (
	"bytes"
	"context"
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
// connection in a framingConn that follows the HTTP/1.1 request framing of
// the bytes net/http reads (request line, header fields, Content-Length or
// chunked bodies, trailers) and notes, for every request header, whether it
// had Content-Length and Transfer-Encoding. guardFraming then matches the
// k-th request a handler sees on a connection with the k-th header the
// scanner parsed (checking method and request target) and answers such a
// request with 400 and Connection: close.
//
// The scanner mirrors net/http's framing rules. Wherever it cannot follow
// (malformed framing, which net/http answers by closing the connection
// anyway, or a request that does not match what it parsed) it gives up on
// that connection: requests are then served as net/http alone would, never
// refused.

// ambiguousFramingMessage and http10TEMessage are the 400 messages.
const (
	ambiguousFramingMessage = "the request had both Content-Length and Transfer-Encoding headers, which makes its length ambiguous (RFC 9112 section 6.1); send only one of them. The connection is closed."
	http10TEMessage         = "the request is HTTP/1.0 but has a Transfer-Encoding header, so its framing is faulty (RFC 9112 section 6.1); use HTTP/1.1, or Content-Length only. The connection is closed."
)

// Scanner limits. A line longer than maxScanLine is kept truncated (the
// request target is then matched by prefix; a truncated Content-Length or
// Transfer-Encoding field makes the scanner give up); more than
// maxScanQueue parsed headers waiting for their handlers make it give up.
const (
	maxScanLine      = 16 << 10
	maxScanQueue     = 256
	maxChunkLine     = 4096 // net/http's limit for a chunk-size line
	maxTrailerSize   = 4096 // net/http's bufio buffer bounds trailers
	chunkLenMaxDigit = 16
)

// framingListener wraps accepted connections in framingConns.
type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
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
// net/http hands to a handler on this connection; ok is false when the
// scanner has given up or does not agree with net/http about r.
func (c *framingConn) next(r *http.Request) (h scannedHeader, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := &c.sc
	if sc.broken || len(sc.queue) == 0 {
		sc.giveUp()
		return scannedHeader{}, false
	}
	// net/http answers "OPTIONS *" itself, without calling a handler.
	for len(sc.queue) > 1 && sc.queue[0].method == http.MethodOptions && sc.queue[0].target == "*" && !sc.queue[0].matches(r) {
		sc.queue = sc.queue[1:]
	}
	h = sc.queue[0]
	sc.queue[0] = scannedHeader{}
	sc.queue = sc.queue[1:]
	if !h.matches(r) {
		sc.giveUp()
		return scannedHeader{}, false
	}
	return h, true
}

type framingConnKey struct{}

// framingConnContext makes the connection's framingConn available to
// guardFraming (http.Server.ConnContext).
func framingConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingConnKey{}, fc)
	}
	return ctx
}

// guardFraming answers 400 with Connection: close to a request whose
// header had both Content-Length and Transfer-Encoding (or Transfer-Encoding
// in HTTP/1.0). Requests on connections that are not framingConns pass.
func (s *Server) guardFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc, _ := r.Context().Value(framingConnKey{}).(*framingConn)
		if fc == nil || r.ProtoMajor != 1 {
			next.ServeHTTP(w, r)
			return
		}
		h, ok := fc.next(r)
		if !ok || !h.hasTE || (!h.hasCL && r.ProtoAtLeast(1, 1)) {
			next.ServeHTTP(w, r)
			return
		}
		msg := ambiguousFramingMessage
		if !h.hasCL {
			msg = http10TEMessage
		}
		s.log.Warn("refused a request with ambiguous framing (possible request smuggling); closing the connection",
			"remote", r.RemoteAddr, "method", r.Method, "proto", r.Proto, "content_length", h.hasCL, "transfer_encoding", h.hasTE)
		// net/http closes the connection after the response when the
		// handler sets Connection: close.
		w.Header().Set("Connection", "close")
		apierr.Write(w, http.StatusBadRequest, msg)
	})
}

// scannedHeader is what the scanner records for one request header.
type scannedHeader struct {
	method, target string
	truncated      bool // target is a prefix of the real one
	hasCL, hasTE   bool
}

func (h scannedHeader) matches(r *http.Request) bool {
	if h.method != r.Method {
		return false
	}
	if h.truncated {
		return strings.HasPrefix(r.RequestURI, h.target)
	}
	return h.target == r.RequestURI
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
// net/http parses it. Not safe for concurrent use (framingConn locks).
type framingScanner struct {
	state     scanState
	broken    bool
	line      []byte // the current line, at most maxScanLine (or maxChunkLine) bytes
	lineLen   int    // the current line's full length
	remaining uint64 // scanBody, scanChunkData
	crlf      int    // scanChunkCRLF
	trailer   int    // bytes of trailer seen

	cur      scannedHeader
	proto11  bool     // the current request is HTTP/1.1 or later
	field    []byte   // the current header field, continuation lines joined
	fieldCut bool     // field was truncated
	cls, tes []string // Content-Length and Transfer-Encoding values

	queue []scannedHeader // parsed headers whose handlers have not run yet
}

func (sc *framingScanner) giveUp() {
	sc.broken = true
	sc.queue = nil
	sc.line, sc.field = nil, nil
}

// feed processes bytes in the order net/http read them.
func (sc *framingScanner) feed(p []byte) {
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
					sc.state = scanRequestLine
				} else {
					sc.state, sc.crlf = scanChunkCRLF, 0
				}
			}
		case scanChunkCRLF:
			if p[0] != "\r\n"[sc.crlf] {
				sc.giveUp() // net/http: "malformed chunked encoding"
				return
			}
			p = p[1:]
			if sc.crlf++; sc.crlf == 2 {
				sc.state = scanChunkSize
			}
		default: // line-based states
			limit := maxScanLine
			if sc.state == scanChunkSize {
				limit = maxChunkLine + 2
			}
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i+1]
			}
			if room := limit - len(sc.line); room > 0 {
				sc.line = append(sc.line, chunk[:min(room, len(chunk))]...)
			}
			sc.lineLen += len(chunk)
			p = p[len(chunk):]
			if i < 0 {
				if sc.state == scanChunkSize && sc.lineLen > limit {
					sc.giveUp() // net/http: line too long
				}
				continue
			}
			line, truncated := sc.line, sc.lineLen > len(sc.line)
			sc.line, sc.lineLen = sc.line[:0], 0
			sc.endLine(line, truncated)
		}
	}
}

// endLine handles one complete line, including its '\n' (unless truncated).
func (sc *framingScanner) endLine(raw []byte, truncated bool) {
	switch sc.state {
	case scanRequestLine:
		line := trimEOL(raw, truncated)
		if len(line) == 0 && !truncated {
			return // tolerate empty lines between requests
		}
		// As net/http's parseRequestLine.
		method, rest, ok1 := strings.Cut(string(line), " ")
		target, proto, ok2 := strings.Cut(rest, " ")
		if !ok1 {
			sc.giveUp() // net/http: malformed request line, 400 and close
			return
		}
		targetCut := false
		switch {
		case !truncated && !ok2:
			sc.giveUp()
			return
		case truncated && !ok2:
			// Only a prefix of the target was kept.
			target, targetCut, proto = rest, true, "HTTP/1.1"
		case truncated:
			// The whole target was kept but not the version: assume 1.1
			// (if wrong, the next request will not match and the scanner
			// gives up).
			proto = "HTTP/1.1"
		}
		major, minor, ok := http.ParseHTTPVersion(proto)
		if !ok {
			sc.giveUp()
			return
		}
		sc.cur = scannedHeader{method: method, target: target, truncated: targetCut}
		sc.proto11 = major > 1 || major == 1 && minor >= 1
		sc.field, sc.fieldCut, sc.cls, sc.tes = sc.field[:0], false, nil, nil
		sc.state = scanHeaders
	case scanHeaders:
		line := trimEOL(raw, truncated)
		if !truncated && len(line) == 0 {
			sc.endField()
			sc.endHeader()
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: net/textproto joins it to the previous field with
			// one space.
			if len(sc.field) == 0 {
				sc.giveUp() // net/http: malformed header, 400 and close
				return
			}
			sc.field = append(sc.field, ' ')
			sc.field = append(sc.field, trimASCII(line)...)
			sc.fieldCut = sc.fieldCut || truncated
			return
		}
		sc.endField()
		sc.field = append(sc.field[:0], trimASCII(line)...)
		sc.fieldCut = truncated
	case scanChunkSize:
		// As net/http/internal's chunkedReader: CRLF only, no other CR,
		// trailing whitespace and chunk extensions dropped, up to 16 hex
		// digits.
		if truncated || len(raw) < 2 || raw[len(raw)-2] != '\r' || bytes.IndexByte(raw, '\r') != len(raw)-2 {
			sc.giveUp()
			return
		}
		line := raw[:len(raw)-2]
		if len(line) >= maxChunkLine {
			sc.giveUp()
			return
		}
		line = bytes.TrimRight(line, " \t")
		line, _, _ = bytes.Cut(line, []byte(";"))
		n, ok := parseChunkLen(line)
		if !ok {
			sc.giveUp()
			return
		}
		if n == 0 {
			sc.state, sc.trailer = scanTrailer, 0
			return
		}
		sc.state, sc.remaining = scanChunkData, n
	case scanTrailer:
		sc.trailer += len(raw)
		if truncated || sc.trailer > maxTrailerSize {
			sc.giveUp()
			return
		}
		if len(trimEOL(raw, false)) == 0 {
			sc.state = scanRequestLine
		}
	}
}

// endField records a complete header field.
func (sc *framingScanner) endField() {
	if len(sc.field) == 0 {
		return
	}
	name, value, ok := bytes.Cut(sc.field, []byte(":"))
	sc.field = sc.field[:0]
	if !ok {
		sc.giveUp() // net/http: malformed header line, 400 and close
		return
	}
	// net/textproto rejects names with spaces or other invalid bytes, so an
	// exact case-insensitive match is what net/http sees.
	isCL := bytes.EqualFold(name, []byte("Content-Length"))
	isTE := bytes.EqualFold(name, []byte("Transfer-Encoding"))
	if !isCL && !isTE {
		return
	}
	if sc.fieldCut {
		sc.giveUp() // cannot know the value
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
// net/http does (transfer.go: parseTransferEncoding, fixLength).
func (sc *framingScanner) endHeader() {
	if sc.broken {
		return
	}
	if len(sc.queue) >= maxScanQueue {
		sc.giveUp()
		return
	}
	sc.queue = append(sc.queue, sc.cur)
	if sc.proto11 && len(sc.tes) > 0 {
		// net/http supports exactly one Transfer-Encoding field, "chunked";
		// anything else is a 501 and the connection is closed.
		if len(sc.tes) != 1 || !strings.EqualFold(sc.tes[0], "chunked") {
			sc.giveUp()
			return
		}
		sc.state = scanChunkSize
		return
	}
	// HTTP/1.0 ignores Transfer-Encoding; Content-Length decides.
	if len(sc.cls) == 0 {
		sc.state = scanRequestLine
		return
	}
	first := string(trimASCII([]byte(sc.cls[0])))
	for _, v := range sc.cls[1:] {
		if string(trimASCII([]byte(v))) != first {
			sc.giveUp() // net/http: multiple differing Content-Length, 400
			return
		}
	}
	n, err := strconv.ParseUint(first, 10, 63)
	if err != nil {
		sc.giveUp() // net/http: bad Content-Length, 400
		return
	}
	if n == 0 {
		sc.state = scanRequestLine
		return
	}
	sc.state, sc.remaining = scanBody, n
}

// trimEOL drops a complete line's "\n" or "\r\n" (as bufio.Reader.ReadLine).
func trimEOL(line []byte, truncated bool) []byte {
	if truncated {
		return line
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// trimASCII trims what net/textproto trims: space, tab, CR and LF.
func trimASCII(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
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
