package oidctest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func TestIssuerServesAndSigns(t *testing.T) {
	iss, err := NewIssuer(WithPath("/org/abc"), WithECDSA())
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	if !strings.HasPrefix(iss.URL(), "http://127.0.0.1:") || !strings.HasSuffix(iss.URL(), "/org/abc") {
		t.Fatalf("URL %s", iss.URL())
	}
	code, doc := get(t, iss.URL()+DiscoveryPath)
	if code != 200 || doc["issuer"] != iss.URL() || doc["jwks_uri"] != iss.URL()+JWKSPath {
		t.Fatalf("discovery %d %v", code, doc)
	}
	kid2, err := iss.Rotate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Fetch(context.Background(), iss.URL()+JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 2 {
		t.Fatalf("%d keys", set.Len())
	}
	if d, j := iss.Fetches(); d != 1 || j != 1 {
		t.Fatalf("fetches %d/%d", d, j)
	}

	now := time.Now()
	claims := GitHubClaims(iss.URL(), "Buddy", "octo-org/octo-repo", "refs/heads/main", now)
	if len(claims) != 29 {
		t.Errorf("%d GitHub claims", len(claims))
	}
	raw, err := iss.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(iss.URL()), jwt.WithAudience("Buddy"))
	if err != nil {
		t.Fatal(err)
	}
	var sub string
	if err := tok.Get("sub", &sub); err != nil || sub != "repo:octo-org/octo-repo:ref:refs/heads/main" {
		t.Errorf("sub %q %v", sub, err)
	}
	if iss.KID() != kid2 || iss.Key(kid2) == nil {
		t.Errorf("signing kid %s", iss.KID())
	}

	iss.RemoveKey(kid2)
	if iss.Key(kid2) != nil || iss.KID() == kid2 {
		t.Error("key not removed")
	}
	iss.SetDown(true)
	if code, _ := get(t, iss.URL()+JWKSPath); code != http.StatusServiceUnavailable {
		t.Errorf("down: %d", code)
	}
	iss.SetDown(false)
	iss.SetIssuerOverride("https://other.example")
	if _, doc := get(t, iss.URL()+DiscoveryPath); doc["issuer"] != "https://other.example" {
		t.Errorf("override: %v", doc["issuer"])
	}
	cc := CircleCIClaims(iss.URL(), "org-1", "proj-1", now)
	if _, ok := cc["oidc.circleci.com/ssh-rerun"].(bool); !ok {
		t.Errorf("circleci claims %v", cc)
	}
}

func TestLatencyReleasedOnClose(t *testing.T) {
	iss, err := NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	iss.SetLatency(time.Hour)
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(iss.URL() + DiscoveryPath)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if err := iss.WaitFetches(context.Background(), 1, 0); err != nil {
		t.Fatal(err)
	}
	iss.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release a delayed request")
	}
}
