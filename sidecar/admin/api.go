// Package admin serves the admin API (/_sidecar/admin/v1/providers…) and
// the provider console (GET / on the admin listener): list, create, edit and
// delete providers, test a token against a provider's conditions, and see
// its recent exchange decisions.
//
// providers.yaml stays the source of truth. A write is checked with the
// providers file's own validator (provider.Parse), built and compiled into
// the next policy revision, and only then written (temporary file, fsync,
// rename) by replacing the text of the one entry it changes, so comments,
// order and formatting of every other entry survive. Writes are serialized;
// the API answers once the new revision serves.
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/sameorigin"
)

// APIPrefix is where the admin API lives on the admin listener.
const APIPrefix = "/_sidecar/admin/v1"

// Options configure the admin API and console.
type Options struct {
	// ProvidersPath is the providers file; "" when the policy comes from a
	// bundle (then everything is read-only).
	ProvidersPath string
	// ReadOnly, when not "", says why writes are refused (e.g. the source is
	// a bundle).
	ReadOnly string
	// Engine serves the current policy (lists for the console, evaluate).
	Engine *policy.Engine
	// Check builds and compiles the policy a new providers file would give;
	// a write happens only when it succeeds.
	Check func(ctx context.Context, f *provider.File) error
	// Reload makes the sidecar serve the file as written now.
	Reload func(ctx context.Context) error
	// Authorized reports whether r carries the admin credential (bearer or
	// client certificate).
	Authorized func(r *http.Request) bool
	// Credential checks an admin credential typed into the console's login
	// form; nil: no credential is configured (the console cannot log in).
	Credential func(s string) bool
	// Decisions keeps the recent exchange decisions per provider.
	Decisions Decisions
	// RevokeTokens revokes every token a provider issued; nil when this
	// build cannot (the console hides its button).
	// It answers the JSON body of the 200, or an error when nothing was
	// revoked (503).
	RevokeTokens func(ctx context.Context, providerID, clientIP string) (any, error)
	// Now is the clock (sessions, evaluate); default time.Now.
	Now func() time.Time
	// SessionTTL is how long a console login lasts; default 8 h.
	SessionTTL time.Duration
}

// Handler serves the admin API and the console.
type Handler struct {
	o        Options
	writeMu  sync.Mutex // serializes writes to the providers file
	sessions *sessions
	logins   *loginLimiter
	list     listCache
}

// New returns the handler.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.Decisions == nil {
		o.Decisions = NewRing()
	}
	return &Handler{o: o, sessions: newSessions(o.Now, o.SessionTTL), logins: newLoginLimiter(o.Now)}
}

// Register adds the API and console routes to r.
func (h *Handler) Register(r *mux.Router) {
	api := r.PathPrefix(APIPrefix).Subrouter()
	api.Use(h.apiAuth)
	api.HandleFunc("/providers", h.listProviders).Methods(http.MethodGet)
	api.HandleFunc("/providers", h.createProvider).Methods(http.MethodPost)
	api.HandleFunc("/providers/{id}", h.getProvider).Methods(http.MethodGet)
	api.HandleFunc("/providers/{id}", h.putProvider).Methods(http.MethodPut)
	api.HandleFunc("/providers/{id}", h.deleteProvider).Methods(http.MethodDelete)
	api.HandleFunc("/providers/{id}/evaluate", h.evaluate).Methods(http.MethodPost)
	api.HandleFunc("/providers/{id}/decisions", h.decisions).Methods(http.MethodGet)
	api.HandleFunc("/providers/{id}/revoke-tokens", h.revokeTokens).Methods(http.MethodPost)
	api.HandleFunc("/validate", h.validate).Methods(http.MethodPost)
	api.HandleFunc("/conditions/parse", h.parseConditions).Methods(http.MethodPost)
	api.HandleFunc("/conditions/render", h.renderConditions).Methods(http.MethodPost)
	api.HandleFunc("/schema", h.schema).Methods(http.MethodGet)
	h.registerConsole(r)
}

// readOnly says why writes are refused now, or "".
func (h *Handler) readOnly() string {
	if h.o.ReadOnly != "" {
		return h.o.ReadOnly
	}
	if h.o.ProvidersPath == "" {
		return "the policy comes from a bundle, not a providers file; edit the providers file the bundle is built from"
	}
	return writable(h.o.ProvidersPath)
}

