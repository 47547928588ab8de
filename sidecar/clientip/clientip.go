// Package clientip decides which address a request came from: the
// connection's peer, or — only when that peer is a configured trusted proxy
// — the right-most untrusted address of X-Forwarded-For.
package clientip

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver resolves client addresses. The zero value trusts no proxy.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes X-Forwarded-For only from peers in
// trusted (CIDRs or single addresses).
func New(trusted []string) (*Resolver, error) {
	r := &Resolver{}
	for _, t := range trusted {
		p, err := parsePrefix(t)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %q is neither an IP address nor a CIDR", t)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("an IPv6 zone is not allowed")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IP returns the client address of req. IPv4-mapped IPv6 addresses are
// unmapped, and the result never has an IPv6 zone (its String form is
// what the policy's net.cidr_contains can read). It returns the invalid
// Addr only when the peer address itself cannot be parsed (never for a real
// TCP connection).
//
// An X-Forwarded-For entry that is not a plain IP address — garbage, a
// port, brackets, or an IPv6 zone identifier such as fe80::1%eth0 (only
// meaningful on the host that wrote it, and never written by a proxy) — is
// malformed: the walk stops there and nothing further left is believed.
// The peer's own zone (a link-local connection) is dropped.
func (r *Resolver) IP(req *http.Request) netip.Addr {
	peer := peerAddr(req.RemoteAddr)
	if !peer.IsValid() || r == nil || !r.isTrusted(peer) {
		return peer
	}
	// Walk X-Forwarded-For from the right: the last hop our trusted proxy
	// added first; stop at the first address that is not a trusted proxy.
	hops := req.Header.Values("X-Forwarded-For")
	var addrs []string
	for _, h := range hops {
		addrs = append(addrs, strings.Split(h, ",")...)
	}
	client := peer
	for i := len(addrs) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(addrs[i]))
		if err != nil || a.Zone() != "" {
			break // a malformed entry: trust nothing further left
		}
		client = a.Unmap()
		if !r.isTrusted(client) {
			break
		}
	}
	return client
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
