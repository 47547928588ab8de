package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// signMany signs n distinct GitHub Actions tokens (distinct jti) in parallel.
func signMany(b *testing.B, r *rig, n int) []string {
	b.Helper()
	out := make([]string, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				out[i] = r.ghToken("octo-org/octo-repo", "refs/heads/main")
			}
		}()
	}
	wg.Wait()
	return out
}

// BenchmarkExchange is the whole Buddy-compatible exchange, in process,
// against a real Redis: request parsing, RS256 verification (keys cached),
// the OPA exchange decision, the replay claim (SET NX), minting and SET of
// the record, the audit event and the response. Every iteration exchanges a
// distinct pre-signed token, so the replay guard is exercised, not tripped.
// Rate limits are off (they add one pipelined round trip). cpu-ns/op is the
// sidecar's CPU per exchange (this process: handler, client side of Redis,
// GC; not redis-server), steadier than ns/op on a shared machine:
//
//	go test -run '^$' -bench '^BenchmarkExchange$' -benchtime 3000x -count 6 ./sidecar/exchange/
func BenchmarkExchange(b *testing.B) {
	r, bodies := exchangeBodies(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testkit.ProcessCPU()
	for i := range b.N {
		if err := r.postExchange(bodies[i]); err != nil {
			b.Fatal(err)
		}
	}
	if cpu > 0 {
		b.ReportMetric(float64(testkit.ProcessCPU()-cpu)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkExchangeParallel is BenchmarkExchange from 32 goroutines at
// once (the closed loop of TestExchangeThroughput, in process): the
// handler's CPU per exchange when requests overlap, without the scheduler's
// idle wake-ups of a serial loop.
//
//	go test -run '^$' -bench '^BenchmarkExchangeParallel$' -benchtime 4000x -count 6 ./sidecar/exchange/
func BenchmarkExchangeParallel(b *testing.B) {
	r, bodies := exchangeBodies(b)
	var next atomic.Int64
	b.SetParallelism(16) // 32 goroutines on 2 CPUs
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testkit.ProcessCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.postExchange(bodies[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if cpu > 0 {
		b.ReportMetric(float64(testkit.ProcessCPU()-cpu)/float64(b.N), "cpu-ns/op")
	}
}

// exchangeBodies is a rig on a real Redis with its key cache warm, and
// b.N Buddy exchange bodies, each with its own pre-signed token.
func exchangeBodies(b *testing.B) (*rig, [][]byte) {
	r := newRig(b, "redis")
	r.issued(r.buddy(idDeploy, r.ghToken("octo-org/octo-repo", "refs/heads/main"))) // warm the key cache
	jwts := signMany(b, r, b.N)
	bodies := make([][]byte, b.N)
	for i, j := range jwts {
		bodies[i], _ = json.Marshal(map[string]string{"provider_id": idDeploy, "web_identity_token": j})
	}
	return r, bodies
}

// postExchange sends one exchange body to the main handler; anything but
// 200 is an error.
func (r *rig) postExchange(body []byte) error {
	req := httptest.NewRequest(http.MethodPost, BuddyPath, bytes.NewReader(body))
	req.RemoteAddr = "192.0.2.10:40000"
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	r.main.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return fmt.Errorf("status %d: %s", rec.Code, rec.Body)
	}
	return nil
}

// BenchmarkFloor is the least work an exchange must do: jwx v3 RS256 parse
// and verify of the same kind of token with a static key set, one prepared
// OPA evaluation of performance-floors B.2's minimal module (input converted
// on every eval), and one Redis SET of a record.
func BenchmarkFloor(b *testing.B) {
	r := newRig(b, "redis")
	ctx := context.Background()
	raw := r.ghToken("octo-org/octo-repo", "refs/heads/main")
	key, err := jwk.Import(r.w.gh.Key(r.w.gh.KID()).Public())
	if err != nil {
		b.Fatal(err)
	}
	if err := key.Set(jwk.KeyIDKey, r.w.gh.KID()); err != nil {
		b.Fatal(err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.RS256()); err != nil {
		b.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(key); err != nil {
		b.Fatal(err)
	}
	// The claims as the verifier hands them to the policy.
	v, err := oidc.NewVerifier(oidc.Options{HTTPClient: &http.Client{Transport: r.w.transport}})
	if err != nil {
		b.Fatal(err)
	}
	vt, err := v.Verify(ctx, raw, oidc.Expect{Issuer: provider.GitHubIssuer, Audience: "Buddy"})
	if err != nil {
		b.Fatal(err)
	}
	claims := vt.Claims
	// performance-floors B.2: one minimal module, one prepared query, the
	// claims converted on every eval.
	pq, err := testkit.FloorQuery(ctx)
	if err != nil {
		b.Fatal(err)
	}
	rec, _ := json.Marshal(&token.Record{
		ProviderID: idDeploy, ProviderName: "GHA - deploy", Subject: vt.Subject, Issuer: vt.Issuer,
		Claims: selectClaims(claims), Scopes: []string{"WORKSPACE", "EXECUTION_RUN"}, Workspaces: []string{"my-company"},
		IssuedAt: time.Now().Unix(), ExpiresAt: time.Now().Unix() + 5400, DecisionID: newDecisionID(time.Now()),
	})
	client := r.redis.Client()
	key0 := token.DefaultKeyPrefix + "tok:" + token.Hash("floor")

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set),
			jwt.WithIssuer(provider.GitHubIssuer), jwt.WithAudience("Buddy")); err != nil {
			b.Fatal(err)
		}
		rs, err := pq.Eval(ctx, rego.EvalInput(map[string]any{"claims": claims, "provider": "p0"}))
		if err != nil || !rs.Allowed() {
			b.Fatalf("floor eval %v, %v", rs, err)
		}
		if err := client.Set(ctx, key0, rec, 90*time.Minute).Err(); err != nil {
			b.Fatal(err)
		}
	}
}
