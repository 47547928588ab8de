package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/httpclient"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
)

// A source produces the policy bundle to serve: from files (providers,
// policies, routes), from a bundle file or directory, or from a bundle URL.
// Its methods are called by one goroutine at a time (Server.Reload holds a
// mutex; Watch runs in its own goroutine and touches only its own state).
type source interface {
	// Load returns the source's current content. etag is the ETag of the
	// content the server processed last (""  if none); a URL source sends it
	// as If-None-Match and reports notModified on a 304.
	//
	// An error with a zero loadResult.version means the content could not be
	// obtained (network, missing file): nothing is known about it. An error
	// with a version means the content was read but is not a valid bundle;
	// the server remembers that version as rejected and does not report it
	// again until the content changes.
	Load(ctx context.Context, etag string) (loadResult, error)
	// Watch calls changed whenever the source may have changed, until ctx
	// ends; it returns nil then. Sources that cannot watch return nil at
	// once. Problems that do not stop the watch are logged on log.
	Watch(ctx context.Context, changed func(), log *slog.Logger) error
	// Describe names the source for logs and /readyz; it never contains a
	// credential (URLs are redacted).
	Describe() string
}

// loadResult is what a source loaded.
type loadResult struct {
	bundle      *bundle.Bundle // nil when notModified or on error
	version     string         // identity of the content (a hash); "" when unknown
	etag        string         // the response's ETag (URL sources)
	notModified bool           // the server answered 304 to If-None-Match
	warnings    []string       // non-fatal problems (providers file warnings)
}

func newSource(c *Config, client *http.Client) source {
	switch {
	case c.Bundle != "" && strings.Contains(c.Bundle, "://"):
		return &urlSource{url: c.Bundle, shown: redactURL(c.Bundle), client: client, poll: c.BundlePoll.D()}
	case c.Bundle != "":
		return &bundleFileSource{path: c.Bundle, watch: c.WatchEnabled()}
	default:
		return &filesSource{
			providers: c.Providers, policies: c.Policies, routes: c.Routes,
			settings: policy.Settings{UnknownRoutes: c.UnknownRoutes}, watch: c.WatchEnabled(),
		}
	}
}

// filesSource builds the bundle from providers.yaml, Rego files and a route
// table on every load (what `oidc-sidecar bundle build` does).
type filesSource struct {
	providers string
	policies  []string
	routes    string
	settings  policy.Settings
	watch     bool
}

func (s *filesSource) Describe() string {
	d := "providers " + s.providers
	if len(s.policies) > 0 {
		d += ", policies " + strings.Join(s.policies, ", ")
	} else {
		d += ", embedded policies"
	}
	if s.routes != "" {
		d += ", routes " + s.routes
	}
	return d
}

// Load is policy.BuildFromFiles, keeping the providers file's warnings.
// Any error is reported as "could not load" (no version): a file caught
// half-written is simply retried on the next change.
func (s *filesSource) Load(ctx context.Context, _ string) (loadResult, error) {
	b, warnings, err := policy.BuildFromFiles(ctx, policy.Files{Providers: s.providers, Policies: s.policies, Routes: s.routes, Settings: s.settings})
	if err != nil {
		return loadResult{}, err
	}
	// Build named the bundle by a SHA-256 of its modules and data (the
	// settings included): that is the content's identity, so it is not
	// hashed a second time (docs/benchmarks.md, "Loading 10,000 providers").
	return loadResult{bundle: b, version: "content:" + b.Manifest.Revision, warnings: warnings}, nil
}

func (s *filesSource) Watch(ctx context.Context, changed func(), log *slog.Logger) error {
	if !s.watch {
		return nil
	}
	paths := append([]string{s.providers}, s.policies...)
	if s.routes != "" {
		paths = append(paths, s.routes)
	}
	return watchPaths(ctx, paths, changed, log)
}

// bundleFileSource reads a bundle tarball or directory.
type bundleFileSource struct {
	path  string
	watch bool
}

func (s *bundleFileSource) Describe() string { return "bundle " + s.path }

func (s *bundleFileSource) Load(context.Context, string) (loadResult, error) {
	st, err := os.Stat(s.path)
	if err != nil {
		return loadResult{}, fmt.Errorf("bundle: %w", err)
	}
	if st.IsDir() {
		b, err := policy.ReadBundleFile(s.path)
		if err != nil {
			return loadResult{}, err
		}
		v := bundleHash(b)
		defaultRevision(b, v)
		return loadResult{bundle: b, version: v}, nil
	}
	if st.Size() > policy.MaxBundleBytes {
		return loadResult{}, fmt.Errorf("bundle %s is larger than %d bytes", s.path, policy.MaxBundleBytes)
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return loadResult{}, fmt.Errorf("bundle: %w", err)
	}
	v := bytesHash(data)
	b, err := policy.ReadBundle(bytes.NewReader(data))
	if err != nil {
		return loadResult{version: v}, fmt.Errorf("bundle %s: %w", s.path, err)
	}
	defaultRevision(b, v)
	return loadResult{bundle: b, version: v}, nil
}

func (s *bundleFileSource) Watch(ctx context.Context, changed func(), log *slog.Logger) error {
	if !s.watch {
		return nil
	}
	return watchPaths(ctx, []string{s.path}, changed, log)
}

