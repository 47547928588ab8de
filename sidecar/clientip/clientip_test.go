package clientip

import (
	"net"
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
		// An IPv6 zone is malformed in X-Forwarded-For: the walk stops.
		{"zoned XFF entry", "10.1.2.3:4000", []string{"fe80::1%eth0"}, "10.1.2.3"},
		{"zoned XFF entry right of a good one", "10.1.2.3:4000", []string{"198.51.100.7, fe80::1%eth0"}, "10.1.2.3"},
		{"zoned XFF entry left of a good one", "10.1.2.3:4000", []string{"fe80::1%25eth0, 198.51.100.7"}, "198.51.100.7"},
		{"zoned mapped XFF entry", "10.1.2.3:4000", []string{"::ffff:198.51.100.7%1"}, "10.1.2.3"},
		{"bracketed XFF entry", "10.1.2.3:4000", []string{"[2001:db8::1]"}, "10.1.2.3"},
		{"XFF entry with a port", "10.1.2.3:4000", []string{"198.51.100.7:80"}, "10.1.2.3"},
		// The peer's own zone (a link-local connection) is dropped.
		{"zoned peer", "[fe80::1%eth0]:4000", nil, "fe80::1"},
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
	if _, err := New([]string{"fe80::1%eth0"}); err == nil {
		t.Error("New accepted a trusted proxy with an IPv6 zone")
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

// FuzzIP: whatever the peer address and X-Forwarded-For, the address IP
// returns is one the policy can use: net.ParseIP reads its String form
// (that is how OPA's net.cidr_contains parses an address), and it has no
// IPv6 zone.
//
//	go test -run '^$' -fuzz FuzzIP -fuzztime 60s ./sidecar/clientip
func FuzzIP(f *testing.F) {
	r, err := New([]string{"10.0.0.0/8", "fe80::/10", "::1"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]string{
		{"10.1.2.3:4000", "198.51.100.7"},
		{"10.1.2.3:4000", "fe80::1%eth0"},
		{"[fe80::1%eth0]:4000", "fe80::2%lo, 2001:db8::1%x"},
		{"[::1]:1", "::ffff:1.2.3.4, 10.0.0.1"},
		{"[fe80::1%25eth0]:4000", "garbage"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", xff)
		a := r.IP(req)
		if !a.IsValid() {
			return // only when the peer address itself is not an address
		}
		if a.Zone() != "" || net.ParseIP(a.String()) == nil {
			t.Fatalf("IP returned %q (peer %q, X-Forwarded-For %q), which net.cidr_contains cannot read", a, remote, xff)
		}
	})
}
