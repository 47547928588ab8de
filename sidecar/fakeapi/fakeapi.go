// Package fakeapi is a small fake of Buddy's REST API, the sidecar's
// upstream in the demo, the end-to-end tests and the benchmarks.
//
// It accepts only Authorization: Bearer <upstream token> (anything else is
// Buddy's 401 {"errors":[{"message":"Wrong authentication data"}]}), records
// every request it receives, and answers:
//
//	GET  /user                                                     the user
//	GET  /workspaces                                               workspace list
//	GET  /workspaces/{workspace}                                   a workspace
//	GET  /workspaces/{workspace}/projects                          project list
//	GET  /workspaces/{workspace}/projects/{project}                a project
//	GET  …/projects/{project}/pipelines/{pipeline}/executions      execution list
//	POST …/projects/{project}/pipelines/{pipeline}/executions      runs one: 200, status INPROGRESS
//	GET  …/executions/{execution}                                  one execution
//	any other method and path under /user or /workspaces           200 {} (204 for DELETE)
//	anything else                                                  404 in Buddy's errors shape
//
// and two test endpoints, which need the upstream token too:
//
//	/_fake/slow?ms=N                         answers after N ms (0–60000)
//	/_fake/stream?chunks=N[&interval_ms=M]   N NDJSON lines (1–10000), flushed one by one, M ms apart (0–10000)
//
// Every answer carries X-Rate-Limit-Limit and X-Rate-Limit-Remaining, as
// Buddy's do. Links in bodies use Buddy's own hosts (APIBase, AppBase), so
// bodies do not depend on where the fake listens. An API is safe for
// concurrent use.
package fakeapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/apierr"
)

const (
	// APIBase and AppBase are the hosts that links in bodies point at.
	APIBase = "https://api.buddy.works"
	AppBase = "https://app.buddy.works"
	// RateLimit is the X-Rate-Limit-Limit value; X-Rate-Limit-Remaining
	// counts down from it with each request and starts over.
	RateLimit = 1000
	// MaxRecorded is how many of the most recent requests Requests keeps.
	MaxRecorded = 10000
	// RecordedBodyBytes is how much of each body is recorded.
	RecordedBodyBytes = 1024
	// maxBody bounds what is read of a request body.
	maxBody = 1 << 20

	maxSlowMS      = 60000
	maxChunks      = 10000
	maxIntervalMS  = 10000
	wrongAuth      = "Wrong authentication data"
	historicalExec = 1
	firstNewExec   = 100
)

// Received is one request as it arrived.
type Received struct {
	Method   string
	Path     string // escaped, as sent (URL.EscapedPath)
	RawQuery string
	Host     string
	Header   http.Header // a clone
	Body     []byte      // the first RecordedBodyBytes bytes
}

// API is the fake; it is an http.Handler.
type API struct {
	token []byte

	mu         sync.Mutex
	received   []Received
	served     int
	nextExec   int
	executions map[pipelineKey][]*execution // oldest first
}

type pipelineKey struct{ workspace, project, pipeline string }

type execution struct {
	id       int
	start    time.Time
	comment  string
	revision string
	branch   string
	refresh  bool
}

// New returns a fake that accepts only Authorization: Bearer upstreamToken.
func New(upstreamToken string) *API {
	a := &API{token: []byte(upstreamToken)}
	a.resetLocked()
	return a
}

// Requests returns the requests received so far (the most recent
// MaxRecorded), oldest first, including the ones refused.
func (a *API) Requests() []Received {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.received
	if len(rs) > MaxRecorded {
		rs = rs[len(rs)-MaxRecorded:]
	}
	out := make([]Received, len(rs))
	for i, r := range rs {
		r.Header = r.Header.Clone()
		r.Body = bytes.Clone(r.Body)
		out[i] = r
	}
	return out
}

// Reset forgets the recorded requests and the executions run, and restarts
// the rate-limit countdown.
func (a *API) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resetLocked()
}

func (a *API) resetLocked() {
	a.received = nil
	a.served = 0
	a.nextExec = firstNewExec
	a.executions = map[pipelineKey][]*execution{}
}

// record stores the request and returns X-Rate-Limit-Remaining for it.
func (a *API) record(r *http.Request, body []byte) int {
	rec := Received{
		Method:   r.Method,
		Path:     r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery,
		Host:     r.Host,
		Header:   r.Header.Clone(),
		Body:     bytes.Clone(body[:min(len(body), RecordedBodyBytes)]),
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.received) >= 2*MaxRecorded { // amortized trimming
		a.received = append(a.received[:0:0], a.received[len(a.received)-MaxRecorded:]...)
	}
	a.received = append(a.received, rec)
	a.served++
	return RateLimit - 1 - (a.served-1)%RateLimit
}

