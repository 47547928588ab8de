package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc/oidctest"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
)

// TestHotReloadFromFiles: providers.yaml replaced on disk (temporary file
// and rename, as editors do) → the new revision serves, its new provider's
// issuer is warmed and its exchange works; an invalid file is rejected and
// the previous revision keeps serving; fixing it recovers.
func TestHotReloadFromFiles(t *testing.T) {
	h := newRig(t, rigOptions{})
	iss2 := oidctest.Start(t, oidctest.WithRSA())
	status, r := h.readyz()
	if status != http.StatusOK || r.Providers != 1 {
		t.Fatalf("/readyz: %d %+v", status, r)
	}
	rev1 := r.Revision
	h.mustExchange(h.iss, provA)
	if d, _ := iss2.Fetches(); d != 0 {
		t.Fatalf("issuer 2 fetched before it is configured")
	}
	d1, j1 := h.iss.Fetches()

	a := providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}
	b := providerSpec{id: provB, name: "test B", issuer: iss2.URL(), scopes: "WORKSPACE"}
	writeAtomic(t, h.provPath, []byte(providersYAML(a, b)))
	rev2 := h.awaitRevisionChange(rev1)
	if _, r := h.readyz(); r.Providers != 2 || r.LastReloadError != "" {
		t.Fatalf("/readyz after the change: %+v", r)
	}
	// The new provider's issuer is warmed by the reload, before any exchange.
	ctx, cancel := context.WithTimeout(context.Background(), await)
	defer cancel()
	if err := iss2.WaitFetches(ctx, 1, 1); err != nil {
		t.Fatalf("the new issuer was not warmed: %v", err)
	}
	// Provider A's issuer is not fetched again.
	if d, j := h.iss.Fetches(); d != d1 || j != j1 {
		t.Errorf("reload refetched a known issuer: discovery %d→%d, jwks %d→%d", d1, d, j1, j)
	}
	tokB := h.mustExchange(iss2, provB)
	if status, body := h.do(http.MethodGet, h.base+"/workspaces/my-company/projects", tokB, "", nil); status != http.StatusOK {
		t.Fatalf("call with the new provider's token: %d %s", status, body)
	}
	if !logHas(t, h.logs, "msg", "policy loaded", "revision", rev2, "previous", rev1) {
		t.Errorf("reload not logged:\n%s", h.logs.String())
	}

	// An invalid file: rejected, rev2 keeps serving.
	errs := h.reloadsTotal("error")
	writeAtomic(t, h.provPath, []byte("providers:\n  - id: not-a-uuid\n    name: broken\n    type: other\n"))
	h.awaitReloadErrors(errs)
	status, r = h.readyz()
	if status != http.StatusOK || r.Revision != rev2 || !strings.Contains(r.LastReloadError, "providers.yaml") {
		t.Fatalf("/readyz after an invalid file: %d %+v", status, r)
	}
	if !logHas(t, h.logs, "level", "ERROR", "msg", "still serving the previous revision", "revision", rev2) {
		t.Errorf("rejection not logged:\n%s", h.logs.String())
	}
	h.mustExchange(iss2, provB)

	// Fixed: a third revision serves and the error is gone.
	b.name = "test B renamed"
	writeAtomic(t, h.provPath, []byte(providersYAML(a, b)))
	rev3 := h.awaitRevisionChange(rev2)
	if rev3 == rev1 {
		t.Fatal("revision 3 equals revision 1")
	}
	if _, r := h.readyz(); r.LastReloadError != "" {
		t.Fatalf("the error outlived the fix: %+v", r)
	}
	if v := h.reloadsTotal("ok"); v != 3 {
		t.Errorf("policy_reloads_total{ok} = %v, want 3 (start, change, fix)", v)
	}
	h.mustExchange(h.iss, provA)
}

