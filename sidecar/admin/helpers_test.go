package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
)

const adminToken = "test-admin-token"

// The IDs of the fixture's providers.
const (
	ghaID   = "550e8400-e29b-41d4-a716-446655440000"
	otherID = "7d444840-9dc0-11d1-b245-5ffdce74fad2"
)

// fixtureYAML is a hand-written providers file: comments, quoting and
// ordering that edits of other entries must keep byte for byte.
const fixtureYAML = `# Providers of the platform team. Keep this comment!
providers:
  # The deploy workflow of octo-org.
  - id: 550e8400-e29b-41d4-a716-446655440000
    name: 'GHA - octo-repo:deploy'   # quoted on purpose
    type: github_actions
    lifetime: 30m
    trust_conditions: repository_owner is "octo-org" and ref is "refs/heads/main"
    scopes: [WORKSPACE, EXECUTION_RUN]

  # A self-hosted GitLab.
  - id: 7d444840-9dc0-11d1-b245-5ffdce74fad2
    name: GitLab
    type: other
    issuer: https://gitlab.example.com
    audience: sidecar
    trust_conditions: project_path matches "platform/*"
    scopes:
      - WORKSPACE
`

// rig is an admin handler over a real providers file and a real policy
// engine: Check builds and compiles, Reload loads the file and swaps.
type rig struct {
	t      *testing.T
	path   string
	h      *Handler
	srv    *httptest.Server
	engine *policy.Engine
}

func newRig(t *testing.T, content string) *rig {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	rg := &rig{t: t, path: path, engine: &policy.Engine{}}
	reload := func(ctx context.Context) error {
		b, _, err := policy.BuildFromFiles(ctx, policy.Files{Providers: path})
		if err != nil {
			return err
		}
		snap, err := policy.Compile(ctx, b)
		if err != nil {
			return err
		}
		rg.engine.Swap(snap)
		return nil
	}
	if err := reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	rg.h = New(Options{
		ProvidersPath: path,
		Engine:        rg.engine,
		Check: func(ctx context.Context, f *provider.File) error {
			b, err := policy.Build(ctx, policy.Sources{Providers: f.Providers})
			if err != nil {
				return err
			}
			_, err = policy.Compile(ctx, b)
			return err
		},
		Reload:     reload,
		Authorized: func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+adminToken },
		Credential: func(s string) bool { return s == adminToken },
	})
	r := mux.NewRouter()
	rg.h.Register(r)
	rg.srv = httptest.NewServer(r)
	t.Cleanup(rg.srv.Close)
	return rg
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("reply %d is not JSON: %s", r.status, r.body)
	}
	return m
}

// do sends an API request with the admin bearer credential (auth "" sends none).
func (rg *rig) do(method, path string, body any, hdr ...string) reply {
	rg.t.Helper()
	return rg.doAuth("Bearer "+adminToken, method, path, body, hdr...)
}

func (rg *rig) doAuth(auth, method, path string, body any, hdr ...string) reply {
	rg.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, rg.srv.URL+path, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rg.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (rg *rig) file() string {
	b, err := os.ReadFile(rg.path)
	if err != nil {
		rg.t.Fatal(err)
	}
	return string(b)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
