package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlowExchangeBody (issue 11, item 11): an exchange, revocation or RFC
// 8693 body trickled one byte at a time gets 408 with a message that says
// so once timeouts.exchange_body has passed (here 300ms, not the 5-minute
// timeouts.read), and the connection is closed.
func TestSlowExchangeBody(t *testing.T) {
	h := newRig(t, rigOptions{configure: func(h *rig) {
		h.cfg.Timeouts.ExchangeBody = Duration(300 * time.Millisecond)
	}})
	cases := []struct {
		path, contentType string
		oauth             bool
	}{
		{"/user/oidc/tokens", "application/json", false},
		{"/_sidecar/oauth2/token", "application/x-www-form-urlencoded", true},
		{"/_sidecar/oauth2/revoke", "application/x-www-form-urlencoded", true},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			rc := dialRaw(t, h.srv.Addr())
			rc.send("POST " + c.path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + c.contentType + "\r\nContent-Length: 1000\r\n\r\n{")
			// One byte every 50ms: the body would take 50s.
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := rc.c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			defer func() { close(stop); <-done }()
			resp, body := rc.response()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408; body %s", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Error("the response does not close the connection")
			}
			var msg string
			if c.oauth {
				var e struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "invalid_request" {
					t.Fatalf("body %s is not an RFC 6749 error", body)
				}
				msg = e.Description
			} else {
				msg = buddyMessage(t, body)
			}
			if !strings.Contains(msg, "the request body did not arrive within 300ms") || !strings.Contains(msg, "send the whole body at once") {
				t.Errorf("message %q", msg)
			}
			// The server closed the connection: reading ends (EOF, or a reset
			// because the client kept writing).
			if _, err := io.ReadAll(rc.r); err != nil && !strings.Contains(err.Error(), "reset") {
				t.Errorf("after the 408 the connection stayed open: %v", err)
			}
		})
	}
	// A body sent in pieces within the timeout is read as usual.
	rc := dialRaw(t, h.srv.Addr())
	body := `{"provider_id":"` + provA + `","web_identity_token":"` + h.jwt(h.iss, "octo-org") + `"}`
	rc.send("POST /user/oidc/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body[:10])
	rc.send(body[10:])
	if resp, b := rc.response(); resp.StatusCode != http.StatusOK {
		t.Fatalf("a body in two writes: %d %s", resp.StatusCode, b)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestNoRouteTargets (issue 11, item 14): CONNECT, and a target that is no
// path, get Buddy's JSON error shape from the main listener, not mux's
// plain-text 404, and nothing is forwarded.
func TestNoRouteTargets(t *testing.T) {
	h := newRig(t, rigOptions{})
	before := len(h.api.Requests())
	cases := []struct {
		req    string
		status int
		want   string
	}{
		{"CONNECT api.buddy.works:443 HTTP/1.1\r\nHost: api.buddy.works:443\r\n\r\n", 405, "Method CONNECT is not supported"},
		{"CONNECT /workspaces/acme/projects HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Method CONNECT is not supported"},
		{"GET http://evil.example HTTP/1.1\r\nHost: evil.example\r\n\r\n", 400, "the path must be absolute"},
	}
	for _, c := range cases {
		rc := dialRaw(t, h.srv.Addr())
		rc.send(c.req)
		resp, body := rc.response()
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%q: %d %s %s, want %d in Buddy's shape", c.req, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status)
			continue
		}
		if msg := buddyMessage(t, body); !strings.Contains(msg, c.want) {
			t.Errorf("%q: message %q", c.req, msg)
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%q: no X-Request-Id (the proxy did not answer)", c.req)
		}
	}
	if n := len(h.api.Requests()) - before; n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
}

// TestExchangeBodyTimeoutConfig: timeouts.exchange_body defaults to 5s and
// must be positive.
func TestExchangeBodyTimeoutConfig(t *testing.T) {
	c, err := ParseConfig("sidecar.yaml", []byte("upstream: {url: http://x}\nproviders: p.yaml\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeouts.ExchangeBody.D() != 5*time.Second {
		t.Errorf("default exchange_body %s", c.Timeouts.ExchangeBody.D())
	}
	for _, v := range []string{"0s", "-1s", "2m"} {
		_, err := ParseConfig("sidecar.yaml", []byte("upstream: {url: http://x}\nproviders: p.yaml\ntimeouts: {exchange_body: "+v+"}\n"), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "timeouts.exchange_body") {
			t.Errorf("exchange_body %s: %v", v, err)
		}
	}
}