// apiAuth lets in the admin credential, or a console session (whose
// mutations must carry the session's CSRF token and a same-origin Origin).
func (h *Handler) apiAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.o.Authorized != nil && h.o.Authorized(r) {
			// A client certificate is an ambient credential: a browser that
			// holds one presents it on a cross-site form post too. So a
			// mutation that a browser marks as cross-origin is refused
			// whatever the credential (curl and scripts send no Origin).
			if sameorigin.Unsafe(r.Method) {
				if msg := sameorigin.Check(r); msg != "" {
					writeJSON(w, http.StatusForbidden, map[string]any{"error": msg})
					return
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		if s := h.sessions.get(r); s != nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			if msg := s.checkMutation(r); msg != "" {
				writeJSON(w, http.StatusForbidden, map[string]any{"error": msg})
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="oidc-sidecar admin"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "the admin credential is required: Authorization: Bearer <admin token> (admin_token_env), or a console session"})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrors(w http.ResponseWriter, errs []FieldError) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": errs})
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": fmt.Sprintf("the body is larger than %d bytes or unreadable: %v", maxBody, err)})
		return nil, false
	}
	return b, true
}

// etagOf is a provider's entity tag: a hash of its API representation, so
// an edit of another provider does not make it stale.
func etagOf(v map[string]any) string {
	b, _ := json.Marshal(v)
	s := sha256.Sum256(b)
	return `"` + hex.EncodeToString(s[:12]) + `"`
}

// entries are the providers as the API shows them, in file order, with the
// list's ETag.
type entry struct {
	id   string
	json map[string]any
}

func (h *Handler) entries() ([]entry, string, error) {
	if h.o.ProvidersPath == "" {
		snap := h.o.Engine.Current()
		if snap == nil {
			return nil, "", errors.New("no policy loaded")
		}
		var out []entry
		for _, p := range sortedProviders(snap) {
			out = append(out, entry{string(p.ID), providerJSON(p)})
		}
		return out, `"rev-` + snap.Revision + `"`, nil
	}
	d, err := readDoc(h.o.ProvidersPath)
	if err != nil {
		return nil, "", err
	}
	out := make([]entry, 0, len(d.items))
	for _, it := range d.items {
		j, err := entryJSON(it.node)
		if err != nil {
			return nil, "", err
		}
		out = append(out, entry{it.id, j})
	}
	return out, fileETag(d.data), nil
}

func (h *Handler) listProviders(w http.ResponseWriter, r *http.Request) {
	es, etag, err := h.entries()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
		return
	}
	l := make([]map[string]any, len(es))
	for i, e := range es {
		l[i] = e.json
	}
	w.Header().Set("ETag", etag)
	body := map[string]any{"providers": l}
	if ro := h.readOnly(); ro != "" {
		body["read_only"] = ro
	}
	writeJSON(w, http.StatusOK, body)
}

func (h *Handler) find(id string) (map[string]any, error) {
	es, _, err := h.entries()
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if e.id == id {
			return e.json, nil
		}
	}
	return nil, nil
}

func notFound(w http.ResponseWriter, id string) {
	writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no provider with id %q", id)})
}

func (h *Handler) getProvider(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	p, err := h.find(id)
	switch {
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
	case p == nil:
		notFound(w, id)
	default:
		w.Header().Set("ETag", etagOf(p))
		writeJSON(w, http.StatusOK, p)
	}
}

// errReadOnly and friends are the write path's outcomes besides success.
type writeError struct {
	status int
	body   any
}

func (e *writeError) Error() string { return fmt.Sprint(e.body) }

// write runs one serialized edit: edit returns the new file (or a
// *writeError); the result is validated with the file's rules, compiled,
// written atomically and served before write returns.
func (h *Handler) write(ctx context.Context, edit func(d *doc) ([]byte, int, error)) error {
	if ro := h.readOnly(); ro != "" {
		return &writeError{http.StatusForbidden, map[string]any{"error": "read-only: " + ro, "read_only": ro}}
	}
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	d, err := readDoc(h.o.ProvidersPath)
	if err != nil {
		return &writeError{http.StatusInternalServerError, map[string]any{"error": err.Error()}}
	}
	data, index, err := edit(d)
	if err != nil {
		return err
	}
	pf, err := provider.Parse(h.o.ProvidersPath, data)
	if err != nil {
		return &writeError{http.StatusUnprocessableEntity, map[string]any{"errors": fieldErrors(err, index)}}
	}
	if h.o.Check != nil {
		if err := h.o.Check(ctx, pf); err != nil {
			return &writeError{http.StatusUnprocessableEntity, map[string]any{"errors": []FieldError{{"", "the policy would not compile with this change: " + err.Error()}}}}
		}
	}
	if err := writeAtomic(d.path, data, d.mode); err != nil {
		return &writeError{http.StatusInternalServerError, map[string]any{"error": "writing the providers file: " + err.Error()}}
	}
	if h.o.Reload != nil {
		if err := h.o.Reload(ctx); err != nil {
			// Put the previous file back: the API never leaves a file that
			// does not serve.
			rerr := writeAtomic(d.path, d.data, d.mode)
			msg := "the new providers file did not load, so the previous one was restored: " + err.Error()
			if rerr != nil {
				msg += "; restoring it failed too: " + rerr.Error()
			}
			return &writeError{http.StatusInternalServerError, map[string]any{"error": msg}}
		}
	}
	return nil
}

