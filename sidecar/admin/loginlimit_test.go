package admin

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func postLogin(t *testing.T, rg *rig, cred string) (int, http.Header, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(rg.srv.URL+"/login", url.Values{"credential": {cred}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, b.String()
}

// TestLoginFailuresLimited: after LoginFailures wrong credentials from one
// address within a minute, its logins answer 429 with Retry-After and a
// message that says why, the right credential too (or guessing would go
// on); a successful login before that clears the count.
func TestLoginFailuresLimited(t *testing.T) {
	rg := newRig(t, fixtureYAML)
	for i := 0; i < LoginFailures-1; i++ {
		if st, _, _ := postLogin(t, rg, "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, st)
		}
	}
	if st, _, _ := postLogin(t, rg, adminToken); st != http.StatusSeeOther {
		t.Fatalf("right credential after %d failures: %d, want 303", LoginFailures-1, st)
	}
	// The success cleared the count: LoginFailures more failures are 401.
	for i := 0; i < LoginFailures; i++ {
		if st, _, body := postLogin(t, rg, "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("failure %d after a success: %d, want 401 %s", i+1, st, body)
		}
	}
	for _, cred := range []string{"wrong", adminToken} {
		st, h, body := postLogin(t, rg, cred)
		if st != http.StatusTooManyRequests {
			t.Fatalf("login (%s) after %d failures: %d, want 429", cred, LoginFailures, st)
		}
		secs, err := strconv.Atoi(h.Get("Retry-After"))
		if err != nil || secs < 1 || secs > int(LoginWindow/time.Second) {
			t.Errorf("Retry-After %q, want 1..60 seconds", h.Get("Retry-After"))
		}
		if !strings.Contains(body, "too many failed logins from your address") {
			t.Errorf("429 body does not say why:\n%s", body)
		}
		if h.Get("Set-Cookie") != "" {
			t.Errorf("a refused login set a cookie: %s", h.Get("Set-Cookie"))
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestLoginLimiterWindowAndAddresses(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLoginLimiter(clk.now)
	key := func(remote string) netip.Addr {
		r := httptest.NewRequest("POST", "/login", nil)
		r.RemoteAddr = remote
		return loginKey(r)
	}
	a := key("192.0.2.1:5000")
	if key("192.0.2.1:6000") != a || key("[::ffff:192.0.2.1]:1") != a {
		t.Error("one IPv4 client under several ports or spellings is not one key")
	}
	if key("[2001:db8::1]:1") != key("[2001:db8::ffff:2]:2") {
		t.Error("two addresses of one IPv6 /64 are not one key")
	}
	if key("[2001:db8::1]:1") == key("[2001:db8:0:1::1]:1") {
		t.Error("two IPv6 /64s are one key")
	}
	for i := 0; i < LoginFailures; i++ {
		if l.blocked(a) != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail(a)
		clk.t = clk.t.Add(time.Second)
	}
	if d := l.blocked(a); d != LoginWindow-LoginFailures*time.Second {
		t.Fatalf("blocked for %s, want %s", d, LoginWindow-LoginFailures*time.Second)
	}
	if l.blocked(key("192.0.2.2:1")) != 0 {
		t.Error("another address is blocked")
	}
	clk.t = clk.t.Add(LoginWindow)
	if l.blocked(a) != 0 {
		t.Error("still blocked after the window")
	}
}

// TestLoginLimiterBounded: however many addresses fail, at most
// loginTracked are tracked, and the addresses past the cap share one
// budget, so they are limited too.
func TestLoginLimiterBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLoginLimiter(clk.now)
	base := netip.MustParseAddr("10.0.0.0")
	a := base
	for i := 0; i < loginTracked+LoginFailures; i++ {
		a = a.Next()
		l.fail(a)
	}
	if len(l.m) > loginTracked {
		t.Fatalf("%d addresses tracked, cap %d", len(l.m), loginTracked)
	}
	if l.blocked(a.Next()) == 0 {
		t.Error("an untracked address past the cap is not limited by the shared budget")
	}
	// Once the windows end, the map is pruned and new addresses are tracked again.
	clk.t = clk.t.Add(LoginWindow)
	l.fail(a.Next())
	if len(l.m) != 1 || l.blocked(a.Next().Next()) != 0 {
		t.Errorf("after the window: %d tracked, want 1; a new address blocked: %v", len(l.m), l.blocked(a.Next().Next()))
	}
}