func (a *API) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(a.token) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), a.token) == 1
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	remaining := a.record(r, body)
	h := w.Header()
	h.Set("X-Rate-Limit-Limit", strconv.Itoa(RateLimit))
	h.Set("X-Rate-Limit-Remaining", strconv.Itoa(remaining))
	if !a.authorized(r) {
		apierr.Write(w, http.StatusUnauthorized, wrongAuth)
		return
	}

	segs, ok := segments(r.URL.EscapedPath())
	if !ok {
		notFound(w, r)
		return
	}
	if len(segs) == 2 && segs[0] == "_fake" {
		switch segs[1] {
		case "slow":
			slow(w, r)
			return
		case "stream":
			stream(w, r)
			return
		}
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	n := len(segs)
	switch {
	case get && n == 1 && segs[0] == "user":
		writeJSON(w, http.StatusOK, user())
	case get && n == 1 && segs[0] == "workspaces":
		writeJSON(w, http.StatusOK, workspaces())
	case get && n == 2 && segs[0] == "workspaces":
		writeJSON(w, http.StatusOK, workspace(segs[1]))
	case get && n == 3 && segs[0] == "workspaces" && segs[2] == "projects":
		writeJSON(w, http.StatusOK, projects(segs[1]))
	case get && n == 4 && segs[0] == "workspaces" && segs[2] == "projects":
		writeJSON(w, http.StatusOK, project(segs[1], segs[3], true))
	case n == 7 && isExecutions(segs) && get:
		a.listExecutions(w, key(segs))
	case n == 7 && isExecutions(segs) && r.Method == http.MethodPost:
		a.runExecution(w, key(segs), body)
	case n == 8 && isExecutions(segs) && get:
		a.getExecution(w, key(segs), segs[7])
	case segs[0] == "user" || segs[0] == "workspaces":
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	default:
		notFound(w, r)
	}
}

// segments splits an escaped path into unescaped segments; ok is false for
// "/", empty segments (// or a trailing /) and . or .. segments.
func segments(escaped string) ([]string, bool) {
	p, found := strings.CutPrefix(escaped, "/")
	if !found || p == "" {
		return nil, false
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" || u == "." || u == ".." {
			return nil, false
		}
		segs[i] = u
	}
	return segs, true
}

func isExecutions(s []string) bool {
	return s[0] == "workspaces" && s[2] == "projects" && s[4] == "pipelines" && s[6] == "executions"
}

func key(s []string) pipelineKey { return pipelineKey{s[1], s[3], s[5]} }

func notFound(w http.ResponseWriter, r *http.Request) {
	apierr.Write(w, http.StatusNotFound, "Not found: "+r.Method+" "+r.URL.EscapedPath())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		apierr.Write(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (a *API) listExecutions(w http.ResponseWriter, k pipelineKey) {
	a.mu.Lock()
	runs := a.executions[k]
	list := make([]any, 0, len(runs)+1)
	for i := len(runs) - 1; i >= 0; i-- { // newest first
		list = append(list, executionJSON(k, runs[i], "INPROGRESS"))
	}
	a.mu.Unlock()
	list = append(list, executionJSON(k, historical(), "SUCCESSFUL"))
	base := pipelineURL(k) + "/executions"
	writeJSON(w, http.StatusOK, map[string]any{
		"url":                 base,
		"html_url":            pipelineHTML(k) + "/executions",
		"page":                1,
		"page_size":           20,
		"total_page_count":    1,
		"element_count":       len(list),
		"total_element_count": len(list),
		"executions":          list,
	})
}

func (a *API) runExecution(w http.ResponseWriter, k pipelineKey, body []byte) {
	var in struct {
		ToRevision struct {
			Revision string `json:"revision"`
		} `json:"to_revision"`
		Branch struct {
			Name string `json:"name"`
		} `json:"branch"`
		Comment string `json:"comment"`
		Refresh bool   `json:"refresh"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			apierr.Write(w, http.StatusBadRequest, "Invalid JSON body: "+err.Error())
			return
		}
	}
	e := &execution{
		start:    time.Now().UTC().Truncate(time.Second),
		comment:  in.Comment,
		revision: in.ToRevision.Revision,
		branch:   in.Branch.Name,
		refresh:  in.Refresh,
	}
	a.mu.Lock()
	e.id = a.nextExec
	a.nextExec++
	a.executions[k] = append(a.executions[k], e)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, executionJSON(k, e, "INPROGRESS"))
}

func (a *API) getExecution(w http.ResponseWriter, k pipelineKey, idText string) {
	id, err := strconv.Atoi(idText)
	if err == nil && id == historicalExec {
		writeJSON(w, http.StatusOK, executionJSON(k, historical(), "SUCCESSFUL"))
		return
	}
	a.mu.Lock()
	var found *execution
	for _, e := range a.executions[k] {
		if err == nil && e.id == id {
			found = e
		}
	}
	a.mu.Unlock()
	if found == nil {
		apierr.Write(w, http.StatusNotFound, "Execution not found")
		return
	}
	writeJSON(w, http.StatusOK, executionJSON(k, found, "INPROGRESS"))
}

// slow answers after ?ms=N milliseconds, or not at all if the client
// leaves first.
func slow(w http.ResponseWriter, r *http.Request) {
	ms, ok := intParam(w, r, "ms", 0, 0, maxSlowMS)
	if !ok {
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return
	case <-t.C:
	}
	writeJSON(w, http.StatusOK, map[string]any{"slept_ms": ms})
}

// stream writes ?chunks=N NDJSON lines, flushing each, ?interval_ms=M apart.
func stream(w http.ResponseWriter, r *http.Request) {
	n, ok := intParam(w, r, "chunks", 3, 1, maxChunks)
	if !ok {
		return
	}
	interval, ok := intParam(w, r, "interval_ms", 0, 0, maxIntervalMS)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for i := 1; i <= n; i++ {
		if i > 1 && interval > 0 {
			t := time.NewTimer(time.Duration(interval) * time.Millisecond)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if _, err := fmt.Fprintf(w, "{\"chunk\":%d,\"of\":%d}\n", i, n); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// intParam reads an integer query parameter in [lo, hi], def if absent;
// otherwise it answers 400 and returns false.
func intParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		apierr.Write(w, http.StatusBadRequest, fmt.Sprintf("%s must be an integer from %d to %d", name, lo, hi))
		return 0, false
	}
	return v, true
}
