package oidc_test

import (
	"context"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
)

// benchSetup returns a warmed verifier and a 29-claim GitHub-shaped token
// signed with alg; the issuer publishes 4 keys (like the floor benchmark's
// set), so the kid lookup has to pick one.
func benchSetup(b *testing.B, alg string) (*oidc.Verifier, *oidctest.Issuer, string) {
	b.Helper()
	iss := oidctest.Start(b, oidctest.WithInitialAlg("RS256"))
	for range 2 {
		if _, err := iss.Rotate("RS256"); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := iss.Rotate(alg); err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, oidc.Options{})
	if err := v.Warm(context.Background(), iss.URL()); err != nil {
		b.Fatal(err)
	}
	claims := ghClaims(iss, time.Now())
	if len(claims) != 29 {
		b.Fatalf("%d claims, want 29", len(claims))
	}
	tok := oidctest.MustSign(b, iss, claims)
	return v, iss, tok
}

func benchVerify(b *testing.B, alg string) {
	v, iss, tok := benchSetup(b, alg)
	e := expect(iss)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		cpu := testkit.ProcessCPU()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok, e); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(ctx, tok, e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	wantFetches(b, iss, 1, 1)
}

// reportCPU adds the process CPU time per operation since start (including
// GC) as "cpu-ns/op": on a shared, loaded machine it is steadier than ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	if start > 0 && b.N > 0 {
		b.ReportMetric(float64(testkit.ProcessCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkVerifyRS256 measures Verify of a GitHub-shaped RS256 token with
// the keys cached.
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, "RS256") }

// BenchmarkVerifyES256 measures Verify of a GitHub-shaped ES256 token with
// the keys cached.
func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, "ES256") }

// BenchmarkFloorJWXParse is the reference floor: plain jwx jwt.Parse with a
// pre-parsed 4-key set, issuer, audience and skew (performance-floors.md B.1).
func BenchmarkFloorJWXParse(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			iss := oidctest.Start(b, oidctest.WithInitialAlg("RS256"))
			for range 2 {
				if _, err := iss.Rotate("RS256"); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := iss.Rotate(alg); err != nil {
				b.Fatal(err)
			}
			set, err := jwk.Fetch(context.Background(), iss.URL()+oidctest.JWKSPath)
			if err != nil {
				b.Fatal(err)
			}
			if set.Len() != 4 {
				b.Fatalf("%d keys", set.Len())
			}
			tok := []byte(oidctest.MustSign(b, iss, ghClaims(iss, time.Now())))
			opts := []jwt.ParseOption{
				jwt.WithKeySet(set),
				jwt.WithIssuer(iss.URL()),
				jwt.WithAudience(testAud),
				jwt.WithAcceptableSkew(60 * time.Second),
				jwt.WithRequiredClaim("exp"),
			}
			if _, err := jwt.Parse(tok, opts...); err != nil {
				b.Fatal(err)
			}
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				cpu := testkit.ProcessCPU()
				for b.Loop() {
					if _, err := jwt.Parse(tok, opts...); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := jwt.Parse(tok, opts...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
