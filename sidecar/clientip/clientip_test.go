package clientip

import (
	"net/http/httptest"
	"testing"
)

func TestIP(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's XFF is ignored", "203.0.113.5:4000", []string{"1.1.1.1"}, "203.0.113.5"},
		{"trusted proxy", "10.1.2.3:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"spoofed left entries are skipped", "10.1.2.3:4000", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"chain of trusted proxies", "10.1.2.3:4000", []string{"198.51.100.7, 192.0.2.1", "10.9.9.9"}, "198.51.100.7"},
		{"malformed entry stops the walk", "10.1.2.3:4000", []string{"198.51.100.7, garbage"}, "10.1.2.3"},
		{"ipv4-mapped peer", "[::ffff:203.0.113.9]:4000", nil, "203.0.113.9"},
		{"ipv6 peer", "[2001:db8::1]:4000", nil, "2001:db8::1"},
		{"trusted proxy, no XFF", "10.1.2.3:4000", nil, "10.1.2.3"},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = c.remote
		for _, x := range c.xff {
			req.Header.Add("X-Forwarded-For", x)
		}
		if got := r.IP(req).String(); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	if _, err := New([]string{"nope"}); err == nil {
		t.Error("New accepted a bad proxy address")
	}
	var zero *Resolver
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "10.1.2.3:1"
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := zero.IP(req).String(); got != "10.1.2.3" {
		t.Errorf("nil resolver trusted XFF: %s", got)
	}
}