// TestRevertToServingContent: an invalid edit reverted to the content that
// serves clears the error without a recompile.
func TestRevertToServingContent(t *testing.T) {
	h := newRig(t, rigOptions{})
	rev := h.revision()
	good := providersYAML(providerSpec{id: provA, name: "test A", issuer: h.iss.URL()})
	writeAtomic(t, h.provPath, []byte("providers: [[["))
	h.awaitReloadErrors(0)
	if _, r := h.readyz(); r.LastReloadError == "" || r.Revision != rev {
		t.Fatalf("%+v", r)
	}
	writeAtomic(t, h.provPath, []byte(good))
	h.awaitReady("the error to clear", func(_ int, r readiness) bool { return r.LastReloadError == "" })
	if h.revision() != rev || h.reloadsTotal("ok") != 1 {
		t.Fatalf("revision %s (want %s), loads %v (want 1: no recompile)", h.revision(), rev, h.reloadsTotal("ok"))
	}
}

// TestNoFailedRequestDuringReloads: 20 reloads alternating between two
// revisions while exchanges and proxied requests run concurrently; every
// response has its expected status.
func TestNoFailedRequestDuringReloads(t *testing.T) {
	h := newRig(t, rigOptions{configure: func(h *rig) {
		off := false
		h.cfg.Watch = &off // reloads come from POST /_sidecar/reload only
	}})
	iss2 := oidctest.Start(t, oidctest.WithRSA())
	contents := []string{
		providersYAML(providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}),
		providersYAML(providerSpec{id: provA, name: "test A", issuer: h.iss.URL()},
			providerSpec{id: provB, name: "test B", issuer: iss2.URL()}),
	}
	tok := h.mustExchange(h.iss, provA)

	var (
		stop       atomic.Bool
		total      atomic.Int64
		mu         sync.Mutex
		unexpected []string
		wg         sync.WaitGroup
	)
	record := func(what string, status int, want int, body string, err error) {
		total.Add(1)
		if err != nil || status != want {
			mu.Lock()
			defer mu.Unlock()
			if len(unexpected) < 20 {
				unexpected = append(unexpected, fmt.Sprintf("%s: %d (want %d) %.200s %v", what, status, want, body, err))
			}
		}
	}
	worker := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				f()
			}
		}()
	}
	for range 3 {
		worker(func() {
			status, body, err := h.try(http.MethodGet, h.base+"/workspaces/my-company/projects", tok, "", nil)
			record("allowed call", status, http.StatusOK, body, err)
		})
	}
	worker(func() {
		status, body, err := h.try(http.MethodPost, h.base+"/workspaces/my-company/projects/web/pipelines/7/executions", tok, "application/json", strings.NewReader("{}"))
		record("call lacking a scope", status, http.StatusForbidden, body, err)
	})
	for range 2 {
		worker(func() {
			status, body, _, err := h.exchange(provA, h.jwt(h.iss, "octo-org"))
			record("exchange", status, http.StatusOK, body, err)
		})
	}
	// Direct Reload calls race with the admin endpoint's.
	worker(func() {
		if err := h.srv.Reload(context.Background()); err != nil {
			record("direct Reload", 0, 0, err.Error(), err)
		}
		time.Sleep(20 * time.Millisecond) // a throttle, not a wait
	})

	revs := map[int]string{}
	for i := range 20 {
		content := (i + 1) % 2
		writeAtomic(t, h.provPath, []byte(contents[content]))
		status, body := h.do(http.MethodPost, h.admin+ReloadPath, h.adminToken, "", nil)
		var got struct{ Revision string }
		_ = json.Unmarshal([]byte(body), &got)
		if status != http.StatusOK || got.Revision == "" {
			t.Fatalf("reload %d: %d %s", i, status, body)
		}
		if prev, ok := revs[content]; ok && prev != got.Revision {
			t.Fatalf("reload %d: revision %s, want %s", i, got.Revision, prev)
		}
		revs[content] = got.Revision
		// Let traffic run against this revision before the next reload.
		n := total.Load()
		testkit.Await(t, await, "requests between reloads", func() bool { return total.Load() >= n+6 })
	}
	stop.Store(true)
	wg.Wait()
	if revs[0] == revs[1] {
		t.Fatalf("the two contents gave one revision %s", revs[0])
	}
	if len(unexpected) > 0 {
		t.Fatalf("%d requests in all; unexpected answers:\n%s", total.Load(), strings.Join(unexpected, "\n"))
	}
	text := h.metricsText()
	if v := metric(text, "oidc_sidecar_policy_reloads_total", "result", "ok"); v < 21 {
		t.Errorf("policy_reloads_total{ok} = %v, want >= 21", v)
	}
	if v := metric(text, "oidc_sidecar_policy_reloads_total", "result", "error"); v > 0 {
		t.Errorf("policy_reloads_total{error} = %v", v)
	}
	if v := metric(text, "oidc_sidecar_policy_revision_info"); v != 1 {
		t.Errorf("policy_revision_info must have exactly one revision, sum %v", v)
	}
	t.Logf("%d requests during 20 reloads", total.Load())
}

