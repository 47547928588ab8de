package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"


	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/revocation"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Admin paths for running several replicas as one service.
const (
	// RevokeProviderTokensPath is POST: end every token of one provider
	// issued before now, on every replica.
	RevokeProviderTokensPath = "/_sidecar/admin/v1/providers/{id}/revoke-tokens"
	// BundlePath serves the active revision as a bundle (.tar.gz).
	BundlePath = "/_sidecar/bundle"
)

// newHub builds the invalidation hub on the store's backend.
func newHub(st token.Store, s *Server, now func() time.Time) (*revocation.Hub, error) {
	var b revocation.Backend
	if rs, ok := st.(*token.RedisStore); ok {
		b = revocation.NewRedis(rs)
	} else {
		b = revocation.NewMemory(now)
	}
	return revocation.New(revocation.Options{Backend: b, Logger: s.log, Metrics: s.metrics})
}

// runHub subscribes until ctx ends and retries epoch raises of removed
// providers that failed; the returned channel closes when both stopped.
func (s *Server) runHub(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s.reloadMu.Lock()
					s.retryPendingRaises(ctx)
					s.reloadMu.Unlock()
				}
			}
		}()
		s.hub.Run(ctx)
	}()
	return done
}

// removedProviders returns the ids in prev but not in next, sorted.
func removedProviders(prev, next *policy.Snapshot) []string {
	if prev == nil {
		return nil
	}
	var out []string
	for id := range prev.Providers {
		if _, ok := next.Providers[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// checkReadded refuses a snapshot that brings back a provider whose
// removal could not yet be recorded (its epoch raise is pending): serving
// it would revive the provider's old tokens. It tries the raise once more
// first. s.reloadMu is held.
func (s *Server) checkReadded(ctx context.Context, next *policy.Snapshot) error {
	if len(s.pendingRaise) == 0 {
		return nil
	}
	s.retryPendingRaises(ctx)
	var back []string
	for id := range s.pendingRaise {
		if _, ok := next.Providers[id]; ok {
			back = append(back, id)
		}
	}
	if len(back) == 0 {
		return nil
	}
	sort.Strings(back)
	return fmt.Errorf("provider(s) %s were removed while the token store was unreachable, so their old tokens could not be ended yet; "+
		"adding them back now would make those tokens valid again. Retry when Redis is reachable (the removal is recorded automatically then), or give the provider a new id",
		strings.Join(back, ", "))
}

// raiseRemoved raises the epoch of every removed provider, so that adding
// the same id again never revives its old tokens. Failures (Redis
// unreachable) are kept and retried every second; the removal itself has
// already taken effect (the policy no longer knows the provider). s.reloadMu
// is held.
func (s *Server) raiseRemoved(ctx context.Context, ids []string) {
	for _, id := range ids {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		epoch, err := s.hub.RevokeProvider(rctx, id)
		cancel()
		switch {
		case err != nil && epoch == 0:
			if s.pendingRaise == nil {
				s.pendingRaise = map[string]bool{}
			}
			s.pendingRaise[id] = true
			s.log.Error("provider removed, but its tokens could not be ended in the token store; retrying every second (until then, adding the same id back is refused)",
				"provider_id", id, "error", err.Error())
		default:
			s.auditProviderEnded(ctx, "provider_removed", id, epoch, "")
		}
	}
}

// retryPendingRaises retries failed raises. s.reloadMu is held.
func (s *Server) retryPendingRaises(ctx context.Context) {
	for id := range s.pendingRaise {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		epoch, err := s.hub.RevokeProvider(rctx, id)
		cancel()
		if err != nil && epoch == 0 {
			continue
		}
		delete(s.pendingRaise, id)
		s.log.Info("the removed provider's tokens are now ended in the token store", "provider_id", id, "epoch", epoch)
		s.auditProviderEnded(ctx, "provider_removed", id, epoch, "")
	}
}

func (s *Server) auditProviderEnded(ctx context.Context, event, id string, epoch int64, clientIP string) {
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.String("provider_id", id),
		slog.Int64("epoch", epoch),
		slog.String("cut_off", cutOff(epoch)),
	}
	if clientIP != "" {
		attrs = append(attrs, slog.String("client_ip", clientIP))
	}
	s.audit.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, event, attrs...)
}

// cutOff renders an epoch (unix ms) as a time.
func cutOff(epoch int64) string {
	return time.UnixMilli(epoch).UTC().Format(time.RFC3339Nano)
}

// revokeProviderTokens ends every token of provider id issued before now,
// on every replica (the admin API's POST RevokeProviderTokensPath, its
// console button and `oidc-sidecar admin revoke-provider-tokens`). The
// result is the answer's body; an error means nothing was revoked.
func (s *Server) revokeProviderTokens(ctx context.Context, id, clientIP string) (any, error) {
	known := false
	if snap := s.engine.Current(); snap != nil {
		_, known = snap.Providers[id]
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	epoch, err := s.hub.RevokeProvider(ctx, id)
	if err != nil && epoch == 0 {
		s.metrics.StoreError("revoke_provider")
		s.log.Error("bulk revocation failed; nothing was revoked", "provider_id", id, "error", err.Error())
		return nil, errors.New("the token store is unavailable, so NOTHING was revoked; retry in a few seconds")
	}
	s.auditProviderEnded(ctx, "revoke_provider_tokens", id, epoch, clientIP)
	body := map[string]any{
		"provider_id":    id,
		"provider_known": known,
		"epoch":          epoch,
		"cut_off":        cutOff(epoch),
		"revoked":        "every token of this provider issued before cut_off, on every replica sharing this token store",
		"published":      err == nil,
	}
	if err != nil {
		body["note"] = "the revocation is recorded, but the message to other replicas could not be sent; they apply it within 1s (epoch poll)"
	}
	return body, nil
}

// clientIPOf is the admin caller's address for the audit line.
func (s *Server) clientIPOf(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = strings.Trim(host[:i], "[]")
	}
	return host
}

// errNoBundle: nothing loaded yet.
var errNoBundle = errors.New("no policy revision is loaded")

// servedBundle caches the active snapshot's bundle tarball.
type servedBundle struct {
	snap *policy.Snapshot
	data []byte
}

// serveBundle is GET BundlePath: the active revision as a bundle .tar.gz
// (what `bundle build` writes, what `opa run -b` and other sidecars'
// `bundle:` URL accept), with a strong ETag (the content revision) and 304
// on If-None-Match. Admin credential required.
func (s *Server) serveBundle(w http.ResponseWriter, r *http.Request) {
	if !s.adminAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="oidc-sidecar admin"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "an admin bearer credential is required (admin_token_env)"})
		return
	}
	snap := s.engine.Current()
	if snap == nil || snap.Bundle == nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": errNoBundle.Error()})
		return
	}
	etag := `"` + snap.Revision + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	data, err := s.bundleBytes(snap)
	if err != nil {
		s.log.Error("could not serialize the active bundle", "revision", snap.Revision, "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "the active bundle could not be serialized: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

func (s *Server) bundleBytes(snap *policy.Snapshot) ([]byte, error) {
	s.bundleMu.Lock()
	defer s.bundleMu.Unlock()
	if s.bundleCache.snap == snap {
		return s.bundleCache.data, nil
	}
	var buf bytes.Buffer
	if err := policy.WriteBundle(&buf, snap.Bundle); err != nil {
		return nil, err
	}
	s.bundleCache = servedBundle{snap: snap, data: buf.Bytes()}
	return s.bundleCache.data, nil
}

// etagMatch implements If-None-Match's comparison (weak, RFC 9110 13.1.2).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
