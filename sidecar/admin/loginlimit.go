package admin

import (
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Failed console logins are limited per client address: after
// LoginFailures wrong credentials within LoginWindow, every login from that
// address (the right credential too, or guessing would go on) answers 429
// until the window ends. A successful login does not count and clears the
// address's failures.
const (
	LoginFailures = 10
	LoginWindow   = time.Minute
	// loginTracked caps the addresses tracked at once (memory stays
	// bounded whatever the number of addresses an attacker uses); past it,
	// the addresses not tracked share one budget, so the limit still holds.
	loginTracked = 10000
)

// loginLimiter counts failed logins per client address in fixed windows.
type loginLimiter struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[netip.Addr]*failures
	// overflow is the shared budget of the addresses not tracked while
	// the map is full.
	overflow failures
}

type failures struct {
	n     int
	start time.Time // the window's start
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, m: map[netip.Addr]*failures{}}
}

// loginKey is the address a login is counted under: the connection's peer
// (the admin listener does not read X-Forwarded-For), an IPv6 address by
// its /64, which one host usually holds whole.
func loginKey(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{} // no address (not a TCP peer): one shared key
	}
	a := ap.Addr().Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	return a
}

// entry returns a's failures in the current window; the lock is held.
func (l *loginLimiter) entry(a netip.Addr, now time.Time, create bool) *failures {
	f := l.m[a]
	if f == nil {
		if !create {
			return nil
		}
		if len(l.m) >= loginTracked {
			for k, v := range l.m { // drop the addresses whose window ended
				if now.Sub(v.start) >= LoginWindow {
					delete(l.m, k)
				}
			}
		}
		if len(l.m) >= loginTracked {
			f = &l.overflow
		} else {
			f = &failures{start: now}
			l.m[a] = f
		}
	}
	if now.Sub(f.start) >= LoginWindow {
		f.n, f.start = 0, now
	}
	return f
}

// blocked says how long a's logins are refused, or 0.
func (l *loginLimiter) blocked(a netip.Addr) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.m[a]
	if f == nil && len(l.m) >= loginTracked {
		f = &l.overflow
	}
	if f == nil || now.Sub(f.start) >= LoginWindow || f.n < LoginFailures {
		return 0
	}
	return f.start.Add(LoginWindow).Sub(now)
}

// fail counts a failed login from a.
func (l *loginLimiter) fail(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entry(a, l.now(), true).n++
}

// succeed clears a's failures.
func (l *loginLimiter) succeed(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, a)
}
