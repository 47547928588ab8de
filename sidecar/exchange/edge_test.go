package exchange

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
)

// TestZonedForwardedAddress (issue 11, item 4): an IPv6 zone identifier in
// X-Forwarded-For from a trusted proxy is a malformed entry. It must not
// become the client address: with it, net.cidr_contains failed and an
// IP-restricted provider answered 503.
func TestZonedForwardedAddress(t *testing.T) {
	proxies, err := clientip.New([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, "memory", withOptions(func(o *Options) { o.Clients = proxies }))
	jwt := func() string { return r.ghToken("octo-org/octo-repo", "refs/heads/main") }
	for _, xff := range []string{"fe80::1%eth0", "203.0.113.9, 2001:db8::5%eth0"} {
		msg := buddyError(t, r.buddy(idOffice, jwt(), from("10.1.2.3:5000"), header("X-Forwarded-For", xff)), 403)
		if !strings.Contains(msg, "requests from 10.1.2.3 are not allowed") {
			t.Errorf("X-Forwarded-For %q: message %s; want the trusted proxy's own address, the walk stopping at the zoned entry", xff, msg)
		}
	}
	// Left of the entry the trusted proxy added, a zoned entry is never reached.
	r.issued(r.buddy(idOffice, jwt(), from("10.1.2.3:5000"), header("X-Forwarded-For", "fe80::1%eth0, 203.0.113.9")))
}

// TestJSONTextAttribute: the audit line's "result" is the decision
// document written as it is by the JSON handler, and as text by a text
// handler (never a list of bytes).
func TestJSONTextAttribute(t *testing.T) {
	doc := jsonText(`{"allow":true,"reasons":[],"s":"<&>"}`)
	var jb, tb bytes.Buffer
	slog.New(slog.NewJSONHandler(&jb, nil)).Info("exchange", slog.Any("result", doc))
	if !strings.Contains(jb.String(), `"result":{"allow":true,"reasons":[],"s":"<&>"}`) {
		t.Errorf("JSON handler: %s", jb.String())
	}
	slog.New(slog.NewTextHandler(&tb, nil)).Info("exchange", slog.Any("result", doc))
	if !strings.Contains(tb.String(), `result="{\"allow\":true,\"reasons\":[],\"s\":\"<&>\"}"`) {
		t.Errorf("text handler: %s", tb.String())
	}
}
