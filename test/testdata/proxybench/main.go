// Command proxybench is the peer of the cross-process proxy benchmark
// (test/proxy_overhead_test.go, issue #17), in one of two roles:
//
//	proxybench upstream   a minimal upstream API: GET of any path answers
//	                      200 with a fixed 140-byte JSON body when
//	                      Authorization is "Bearer $BUDDY_TOKEN", else 401
//	proxybench bare URL   a bare httputil.ReverseProxy in front of URL:
//	                      it swaps Authorization for "Bearer $BUDDY_TOKEN"
//	                      and sets X-Forwarded-*, with a transport keeping
//	                      256 idle connections per host and a pool of copy
//	                      buffers — the least a proxy that injects a
//	                      credential does; FlushInterval is Go's default
//	                      (responses of unknown length flushed after every
//	                      write, others with the handler's end)
//
// Each listens on a free loopback port, prints its address as the first
// line of its standard output, and serves until it is killed. With
// PROXYBENCH_PPROF=1 it also serves net/http/pprof on a second loopback
// port, printed on the second line. It lives in
// testdata so that `go build ./...`, `go vet ./...` and the architecture
// table ignore it; the benchmark builds it by its path.
package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // served only with PROXYBENCH_PPROF=1, on its own port
	"net/url"
	"os"
	"sync"
	"time"
)

// Body is what the upstream answers: 140 bytes of JSON, the size of the
// in-process benchmark's (sidecar/proxy/bench_test.go) answer.
const Body = `{"url":"https://api.buddy.works/workspaces/my-company/projects","projects":[{"name":"web","display_name":"Web","status":"ACTIVE"}],"n":1}   `

func main() {
	if len(os.Args) < 2 {
		fail("usage: proxybench upstream | proxybench bare URL")
	}
	cred := os.Getenv("BUDDY_TOKEN")
	if cred == "" {
		fail("BUDDY_TOKEN is empty: set the upstream credential")
	}
	var h http.Handler
	switch os.Args[1] {
	case "upstream":
		h = upstream(cred)
	case "bare":
		if len(os.Args) != 3 {
			fail("usage: proxybench bare URL")
		}
		u, err := url.Parse(os.Args[2])
		if err != nil || u.Host == "" {
			fail(fmt.Sprintf("bare: %q is not an upstream URL", os.Args[2]))
		}
		h = bare(u, cred)
	default:
		fail(fmt.Sprintf("unknown role %q: upstream or bare", os.Args[1]))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err.Error())
	}
	fmt.Println(ln.Addr().String())
	if os.Getenv("PROXYBENCH_PPROF") == "1" {
		// The benchmark's profile of the bare proxy, beside the sidecar's:
		// net/http/pprof on a second port, printed on the second line.
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(err.Error())
		}
		fmt.Println(pl.Addr().String())
		go func() { fail(http.Serve(pl, nil).Error()) }()
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fail(srv.Serve(ln).Error())
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "proxybench:", msg)
	os.Exit(2)
}

func upstream(cred string) http.Handler {
	want := "Bearer " + cred
	body := []byte(Body)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		if r.Header.Get("Authorization") != want {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"message":"Wrong authentication data"}]}`))
			return
		}
		_, _ = w.Write(body)
	})
}

func bare(u *url.URL, cred string) http.Handler {
	auth := []string{"Bearer " + cred}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Header["Authorization"] = auth
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		BufferPool: &pool{},
	}
}

// pool recycles ReverseProxy's 32 KiB copy buffers.
type pool struct{ p sync.Pool }

func (b *pool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *pool) Put(buf []byte) { b.p.Put(&buf) }
