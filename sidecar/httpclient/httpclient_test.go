package httpclient

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func limits(maxRedirects int, check func(*http.Request, []*http.Request) error) Limits {
	return Limits{Dial: time.Second, TLSHandshake: time.Second, ResponseHeader: time.Second, Total: 2 * time.Second,
		IdlePerHost: 1, MaxRedirects: maxRedirects, Redirect: check}
}

// TestRedirects: a chain longer than MaxRedirects fails, one within it is
// followed, and the Redirect check sees every hop and can refuse it.
func TestRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.URL.Path) - 1 // "/", "/a", "/aa", ...: hops so far
		if n < 3 {
			http.Redirect(w, r, r.URL.Path+"a", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	if resp, err := New(limits(4, nil)).Get(srv.URL + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("3 redirects with MaxRedirects 4: %v", err)
	} else {
		resp.Body.Close()
	}
	if _, err := New(limits(3, nil)).Get(srv.URL + "/"); err == nil || !strings.Contains(err.Error(), "too many redirects") {
		t.Fatalf("3 redirects with MaxRedirects 3: err %v, want too many redirects", err)
	}
	var seen int
	refuse := errors.New("refused")
	_, err := New(limits(5, func(req *http.Request, via []*http.Request) error {
		seen++
		if strings.HasSuffix(req.URL.Path, "/aa") {
			return refuse
		}
		return nil
	})).Get(srv.URL + "/")
	if !errors.Is(err, refuse) || seen != 2 {
		t.Fatalf("err %v after %d checks, want the check's error at the second hop", err, seen)
	}
}

// TestTotalTimeout: Total bounds the whole exchange.
func TestTotalTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	l := limits(1, nil)
	l.Total = 100 * time.Millisecond
	resp, err := New(l).Get(srv.URL)
	if err == nil {
		_, err = resp.Body.Read(make([]byte, 1))
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a body that never ends was read within Total")
	}
}