// buildBundle builds a bundle from providers with the embedded policies
// (plus extra modules) and returns its tarball.
func buildBundle(t *testing.T, revision string, extra []policy.File, ps ...providerSpec) []byte {
	t.Helper()
	pf, err := provider.Parse("providers.yaml", []byte(providersYAML(ps...)))
	if err != nil {
		t.Fatal(err)
	}
	var pols []policy.File
	if extra != nil {
		if pols, err = policy.EmbeddedPolicies(false); err != nil {
			t.Fatal(err)
		}
		pols = append(pols, extra...)
	}
	b, err := policy.Build(context.Background(), policy.Sources{Providers: pf.Providers, Policies: pols, Revision: revision})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := policy.WriteBundle(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildBundleFromFiles is what `oidc-sidecar bundle build` does.
func buildBundleFromFiles(t *testing.T, providersPath, revision string) []byte {
	t.Helper()
	b, _, err := policy.BuildFromFiles(context.Background(), policy.Files{Providers: providersPath, Revision: revision})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := policy.WriteBundle(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A module that parses but does not compile.
var badModule = []policy.File{{Path: "sidecar/bad.rego", Src: []byte("package sidecar.bad\n\nx if {\n\tno_such_function(1)\n}\n")}}

// TestBundleFileSource: serve a bundle tarball; replacing it switches
// revisions; a garbage file is rejected and the last good one serves.
func TestBundleFileSource(t *testing.T) {
	iss2 := oidctest.Start(t, oidctest.WithRSA())
	var bundlePath string
	h := newRig(t, rigOptions{configure: func(h *rig) {
		bundlePath = filepath.Join(h.dir, "bundles", "prod.tar.gz")
		if err := mkdir(filepath.Dir(bundlePath)); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, bundlePath, buildBundleFromFiles(t, h.provPath, "bundle-1"))
		h.cfg.Bundle, h.cfg.Providers = bundlePath, ""
	}})
	a := providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}
	b := providerSpec{id: provB, name: "test B", issuer: iss2.URL()}
	status, r := h.readyz()
	if status != http.StatusOK || r.Revision != "bundle-1" || r.Source != "bundle "+bundlePath {
		t.Fatalf("/readyz: %d %+v", status, r)
	}
	h.mustExchange(h.iss, provA)

	writeAtomic(t, bundlePath, buildBundle(t, "bundle-2", nil, a, b))
	h.awaitReady("bundle-2", func(_ int, r readiness) bool { return r.Revision == "bundle-2" })
	h.mustExchange(iss2, provB)

	writeAtomic(t, bundlePath, []byte("this is not a gzipped tarball"))
	h.awaitReloadErrors(0)
	status, r = h.readyz()
	if status != http.StatusOK || r.Revision != "bundle-2" || !strings.Contains(r.LastReloadError, bundlePath) {
		t.Fatalf("/readyz after a garbage bundle: %d %+v", status, r)
	}
	h.mustExchange(iss2, provB)

	errs := h.reloadsTotal("error")
	writeAtomic(t, bundlePath, buildBundle(t, "bundle-bad", badModule, a, b))
	h.awaitReloadErrors(errs)
	if _, r := h.readyz(); r.Revision != "bundle-2" || !strings.Contains(r.LastReloadError, "bad.rego:4") {
		t.Fatalf("/readyz after a bundle that does not compile: %+v", r)
	}

	writeAtomic(t, bundlePath, buildBundle(t, "bundle-3", nil, a))
	h.awaitReady("bundle-3", func(_ int, r readiness) bool { return r.Revision == "bundle-3" && r.LastReloadError == "" })
	if status, body, _, _ := h.exchange(provB, h.jwt(iss2, "octo-org")); status != http.StatusUnauthorized {
		t.Fatalf("provider B was removed by bundle-3: %d %s", status, body)
	}
}

// bundleServer serves one bundle with an ETag and honours If-None-Match.
type bundleServer struct {
	mu           sync.Mutex
	data         []byte
	etag         string // "" = send none
	down         bool   // drop connections
	ok, notMod   int
	sawSecret    bool
	wantQuerySig string
}

func (b *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.URL.Query().Get("sig") == b.wantQuerySig {
		b.sawSecret = true
	}
	if b.down {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	if b.etag != "" && r.Header.Get("If-None-Match") == b.etag {
		b.notMod++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b.ok++
	if b.etag != "" {
		w.Header().Set("ETag", b.etag)
	}
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(b.data)
}

func (b *bundleServer) publish(data []byte, etag string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data, b.etag = data, etag
}

func (b *bundleServer) counts() (ok, notModified int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ok, b.notMod
}

func (b *bundleServer) setDown(down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = down
}

// TestBundleURLSource: a bundle URL polled every second with ETags: an
// unchanged bundle is answered 304 and not recompiled; a new one serves
// within a poll; the server down or a bundle that does not compile leave
// the last good one serving, logged and counted; the URL's secret query
// never reaches the logs.
func TestBundleURLSource(t *testing.T) {
	iss2 := oidctest.Start(t, oidctest.WithRSA())
	sig := randomSecret("sig-")
	bs := &bundleServer{wantQuerySig: sig}
	hs := httptest.NewServer(bs)
	t.Cleanup(hs.Close)
	bundleURL := hs.URL + "/bundles/prod.tar.gz?sig=" + sig
	var a, b providerSpec
	h := newRig(t, rigOptions{configure: func(h *rig) {
		a = providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}
		b = providerSpec{id: provB, name: "test B", issuer: iss2.URL()}
		bs.publish(buildBundle(t, "url-1", nil, a), `"etag-1"`)
		h.cfg.Bundle, h.cfg.Providers = bundleURL, ""
		h.cfg.BundlePoll = Duration(time.Second)
	}})
	_, r := h.readyz()
	if r.Revision != "url-1" || strings.Contains(r.Source, sig) || !strings.Contains(r.Source, hs.URL+"/bundles/prod.tar.gz") {
		t.Fatalf("/readyz: %+v", r)
	}
	loadedAt := r.LoadedAt

	// Unchanged: 304s, no download, no recompile.
	testkit.Await(t, await, "two 304 answers", func() bool { _, nm := bs.counts(); return nm >= 2 })
	if ok, _ := bs.counts(); ok != 1 {
		t.Fatalf("the unchanged bundle was downloaded %d times", ok)
	}
	if _, r := h.readyz(); r.LoadedAt != loadedAt || h.reloadsTotal("ok") != 1 {
		t.Fatalf("an unchanged bundle was recompiled: %+v, %v loads", r, h.reloadsTotal("ok"))
	}

	// A new revision is picked up within a poll.
	bs.publish(buildBundle(t, "url-2", nil, a, b), `"etag-2"`)
	h.awaitReady("url-2", func(_ int, r readiness) bool { return r.Revision == "url-2" })
	h.mustExchange(iss2, provB)

	// Server down: url-2 keeps serving; logged and counted.
	errs := h.reloadsTotal("error")
	bs.setDown(true)
	h.awaitReloadErrors(errs)
	status, r := h.readyz()
	if status != http.StatusOK || r.Revision != "url-2" || r.LastReloadError == "" {
		t.Fatalf("/readyz with the bundle server down: %d %+v", status, r)
	}
	if !logHas(t, h.logs, "level", "ERROR", "msg", "policy source could not be loaded", "revision", "url-2") {
		t.Errorf("the failed fetch was not logged:\n%s", h.logs.String())
	}
	h.mustExchange(iss2, provB)

	// Back up with the same bundle: a 304 clears the error.
	okBefore, _ := bs.counts()
	bs.setDown(false)
	h.awaitReady("the error to clear", func(_ int, r readiness) bool { return r.LastReloadError == "" })
	if ok, _ := bs.counts(); ok != okBefore || h.revision() != "url-2" {
		t.Fatalf("recovery re-downloaded the bundle (%d → %d) or changed revision", okBefore, ok)
	}

	// A bundle that does not compile: rejected once, not retried while its
	// ETag is unchanged, and the error stays visible.
	errs = h.reloadsTotal("error")
	bs.publish(buildBundle(t, "url-bad", badModule, a, b), `"etag-bad"`)
	h.awaitReloadErrors(errs)
	_, nm := bs.counts()
	testkit.Await(t, await, "two more 304 answers", func() bool { _, n := bs.counts(); return n >= nm+2 })
	if v := h.reloadsTotal("error"); v != errs+1 {
		t.Fatalf("the rejected bundle was reported %v times, want once", v-errs)
	}
	if _, r := h.readyz(); r.Revision != "url-2" || !strings.Contains(r.LastReloadError, "no_such_function") {
		t.Fatalf("/readyz with a rejected bundle: %+v", r)
	}
	// A manual reload answers 422 with the rejection and the serving revision.
	status, body := h.do(http.MethodPost, h.admin+ReloadPath, h.adminToken, "", nil)
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "no_such_function") || !strings.Contains(body, `"revision":"url-2"`) {
		t.Fatalf("reload with a rejected bundle: %d %s", status, body)
	}

	// Fixed.
	bs.publish(buildBundle(t, "url-3", nil, a), `"etag-3"`)
	h.awaitReady("url-3", func(_ int, r readiness) bool { return r.Revision == "url-3" && r.LastReloadError == "" })

	bs.mu.Lock()
	saw := bs.sawSecret
	bs.mu.Unlock()
	if !saw {
		t.Error("the bundle URL's query was not sent")
	}
	if strings.Contains(h.logs.String(), sig) {
		t.Error("the bundle URL's secret query appears in the logs")
	}
}

// TestBundleURLWithoutETag: a server that sends no ETag: identical bytes
// are not recompiled, new bytes are.
func TestBundleURLWithoutETag(t *testing.T) {
	bs := &bundleServer{}
	hs := httptest.NewServer(bs)
	t.Cleanup(hs.Close)
	var a providerSpec
	h := newRig(t, rigOptions{configure: func(h *rig) {
		a = providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}
		bs.publish(buildBundle(t, "", nil, a), "")
		h.cfg.Bundle, h.cfg.Providers = hs.URL+"/b.tar.gz", ""
		h.cfg.BundlePoll = Duration(time.Hour) // reloads are triggered below
	}})
	rev := h.revision()
	for range 2 {
		if err := h.srv.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if ok, nm := bs.counts(); ok != 3 || nm != 0 || h.reloadsTotal("ok") != 1 {
		t.Fatalf("downloads %d, 304s %d, loads %v (want 3, 0, 1)", ok, nm, h.reloadsTotal("ok"))
	}
	a.name = "renamed"
	bs.publish(buildBundle(t, "", nil, a), "")
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.revision() == rev || h.reloadsTotal("ok") != 2 {
		t.Fatalf("new bytes were not loaded: %s %v", h.revision(), h.reloadsTotal("ok"))
	}
}

// TestWatchSeesNewPolicyFiles: with a policies directory, a new .rego file
// (in a new subdirectory) triggers a reload.
func TestWatchSeesNewPolicyFiles(t *testing.T) {
	var polDir string
	h := newRig(t, rigOptions{configure: func(h *rig) {
		polDir = filepath.Join(h.dir, "policies")
		files, err := policy.EmbeddedPolicies(false)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			p := filepath.Join(polDir, f.Path)
			if err := mkdir(filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
			writeAtomic(t, p, f.Src)
		}
		h.cfg.Policies = []string{polDir}
	}})
	rev := h.revision()
	sub := filepath.Join(polDir, "extra")
	if err := mkdir(sub); err != nil {
		t.Fatal(err)
	}
	// The new directory is watched once its creation is seen; keep writing
	// the module until a reload picks it up.
	src := []byte("package sidecar.guardrails\n\ndeny contains \"no forks\" if input.claims.head_repository == \"fork\"\n")
	deadline := time.Now().Add(await)
	for h.revision() == rev {
		if time.Now().After(deadline) {
			t.Fatalf("a module in a new directory was never loaded\n%s", h.logs.String())
		}
		writeAtomic(t, filepath.Join(sub, "forks.rego"), src)
		time.Sleep(300 * time.Millisecond)
	}
}

func mkdir(p string) error { return os.MkdirAll(p, 0o755) }

// untar extracts a bundle tarball into dir (a bundle directory).
func untar(t *testing.T, data []byte, dir string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(hdr.Name, "/")))
		if err := mkdir(filepath.Dir(p)); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, p, b)
	}
}

