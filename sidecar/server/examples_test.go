package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// apiCall is one curl an example's job runs against the sidecar.
type apiCall struct {
	method, path, body string
}

var (
	shellAssign = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"\s*$`)
	shellVar    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
	curlURL     = regexp.MustCompile(`"(\$\{?BUDDY_API_ENDPOINT\}?[^"]*|\$\{?[a-z_]+\}?/[^"]*)"\s*$`)
	curlMethod  = regexp.MustCompile(`-X\s+([A-Z]+)`)
	curlData    = regexp.MustCompile(`-d\s+"((?:[^"\\]|\\.)*)"`)
)

// sidecarBases are the variables the examples use for the sidecar's URL.
var sidecarBases = []string{"BUDDY_API_ENDPOINT", "OIDC_SIDECAR_URL"}

// exampleCalls finds the curl calls to $BUDDY_API_ENDPOINT (or
// $OIDC_SIDECAR_URL) in script but the token exchange itself,
// expanding the shell variables it assigns and env; variables it cannot
// resolve (the CI system's own, such as $GITHUB_SHA) become "x".
func exampleCalls(script string, env map[string]string) []apiCall {
	vars := map[string]string{}
	for k, v := range env {
		vars[k] = v
	}
	for _, b := range sidecarBases {
		vars[b] = ""
	}
	expand := func(s string) string {
		for range 4 {
			s = shellVar.ReplaceAllStringFunc(s, func(m string) string {
				name := shellVar.FindStringSubmatch(m)[1]
				if v, ok := vars[name]; ok {
					return v
				}
				return "x"
			})
		}
		return s
	}
	var calls []apiCall
	for _, line := range strings.Split(strings.ReplaceAll(script, "\\\n", " "), "\n") {
		if m := shellAssign.FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2] // expanded where it is used
			continue
		}
		if !strings.Contains(line, "curl ") {
			continue
		}
		u := curlURL.FindStringSubmatch(strings.TrimSpace(line))
		if u == nil || !slices.ContainsFunc(sidecarBases, func(b string) bool { return strings.Contains(expandKeep(u[1], vars), b) }) {
			continue
		}
		c := apiCall{method: http.MethodGet, path: expand(u[1])}
		if c.path == "/user/oidc/tokens" {
			continue // the exchange, not an API call
		}
		if d := curlData.FindStringSubmatch(line); d != nil {
			c.method, c.body = http.MethodPost, strings.ReplaceAll(expand(d[1]), `\"`, `"`)
		}
		if m := curlMethod.FindStringSubmatch(line); m != nil {
			c.method = m[1]
		}
		calls = append(calls, c)
	}
	return calls
}

// expandKeep expands variables but keeps the sidecar base variables'
// names, to tell calls to the sidecar from other downloads.
func expandKeep(s string, vars map[string]string) string {
	for range 4 {
		s = shellVar.ReplaceAllStringFunc(s, func(m string) string {
			name := shellVar.FindStringSubmatch(m)[1]
			if v, ok := vars[name]; ok && !slices.Contains(sidecarBases, name) {
				return v
			}
			return m
		})
	}
	return s
}

var providerIDFlag = regexp.MustCompile(`(?:--provider-id\s+"?|\\?"provider_id\\?":\s*\\?")\$?\{?([A-Za-z0-9_-]+)\}?`)

// exampleJob is what a CI example runs: the provider it logs in as and
// the API calls after the login.
type exampleJob struct {
	name       string
	providerID string
	calls      []apiCall
}