// watchPaths watches the directories holding paths — so that files replaced
// by a rename (editors, `bundle build`, Kubernetes ConfigMap updates) are
// seen — and calls changed, debounced, when one of the files or anything
// under a watched directory changes. It returns nil when ctx ends.
func watchPaths(ctx context.Context, paths []string, changed func(), log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file watch: %w", err)
	}
	defer w.Close()
	files := map[string]bool{} // cleaned paths of the watched files
	trees := []string{}        // watched directories (recursively)
	dirs := map[string]bool{}
	for _, p := range paths {
		p = filepath.Clean(p)
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("file watch: %w", err)
		}
		if st.IsDir() {
			trees = append(trees, p)
			_ = filepath.WalkDir(p, func(d string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs[d] = true
				}
				return nil
			})
		} else {
			files[p] = true
			dirs[filepath.Dir(p)] = true
		}
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("file watch %s: %w", d, err)
		}
	}
	inTree := func(name string) bool {
		for _, t := range trees {
			if name == t || strings.HasPrefix(name, t+string(filepath.Separator)) {
				return true
			}
		}
		return false
	}
	relevant := func(ev fsnotify.Event) bool {
		name := filepath.Clean(ev.Name)
		// Kubernetes swaps a ConfigMap volume's "..data" symlink: the files
		// themselves (symlinks into it) produce no event.
		return files[name] || inTree(name) || strings.HasPrefix(filepath.Base(name), "..")
	}
	// One reload as soon as the watches are in place: a change made between
	// the initial load and now produced no event. Unchanged content costs a
	// read and a hash, and no recompile.
	const debounce = 250 * time.Millisecond
	timer := time.NewTimer(debounce)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod || !relevant(ev) {
				continue
			}
			// A directory created inside a watched tree is watched too.
			if ev.Has(fsnotify.Create) && inTree(filepath.Clean(ev.Name)) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					if err := w.Add(ev.Name); err != nil {
						log.Warn("file watch: cannot watch a new directory; changes in it need a reload", "dir", ev.Name, "error", err.Error())
					}
				}
			}
			timer.Reset(debounce)
		case <-timer.C:
			changed()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events, not the watch: reload to catch up.
			log.Warn("file watch: "+err.Error()+"; reloading to catch up", "error", err.Error())
			timer.Reset(debounce)
		}
	}
}

// urlSource polls a bundle URL with If-None-Match.
type urlSource struct {
	url    string
	shown  string // url without credentials, for logs
	client *http.Client
	poll   time.Duration
	bearer string // sent as Authorization: Bearer (bundle_token_env); "" for none
}

func (s *urlSource) Describe() string { return "bundle " + s.shown }

func (s *urlSource) Load(ctx context.Context, etag string) (loadResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return loadResult{}, fmt.Errorf("bundle %s: %w", s.shown, scrubURLError(err))
	}
	req.Header.Set("Accept", "application/gzip, application/octet-stream, */*")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if s.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+s.bearer)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return loadResult{}, fmt.Errorf("bundle %s: %w", s.shown, scrubURLError(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		return loadResult{notModified: true, etag: etag}, nil
	case resp.StatusCode == http.StatusOK:
	default:
		return loadResult{}, fmt.Errorf("bundle %s: HTTP %d", s.shown, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, policy.MaxBundleBytes+1))
	if err != nil {
		return loadResult{}, fmt.Errorf("bundle %s: %w", s.shown, scrubURLError(err))
	}
	if len(data) > policy.MaxBundleBytes {
		return loadResult{}, fmt.Errorf("bundle %s is larger than %d bytes", s.shown, policy.MaxBundleBytes)
	}
	res := loadResult{version: bytesHash(data), etag: resp.Header.Get("ETag")}
	b, err := policy.ReadBundle(bytes.NewReader(data))
	if err != nil {
		return res, fmt.Errorf("bundle %s: %w", s.shown, err)
	}
	defaultRevision(b, res.version)
	res.bundle = b
	return res, nil
}

func (s *urlSource) Watch(ctx context.Context, changed func(), _ *slog.Logger) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed()
		}
	}
}

// newBundleClient is the HTTP client that fetches bundle URLs.
func newBundleClient() *http.Client {
	return httpclient.New(httpclient.Limits{
		Dial: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 15 * time.Second, Total: 30 * time.Second,
		IdlePerHost: 1, MaxRedirects: 5,
		Redirect: func(req *http.Request, via []*http.Request) error {
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return errors.New("refusing a redirect from https to " + req.URL.Scheme)
			}
			return nil
		},
	})
}

// defaultRevision gives a bundle without a manifest revision one derived
// from its content.
func defaultRevision(b *bundle.Bundle, version string) {
	if b.Manifest.Revision == "" {
		b.Manifest.Revision = "sha256-" + strings.TrimPrefix(version, "sha256:")[:16]
	}
}

func bytesHash(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// bundleHash identifies a bundle's content: manifest, modules and data.
func bundleHash(b *bundle.Bundle) string {
	h := sha256.New()
	m, _ := json.Marshal(b.Manifest)
	h.Write(m)
	mods := make([]bundle.ModuleFile, len(b.Modules))
	copy(mods, b.Modules)
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	for _, mf := range mods {
		fmt.Fprintf(h, "\x00%s\x00%d\x00", mf.Path, len(mf.Raw))
		h.Write(mf.Raw)
	}
	d, _ := json.Marshal(b.Data) // map keys are sorted
	h.Write([]byte{0})
	h.Write(d)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// redactURL hides a URL's password and query (a presigned URL's signature
// is a credential) for logs and /readyz.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil { // a user name alone may be a token (https://TOKEN@host/...)
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.Fragment = ""
	return u.String()
}

// scrubURLError drops the URL from an *url.Error (it may hold a credential
// in its query); callers name the redacted URL themselves.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
