package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
)

// BenchmarkListPage10k renders the console's first list page (server-side)
// with 10,000 providers serving, as a logged-in browser asks for it.
func BenchmarkListPage10k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("providers:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&sb, "  - id: %s\n    name: GHA - repo-%d:deploy\n    type: github_actions\n    trust_conditions: repository_owner is \"octo-org\" and repository is \"octo-org/repo-%d\"\n    scopes: [WORKSPACE, EXECUTION_RUN]\n", uuid.NewString(), i, i)
	}
	pf, err := provider.Parse("providers.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	bd, err := policy.Build(ctx, policy.Sources{Providers: pf.Providers})
	if err != nil {
		b.Fatal(err)
	}
	snap, err := policy.Compile(ctx, bd)
	if err != nil {
		b.Fatal(err)
	}
	eng := &policy.Engine{}
	eng.Swap(snap)
	h := New(Options{ReadOnly: "benchmark", Engine: eng})
	r := mux.NewRouter()
	h.Register(r)
	rec := httptest.NewRecorder()
	h.sessions.create(rec, httptest.NewRequest("POST", "/login", nil))
	cookie := rec.Result().Cookies()[0]
	for _, q := range []string{"", "?q=repo-9999"} {
		b.Run("query="+q, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest("GET", "/"+q, nil)
				req.AddCookie(cookie)
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "repo-") {
					b.Fatalf("list page: %d", w.Code)
				}
			}
		})
	}
}