func loadExampleJob(t *testing.T, path string) exampleJob {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Env         map[string]string `yaml:"env"`         // GitHub Actions
			Environment map[string]string `yaml:"environment"` // CircleCI
			Steps       []yaml.Node       `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	job := exampleJob{name: path}
	for _, j := range wf.Jobs {
		env := map[string]string{}
		for k, v := range j.Env {
			env[k] = v
		}
		for k, v := range j.Environment {
			env[k] = v
		}
		var script strings.Builder
		for _, st := range j.Steps {
			var s struct {
				Run any `yaml:"run"`
			}
			if st.Kind != yaml.MappingNode || st.Decode(&s) != nil {
				continue
			}
			switch r := s.Run.(type) {
			case string:
				script.WriteString(r + "\n")
			case map[string]any:
				if c, ok := r["command"].(string); ok {
					script.WriteString(c + "\n")
				}
			}
		}
		if m := providerIDFlag.FindStringSubmatch(script.String()); m != nil {
			job.providerID = m[1]
			if v, ok := env[m[1]]; ok {
				job.providerID = v
			}
		}
		job.calls = append(job.calls, exampleCalls(script.String(), env)...)
	}
	if job.providerID == "" || len(job.calls) == 0 {
		t.Fatalf("%s: found provider %q and %d API calls; the parser no longer understands the example", path, job.providerID, len(job.calls))
	}
	return job
}

// TestExamplesWorkAsShipped runs the API calls of every CI example through
// the sidecar's proxy — the real route table and policy — with a token
// carrying what the example's provider grants, against the fake Buddy API:
// every call must reach the upstream and succeed. The GitHub Actions job
// runs against examples/providers.yaml (also what docker-compose.yml
// mounts) and against the Kubernetes manifest's ConfigMap; the CircleCI
// job against examples/providers.yaml, from an address its ip_restrictions
// allow.
func TestExamplesWorkAsShipped(t *testing.T) {
	gha := loadExampleJob(t, "../../examples/github-actions.yml")
	circle := loadExampleJob(t, "../../examples/circleci.yml")

	kubeProviders := filepathJoin(t.TempDir(), "providers.yaml")
	writeAtomic(t, kubeProviders, []byte(kubernetesConfigMap(t)["providers.yaml"]))

	for _, c := range []struct {
		name      string
		providers string
		job       exampleJob
	}{
		{"github-actions.yml on examples/providers.yaml (and docker compose)", "../../examples/providers.yaml", gha},
		{"circleci.yml on examples/providers.yaml", "../../examples/providers.yaml", circle},
		{"github-actions.yml on the Kubernetes ConfigMap", kubeProviders, gha},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := token.NewMemory(time.Now)
			h := newRig(t, rigOptions{store: store, configure: func(h *rig) {
				h.cfg.Providers = c.providers
				h.cfg.Trusted = []string{"127.0.0.1"}
			}})
			f, err := provider.Load(c.providers)
			if err != nil {
				t.Fatal(err)
			}
			var p *provider.Provider
			for _, q := range f.Providers {
				if string(q.ID) == c.job.providerID {
					p = q
				}
			}
			if p == nil {
				t.Fatalf("%s logs in as provider %s, which %s does not have", c.job.name, c.job.providerID, c.providers)
			}
			// The token the exchange would issue for this provider.
			tok, hash, err := token.New()
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			var ips []string
			for _, pfx := range p.IPRestrictions {
				ips = append(ips, pfx.String())
			}
			rec := &token.Record{ProviderID: string(p.ID), ProviderName: p.Name, Subject: "example", Issuer: p.Issuer,
				Scopes: p.Scopes, Workspaces: p.Workspaces, IPRestrictions: ips,
				IssuedAt: now.Unix(), ExpiresAt: now.Add(p.Lifetime).Unix()}
			if err := store.Save(context.Background(), hash, rec, p.Lifetime); err != nil {
				t.Fatal(err)
			}
			clientIP := "198.51.100.20"
			if len(p.IPRestrictions) > 0 {
				clientIP = p.IPRestrictions[0].Addr().Next().String() // an address the restriction allows
			}
			for _, call := range c.job.calls {
				t.Logf("%s %s", call.method, call.path)
				req, err := http.NewRequest(call.method, h.base+call.path, strings.NewReader(call.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("X-Forwarded-For", clientIP)
				if call.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := h.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					t.Errorf("%s %s (provider %s, scopes %v): %d %s", call.method, call.path, p.ID, p.Scopes, resp.StatusCode, bytes.TrimSpace(body))
				}
			}
		})
	}
}

func filepathJoin(dir, name string) string { return dir + string(os.PathSeparator) + name }

// kubernetesConfigMap returns the data of deploy/kubernetes/sidecar.yaml's
// ConfigMap.
func kubernetesConfigMap(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/kubernetes/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&d); err != nil {
			t.Fatal("no ConfigMap in deploy/kubernetes/sidecar.yaml")
		}
		if d.Kind == "ConfigMap" {
			return d.Data
		}
	}
}
