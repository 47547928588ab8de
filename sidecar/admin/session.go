package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/sameorigin"
)

// SessionCookie is the console's session cookie.
const SessionCookie = "oidc_sidecar_console"

// sessions are the console's logins, in this process (a login is per
// replica: log in to the replica you browse).
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	now func() time.Time
	ttl time.Duration
}

type session struct {
	csrf    string
	expires time.Time
}

func newSessions(now func() time.Time, ttl time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, now: now, ttl: ttl}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and sets its cookie.
func (s *sessions) create(w http.ResponseWriter, r *http.Request) *session {
	id := randomToken()
	ss := &session{csrf: randomToken(), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	for k, v := range s.m { // drop expired sessions
		if s.now().After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = ss
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, Expires: ss.expires, MaxAge: int(s.ttl.Seconds()),
	})
	return ss
}

// get returns the request's live session, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[c.Value]
	if ss == nil {
		return nil
	}
	if s.now().After(ss.expires) {
		delete(s.m, c.Value)
		return nil
	}
	return ss
}

// end ends the request's session and clears its cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1})
}

// checkMutation says why a state-changing request of this session is
// refused, or "": it must carry the session's CSRF token (header
// X-CSRF-Token, or form field csrf) and, when the browser sends Origin, a
// same-origin one.
func (ss *session) checkMutation(r *http.Request) string {
	if msg := sameorigin.Check(r); msg != "" {
		return msg
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" && r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		tok = r.PostFormValue("csrf")
	}
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(ss.csrf)) != 1 {
		return "missing or wrong CSRF token: reload the console page and try again"
	}
	return ""
}