func (h *Handler) finishWrite(w http.ResponseWriter, err error) bool {
	if err == nil {
		return true
	}
	var we *writeError
	if errors.As(err, &we) {
		writeJSON(w, we.status, we.body)
		return false
	}
	writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
	return false
}

// writeContext bounds a write (compile and reload) independently of the
// client: a client that gives up does not leave a half-done write.
func writeContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), 60*time.Second)
}

func (h *Handler) createProvider(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := uuid.NewString()
	var out map[string]any
	ctx, cancel := writeContext(r)
	defer cancel()
	err := h.write(ctx, func(d *doc) ([]byte, int, error) {
		e, errs := decodeEntry(body, id, true)
		if len(errs) == 0 {
			errs = validateEntry(d, e)
		}
		if len(errs) > 0 {
			return nil, 0, &writeError{http.StatusUnprocessableEntity, map[string]any{"errors": errs}}
		}
		var err error
		if out, err = entryJSON(e); err != nil {
			return nil, 0, err
		}
		data, err := d.appended(e)
		return data, len(d.items), err
	})
	if !h.finishWrite(w, err) {
		return
	}
	w.Header().Set("Location", APIPrefix+"/providers/"+id)
	w.Header().Set("ETag", etagOf(out))
	writeJSON(w, http.StatusCreated, out)
}

// precondition checks If-Match against the provider's current ETag.
func precondition(r *http.Request, current map[string]any) *writeError {
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "" {
		return &writeError{http.StatusPreconditionRequired, map[string]any{"error": "If-Match is required: send the ETag of the provider as you last read it (GET " + APIPrefix + "/providers/{id}), so that two edits never silently overwrite each other"}}
	}
	if im == "*" {
		return nil
	}
	cur := etagOf(current)
	for _, t := range strings.Split(im, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == cur {
			return nil
		}
	}
	return &writeError{http.StatusPreconditionFailed, map[string]any{"error": "the provider changed since you read it (If-Match " + im + " is stale; its ETag is now " + cur + "): read it again and reapply your change", "etag": cur}}
}

// edit finds the provider's entry for PUT and DELETE.
func editEntry(r *http.Request, d *doc, id string) (int, error) {
	i := d.find(id)
	if i < 0 {
		return 0, &writeError{http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no provider with id %q", id)}}
	}
	cur, err := entryJSON(d.items[i].node)
	if err != nil {
		return 0, err
	}
	if we := precondition(r, cur); we != nil {
		return 0, we
	}
	return i, nil
}

func (h *Handler) putProvider(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var out map[string]any
	ctx, cancel := writeContext(r)
	defer cancel()
	err := h.write(ctx, func(d *doc) ([]byte, int, error) {
		i, err := editEntry(r, d, id)
		if err != nil {
			return nil, 0, err
		}
		e, errs := decodeEntry(body, id, false)
		if len(errs) == 0 {
			errs = validateEntry(d, e)
		}
		if len(errs) > 0 {
			return nil, 0, &writeError{http.StatusUnprocessableEntity, map[string]any{"errors": errs}}
		}
		if out, err = entryJSON(e); err != nil {
			return nil, 0, err
		}
		text, err := d.render(e)
		if err != nil {
			return nil, 0, err
		}
		return d.replaced(i, text), i, nil
	})
	if !h.finishWrite(w, err) {
		return
	}
	w.Header().Set("ETag", etagOf(out))
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) deleteProvider(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ctx, cancel := writeContext(r)
	defer cancel()
	err := h.write(ctx, func(d *doc) ([]byte, int, error) {
		i, err := editEntry(r, d, id)
		if err != nil {
			return nil, 0, err
		}
		if len(d.items) == 1 {
			out, err := d.emptied()
			return out, -1, err
		}
		return d.replaced(i, ""), -1, nil
	})
	if !h.finishWrite(w, err) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) validate(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := uuid.NewString()
	var probe struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &probe)
	if probe.ID != "" {
		id = probe.ID
	}
	e, errs := decodeEntry(body, id, false)
	if len(errs) == 0 {
		errs = validateEntry(&doc{}, e)
	}
	if errs == nil {
		errs = []FieldError{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"errors": errs})
}

