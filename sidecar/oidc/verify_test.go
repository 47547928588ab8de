package oidc_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

func TestHappyPaths(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "PS256", "RS384", "ES384", "RS512"} {
		t.Run(alg, func(t *testing.T) {
			iss := oidctest.Start(t, oidctest.WithInitialAlg(alg))
			v := newVerifier(t, oidc.Options{})
			now := time.Now()
			claims := ghClaims(iss, now)
			raw := oidctest.MustSign(t, iss, claims)
			tok := mustVerify(t, v, raw, expect(iss))

			if tok.Algorithm != alg || tok.KeyID != iss.KID() {
				t.Errorf("alg/kid = %s/%s, want %s/%s", tok.Algorithm, tok.KeyID, alg, iss.KID())
			}
			if tok.Issuer != iss.URL() || tok.Subject != "repo:octo-org/octo-repo:ref:refs/heads/main" || tok.JTI != claims["jti"] {
				t.Errorf("iss/sub/jti = %q %q %q", tok.Issuer, tok.Subject, tok.JTI)
			}
			if !reflect.DeepEqual(tok.Audience, []string{testAud}) {
				t.Errorf("aud = %q", tok.Audience)
			}
			if tok.IssuedAt.Unix() != now.Unix()-5 || tok.NotBefore.Unix() != now.Unix()-5 || tok.ExpiresAt.Unix() != now.Unix()+300 {
				t.Errorf("times iat=%v nbf=%v exp=%v", tok.IssuedAt, tok.NotBefore, tok.ExpiresAt)
			}
			// The signing input, never the (malleable) signature bytes.
			sum := sha256.Sum256([]byte(raw[:strings.LastIndex(raw, ".")]))
			if tok.Hash != hex.EncodeToString(sum[:]) {
				t.Errorf("hash %s, want SHA-256 of header.payload", tok.Hash)
			}
			if len(tok.Claims) != 29 {
				t.Errorf("%d claims", len(tok.Claims))
			}
			if exp, ok := tok.Claims["exp"].(json.Number); !ok || exp.String() != fmt.Sprint(now.Unix()+300) {
				t.Errorf("exp claim %#v, want a json.Number", tok.Claims["exp"])
			}
			if tok.Claims["repository_owner"] != "octo-org" || tok.Claims["run_attempt"] != "1" {
				t.Errorf("claims %v", tok.Claims)
			}
			wantFetches(t, iss, 1, 1)
			// Cached: a second token costs no HTTP.
			mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, now)), expect(iss))
			wantFetches(t, iss, 1, 1)
		})
	}
}

func TestES512WhenConfigured(t *testing.T) {
	iss := oidctest.Start(t, oidctest.WithInitialAlg("ES512"))
	raw := oidctest.MustSign(t, iss, ghClaims(iss, time.Now()))
	_, err := newVerifier(t, oidc.Options{}).Verify(context.Background(), raw, expect(iss))
	wantCode(t, err, oidc.CodeUnsupportedAlgorithm)
	v := newVerifier(t, oidc.Options{Algorithms: []string{"ES512"}})
	mustVerify(t, v, raw, expect(iss))
}

func TestJWKWithoutAlgUsableWithItsFamily(t *testing.T) {
	iss := oidctest.Start(t, oidctest.WithRSA())
	iss.SetPublishAlg(false)
	v := newVerifier(t, oidc.Options{})
	now := time.Now()
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256"} {
		mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, now), oidctest.WithAlg(alg)), expect(iss))
	}
	// PS384 is a fitting family but not in the default allow-list.
	_, err := v.Verify(context.Background(), oidctest.MustSign(t, iss, ghClaims(iss, now), oidctest.WithAlg("PS384")), expect(iss))
	wantCode(t, err, oidc.CodeUnsupportedAlgorithm)

	// With "alg" published, the key is usable only with that algorithm.
	iss2 := oidctest.Start(t, oidctest.WithRSA())
	v2 := newVerifier(t, oidc.Options{})
	_, err = v2.Verify(context.Background(), oidctest.MustSign(t, iss2, ghClaims(iss2, now), oidctest.WithAlg("PS256")), expect(iss2))
	e := wantCode(t, err, oidc.CodeUnsupportedAlgorithm)
	if !strings.Contains(e.Message, "alg RS256") {
		t.Errorf("message %q", e.Message)
	}
}

func TestCircleCIPathIssuer(t *testing.T) {
	org := "7f3e2a10-1b2c-4d5e-9f80-a1b2c3d4e5f6"
	iss := oidctest.Start(t, oidctest.WithPath("/org/"+org), oidctest.WithECDSA())
	if !strings.HasSuffix(iss.URL(), "/org/"+org) {
		t.Fatalf("URL %s", iss.URL())
	}
	v := newVerifier(t, oidc.Options{})
	if err := v.Warm(context.Background(), iss.URL()); err != nil {
		t.Fatal(err)
	}
	claims := oidctest.CircleCIClaims(iss.URL(), org, "proj-1", time.Now())
	tok := mustVerify(t, v, oidctest.MustSign(t, iss, claims), oidc.Expect{Issuer: iss.URL(), Audience: org})
	if tok.Claims["oidc.circleci.com/ssh-rerun"] != false {
		t.Errorf("ssh-rerun %#v", tok.Claims["oidc.circleci.com/ssh-rerun"])
	}
	if ids, ok := tok.Claims["oidc.circleci.com/context-ids"].([]any); !ok || len(ids) != 2 {
		t.Errorf("context-ids %#v", tok.Claims["oidc.circleci.com/context-ids"])
	}
	if !tok.NotBefore.IsZero() || tok.JTI != "" || tok.Subject != "org/"+org+"/project/proj-1/user/6a3b1f1e-2c4d-4e5f-8a9b-0c1d2e3f4a5b" {
		t.Errorf("nbf %v jti %q sub %q", tok.NotBefore, tok.JTI, tok.Subject)
	}
	wantFetches(t, iss, 1, 1)
}

