package server

import (
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/gorilla/mux"
)

// PprofPath is the prefix of Go's profiling endpoints on the admin
// listener (pprof: true, serve --pprof).
const PprofPath = "/debug/pprof/"

// registerPprof mounts net/http/pprof's handlers on the admin router, each
// behind the admin credential. They are mounted explicitly: the package's
// init also registers them on http.DefaultServeMux, which no listener of
// the sidecar serves. Only GET and HEAD: profiles are read, never changed
// (no cross-origin POST to refuse).
func (s *Server) registerPprof(r *mux.Router) {
	sub := r.PathPrefix(strings.TrimSuffix(PprofPath, "/")).Subrouter()
	sub.Use(s.requireAdmin)
	get := []string{http.MethodGet, http.MethodHead}
	sub.HandleFunc("/cmdline", pprof.Cmdline).Methods(get...)
	sub.HandleFunc("/profile", pprof.Profile).Methods(get...)
	sub.HandleFunc("/symbol", pprof.Symbol).Methods(get...)
	sub.HandleFunc("/trace", pprof.Trace).Methods(get...)
	// The index, and every named profile (heap, goroutine, allocs, block,
	// mutex, threadcreate) under /debug/pprof/<name>.
	sub.PathPrefix("/").HandlerFunc(pprof.Index).Methods(get...)
}

// requireAdmin answers 401 unless the request holds the admin credential
// (adminAuthorized: the bearer token, or a verified admin client
// certificate).
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.adminAuthorized(r) {
			s.unauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// unauthorized is the admin endpoints' 401: the challenge, and which
// credentials would do.
func (s *Server) unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="oidc-sidecar admin"`)
	msg := "an admin bearer credential is required (admin_token_env)"
	if s.cfg.AdminTLS.ClientCAFile != "" {
		msg = "an admin credential is required: Authorization: Bearer <admin token> (admin_token_env), or a client certificate signed by admin_tls.client_ca_file"
	}
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": msg})
}
