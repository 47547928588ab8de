package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
)

// A source produces the policy bundle to serve: from files (providers,
// policies, routes), from a bundle file or directory, or from a bundle URL.
type source interface {
	// Load returns the current bundle. unchanged is true when the source
	// knows nothing changed since the last successful Load (an ETag match).
	Load(ctx context.Context) (b *bundle.Bundle, unchanged bool, err error)
	// Watch calls changed whenever the source may have changed, until ctx
	// ends. Sources that cannot watch return at once.
	Watch(ctx context.Context, changed func()) error
	// Describe names the source for logs.
	Describe() string
}

func newSource(c *Config, client *http.Client) source {
	switch {
	case c.Bundle != "" && strings.Contains(c.Bundle, "://"):
		return &urlSource{url: c.Bundle, client: client, poll: c.BundlePoll.D()}
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
// table on every load.
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

func (s *filesSource) Load(ctx context.Context) (*bundle.Bundle, bool, error) {
	b, err := policy.BuildFromFiles(ctx, s.providers, s.policies, s.routes, s.settings, "")
	return b, false, err
}

func (s *filesSource) Watch(ctx context.Context, changed func()) error {
	if !s.watch {
		return nil
	}
	paths := append([]string{s.providers}, s.policies...)
	if s.routes != "" {
		paths = append(paths, s.routes)
	}
	return watchPaths(ctx, paths, changed)
}

// bundleFileSource reads a bundle tarball or directory.
type bundleFileSource struct {
	path  string
	watch bool
}

func (s *bundleFileSource) Describe() string { return "bundle " + s.path }

func (s *bundleFileSource) Load(context.Context) (*bundle.Bundle, bool, error) {
	b, err := policy.ReadBundleFile(s.path)
	return b, false, err
}

func (s *bundleFileSource) Watch(ctx context.Context, changed func()) error {
	if !s.watch {
		return nil
	}
	return watchPaths(ctx, []string{s.path}, changed)
}

// watchPaths watches the directories holding paths (so that editors that
// replace files by renaming are seen) and calls changed, debounced, when
// anything under them changes.
func watchPaths(ctx context.Context, paths []string, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file watch: %w", err)
	}
	defer w.Close()
	dirs := map[string]bool{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("file watch: %w", err)
		}
		if st.IsDir() {
			_ = filepath.WalkDir(p, func(d string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs[d] = true
				}
				return nil
			})
		} else {
			dirs[filepath.Dir(p)] = true
		}
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("file watch %s: %w", d, err)
		}
	}
	const debounce = 250 * time.Millisecond
	var timer *time.Timer
	fire := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.AfterFunc(debounce, func() {
					select {
					case fire <- struct{}{}:
					default:
					}
				})
			} else {
				timer.Reset(debounce)
			}
		case <-fire:
			changed()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("file watch: %w", err)
		}
	}
}

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// urlSource polls a bundle URL with If-None-Match.
type urlSource struct {
	url    string
	client *http.Client
	poll   time.Duration
	etag   string // of the last bundle loaded
	hash   string // its content hash, for servers that send no ETag
}

func (s *urlSource) Describe() string { return "bundle " + s.url }

func (s *urlSource) Load(ctx context.Context) (*bundle.Bundle, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, false, err
	}
	if s.etag != "" {
		req.Header.Set("If-None-Match", s.etag)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("bundle %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, true, nil
	case http.StatusOK:
	default:
		return nil, false, fmt.Errorf("bundle %s: HTTP %d", s.url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, policy.MaxBundleBytes+1))
	if err != nil {
		return nil, false, fmt.Errorf("bundle %s: %w", s.url, err)
	}
	if len(data) > policy.MaxBundleBytes {
		return nil, false, fmt.Errorf("bundle %s is larger than %d bytes", s.url, policy.MaxBundleBytes)
	}
	b, err := policy.ReadBundle(bytes.NewReader(data))
	if err != nil {
		return nil, false, fmt.Errorf("bundle %s: %w", s.url, err)
	}
	if b.Manifest.Revision == "" {
		b.Manifest.Revision = "sha256-" + hex.EncodeToString(sum256(data))[:16]
	}
	// Without an ETag, compare content: an unchanged bundle is not reloaded.
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	if resp.Header.Get("ETag") == "" && hash == s.hash {
		return nil, true, nil
	}
	s.etag, s.hash = resp.Header.Get("ETag"), hash
	return b, false, nil
}

func (s *urlSource) Watch(ctx context.Context, changed func()) error {
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