// evaluateRequest is the body of "test a token".
type evaluateRequest struct {
	Claims json.RawMessage `json:"claims"`
	Token  string          `json:"token"`
	IP     string          `json:"ip"`
	Scopes []string        `json:"scopes"`
}

func (h *Handler) evaluate(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req evaluateRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, []FieldError{{"", `the body must be {"claims": {...}} or {"token": "<JWT>"} (optional "ip", "scopes"): ` + err.Error()}})
		return
	}
	if t := bytes.TrimSpace(req.Claims); len(t) == 0 || string(t) == "null" {
		req.Claims = nil
	}
	if (req.Claims == nil) == (strings.TrimSpace(req.Token) == "") {
		writeErrors(w, []FieldError{{"claims", `give exactly one of "claims" (a JSON object of claims) or "token" (a JWT)`}})
		return
	}
	// The claims must be ones a token could carry: the exchange's rules
	// (one object, no duplicate names, nesting at most 32 deep, the size
	// of a token's claims), checked here rather than failing in the policy.
	var claims map[string]any
	if req.Claims != nil {
		var err error
		if claims, err = oidc.DecodeClaims(req.Claims); err != nil {
			writeErrors(w, []FieldError{{"claims", "not claims a token could carry: " + err.Error() + ` (give a JSON object such as {"sub": "repo:octo-org/octo-repo:ref:refs/heads/main"}, nested at most 32 deep, at most 16384 bytes)`}})
			return
		}
	} else if len(req.Token) > oidc.DefaultMaxTokenBytes {
		writeErrors(w, []FieldError{{"token", fmt.Sprintf("the token is %d bytes, more than the %d-byte limit the exchange applies", len(req.Token), oidc.DefaultMaxTokenBytes)}})
		return
	}
	snap := h.o.Engine.Current()
	if snap == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "no policy loaded"})
		return
	}
	p := snap.Providers[id]
	if p == nil {
		notFound(w, id)
		return
	}
	resp := map[string]any{"provider_id": id}
	if req.Token != "" {
		var err error
		if _, claims, err = oidc.Peek(strings.TrimSpace(req.Token)); err != nil {
			writeErrors(w, []FieldError{{"token", "not a JWT: " + err.Error()}})
			return
		}
		resp["unverified"] = true
		resp["note"] = "claims read from the token WITHOUT verifying its signature, expiry or audience: this explains the policy, it does not authenticate"
		resp["mismatch"] = p.TokenMismatch(claims)
		resp["claims"] = claims
	}
	ip := req.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	d, err := snap.Exchange(r.Context(), policy.ExchangeInput{ProviderID: id, Claims: claims, ClientIP: ip, Time: h.o.Now(), RequestedScopes: req.Scopes})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "policy evaluation failed: " + err.Error()})
		return
	}
	if d.Reasons == nil {
		d.Reasons = []policy.Reason{}
	}
	resp["decision"] = d
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) decisions(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ds, err := h.o.Decisions.Recent(r.Context(), id)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "recent decisions unavailable: " + err.Error()})
		return
	}
	if ds == nil {
		ds = []Decision{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"decisions": ds})
}

func (h *Handler) revokeTokens(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if h.o.RevokeTokens == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]any{"error": "bulk revocation is not available in this build"})
		return
	}
	if _, err := provider.ParseID(id); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "the provider id in the path: " + err.Error()})
		return
	}
	res, err := h.o.RevokeTokens(r.Context(), id, remoteHost(r))
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// remoteHost is the caller's address (the admin listener trusts no proxy).
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// sortedProviders are a snapshot's providers in file order.
func sortedProviders(snap *policy.Snapshot) []*provider.Provider {
	l := make([]*provider.Provider, 0, len(snap.Providers))
	for _, p := range snap.Providers {
		l = append(l, p)
	}
	slices.SortFunc(l, func(a, b *provider.Provider) int {
		if a.Source.Line != b.Source.Line {
			return a.Source.Line - b.Source.Line
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	return l
}