// TestBundleDirectorySource: a bundle directory serves, and a change in
// it (watched recursively) switches revisions.
func TestBundleDirectorySource(t *testing.T) {
	var dir string
	var a providerSpec
	h := newRig(t, rigOptions{configure: func(h *rig) {
		a = providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}
		dir = filepath.Join(h.dir, "bundle")
		untar(t, buildBundle(t, "dir-1", nil, a), dir)
		h.cfg.Bundle, h.cfg.Providers = dir, ""
	}})
	if h.revision() != "dir-1" {
		t.Fatalf("revision %q", h.revision())
	}
	h.mustExchange(h.iss, provA)
	a.name = "renamed"
	untar(t, buildBundle(t, "dir-2", nil, a), dir)
	h.awaitReady("dir-2", func(_ int, r readiness) bool { return r.Revision == "dir-2" })
	h.mustExchange(h.iss, provA)
}

// TestWatchKubernetesConfigMapSwap: a ConfigMap volume's files are symlinks
// through "..data", which Kubernetes swaps atomically; the files
// themselves produce no event. The swap must trigger a reload.
func TestWatchKubernetesConfigMapSwap(t *testing.T) {
	iss2 := oidctest.Start(t, oidctest.WithRSA())
	var cmDir string
	publish := func(t *testing.T, version, content string) {
		t.Helper()
		ts := filepath.Join(cmDir, "..2026_"+version)
		if err := mkdir(ts); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, filepath.Join(ts, "providers.yaml"), []byte(content))
		tmp := filepath.Join(cmDir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(cmDir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	var a providerSpec
	h := newRig(t, rigOptions{configure: func(h *rig) {
		a = providerSpec{id: provA, name: "test A", issuer: h.iss.URL()}
		cmDir = filepath.Join(h.dir, "configmap")
		if err := mkdir(cmDir); err != nil {
			t.Fatal(err)
		}
		publish(t, "v1", providersYAML(a))
		link := filepath.Join(cmDir, "providers.yaml")
		if err := os.Symlink(filepath.Join("..data", "providers.yaml"), link); err != nil {
			t.Fatal(err)
		}
		h.cfg.Providers = link
	}})
	rev := h.revision()
	publish(t, "v2", providersYAML(a, providerSpec{id: provB, name: "test B", issuer: iss2.URL()}))
	h.awaitRevisionChange(rev)
	h.mustExchange(iss2, provB)
}

// TestWatchCatchesUpOnStart: a change made after the initial load but
// before the file watch was in place produces no file event; the watcher
// reloads once as soon as it is watching, so the change is not missed.
func TestWatchCatchesUpOnStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "providers.yaml")
	writeAtomic(t, path, []byte("providers: []\n"))
	// The change the watcher did not see happen.
	writeAtomic(t, path, []byte("providers: [[[\n"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	called := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- watchPaths(ctx, []string{path}, func() {
			select {
			case called <- struct{}{}:
			default:
			}
		}, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-called:
	case err := <-done:
		t.Fatalf("watchPaths returned %v before reloading", err)
	case <-time.After(await):
		t.Fatalf("no reload within %s of starting to watch", await)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