func TestKeyRotation(t *testing.T) {
	clk := testkit.NewClock(time.Now())
	iss := oidctest.Start(t)
	v := newVerifier(t, oidc.Options{Now: clk.Now, RefreshCooldown: 30 * time.Second})
	ctx := context.Background()
	if err := v.Warm(ctx, iss.URL()); err != nil {
		t.Fatal(err)
	}
	oldKID := iss.KID()
	oldTok := oidctest.MustSign(t, iss, ghClaims(iss, clk.Now()))

	// A new key is picked up by one refetch.
	kid2, err := iss.Rotate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	tok := mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, clk.Now())), expect(iss))
	if tok.KeyID != kid2 {
		t.Fatalf("kid %s, want %s", tok.KeyID, kid2)
	}
	wantFetches(t, iss, 2, 2)
	mustVerify(t, v, oldTok, expect(iss)) // old key still published
	wantFetches(t, iss, 2, 2)

	// A second unknown kid within the cooldown fails fast, without HTTP.
	kid3, err := iss.Rotate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	tok3 := oidctest.MustSign(t, iss, ghClaims(iss, clk.Now()))
	clk.Advance(10 * time.Second)
	reqs := iss.Requests()
	start := time.Now()
	_, err = v.Verify(ctx, tok3, expect(iss))
	e := wantCode(t, err, oidc.CodeUnknownKID)
	if el := time.Since(start); el > time.Second {
		t.Errorf("unknown kid within cooldown took %v", el)
	}
	if iss.Requests() != reqs {
		t.Fatalf("unknown kid within cooldown made %d HTTP requests", iss.Requests()-reqs)
	}
	want := fmt.Sprintf("signing key %q is not in the issuer's key set (refetched %s; next refetch allowed in 20s)",
		kid3, clk.Now().Add(-10*time.Second).UTC().Format(time.RFC3339))
	if e.Message != want {
		t.Errorf("message\n got %s\nwant %s", e.Message, want)
	}

	// After the cooldown: one refetch, and the token verifies.
	clk.Advance(21 * time.Second)
	mustVerify(t, v, tok3, expect(iss))
	wantFetches(t, iss, 3, 3)

	// A removed key stops working after the next refetch.
	iss.RemoveKey(oldKID)
	clk.Advance(31 * time.Second)
	garbage := oidctest.MustSign(t, iss, ghClaims(iss, clk.Now()), oidctest.WithoutKID(), oidctest.WithHeader("kid", "k9"))
	_, err = v.Verify(ctx, garbage, expect(iss)) // unknown kid → refetch (4/4), still unknown
	wantCode(t, err, oidc.CodeUnknownKID)
	wantFetches(t, iss, 4, 4)
	_, err = v.Verify(ctx, oldTok, expect(iss))
	wantCode(t, err, oidc.CodeUnknownKID)
	wantFetches(t, iss, 4, 4)
}

func TestManyRandomKIDsCostOneRefetch(t *testing.T) {
	clk := testkit.NewClock(time.Now())
	iss := oidctest.Start(t)
	v := newVerifier(t, oidc.Options{Now: clk.Now})
	ctx := context.Background()
	if err := v.Warm(ctx, iss.URL()); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 200)
	for n := range 200 {
		go func() {
			raw := oidctest.MustSign(t, iss, ghClaims(iss, clk.Now()), oidctest.WithoutKID(), oidctest.WithHeader("kid", fmt.Sprintf("rnd-%d", n)))
			_, err := v.Verify(ctx, raw, expect(iss))
			errs <- err
		}()
	}
	for range 200 {
		wantCode(t, <-errs, oidc.CodeUnknownKID)
	}
	wantFetches(t, iss, 2, 2)
}

func TestIssuerDownAfterWarmKeepsServing(t *testing.T) {
	clk := testkit.NewClock(time.Now())
	iss := oidctest.Start(t)
	v := newVerifier(t, oidc.Options{Now: clk.Now, RefreshInterval: time.Hour, RefreshCooldown: 30 * time.Second})
	ctx := context.Background()
	if err := v.Warm(ctx, iss.URL()); err != nil {
		t.Fatal(err)
	}
	iss.SetDown(true)
	mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, clk.Now())), expect(iss))
	wantFetches(t, iss, 1, 1)

	// Keys go stale: the background refresh fails, the old keys keep working.
	clk.Advance(61 * time.Minute)
	mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, clk.Now())), expect(iss))
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := iss.WaitFetches(waitCtx, 2, 0); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, clk.Now())), expect(iss))
	}
	// While refreshes fail, they are retried at most once per cooldown.
	time.Sleep(50 * time.Millisecond) // let a (wrong) extra refresh show up
	wantFetches(t, iss, 2, 1)

	// Issuer back, cooldown passed: the next use refreshes in the background
	// and the refreshed set (with a new key) replaces the old one.
	iss.SetDown(false)
	oldKID := iss.KID()
	kid2, err := iss.Rotate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(31 * time.Second)
	mustVerify(t, v, oidctest.MustSign(t, iss, ghClaims(iss, clk.Now()), oidctest.WithKID(oldKID)), expect(iss))
	if err := iss.WaitFetches(waitCtx, 3, 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The background fetch has been served; wait until its result is in.
		tok, err := v.Verify(ctx, oidctest.MustSign(t, iss, ghClaims(iss, clk.Now())), expect(iss))
		if err == nil {
			if tok.KeyID != kid2 {
				t.Fatalf("kid %s", tok.KeyID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new key never arrived: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantFetches(t, iss, 3, 2)
}
