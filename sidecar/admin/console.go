package admin

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/sameorigin"
)

//go:embed assets
var assets embed.FS

// PageSize is how many providers a list page shows.
const PageSize = 50

// csp allows only the console's own scripts, styles and images: no inline
// script, nothing from elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"lifetime": provider.FormatLifetime,
	"join":     strings.Join,
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"add": func(a, b int) int { return a + b },
}).ParseFS(assets, "assets/*.html"))

func (h *Handler) registerConsole(r *mux.Router) {
	static, _ := fs.Sub(assets, "assets")
	r.PathPrefix("/assets/").Handler(http.StripPrefix("/assets/", secure(http.FileServerFS(static)))).Methods(http.MethodGet)
	r.Handle("/", secure(http.HandlerFunc(h.listPage))).Methods(http.MethodGet)
	r.Handle("/login", secure(http.HandlerFunc(h.loginPage))).Methods(http.MethodGet)
	r.Handle("/login", secure(http.HandlerFunc(h.login))).Methods(http.MethodPost)
	r.Handle("/logout", secure(http.HandlerFunc(h.logout))).Methods(http.MethodPost)
	r.Handle("/providers/new", secure(http.HandlerFunc(h.newPage))).Methods(http.MethodGet)
	r.Handle("/providers/{id}", secure(http.HandlerFunc(h.providerPage))).Methods(http.MethodGet)
}

// secure sets the console's security headers.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/assets/") {
			hd.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

type pageData struct {
	Title    string
	CSRF     string
	ReadOnly string
	Error    string
	Schema   Schema
	// list
	Query    string
	Rows     []*provider.Provider
	Total    int
	Page     int
	Pages    int
	First    int
	PrevURL  string
	NextURL  string
	TotalAll int
	// form
	Type     TypeInfo
	Provider map[string]any
	ID       string
	ETag     string
	Created  bool
	Revoke   bool
}

func (h *Handler) render(w http.ResponseWriter, name string, d *pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pages.ExecuteTemplate(w, name, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// session returns the request's session, redirecting to the login page
// when there is none.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) *session {
	if s := h.sessions.get(r); s != nil {
		return s
	}
	http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	return nil
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	d := &pageData{Title: "Log in"}
	if h.o.Credential == nil {
		d.Error = "no admin credential is configured (admin_token_env): the console cannot be used"
	}
	h.render(w, "login.html", d)
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if msg := sameorigin.Check(r); msg != "" {
		http.Error(w, msg, http.StatusForbidden)
		return
	}
	client := loginKey(r)
	if wait := h.logins.blocked(client); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		w.WriteHeader(http.StatusTooManyRequests)
		h.render(w, "login.html", &pageData{Title: "Log in", Error: fmt.Sprintf(
			"too many failed logins from your address (%d within %s): try again in %d seconds", LoginFailures, LoginWindow, secs)})
		return
	}
	cred := r.PostFormValue("credential")
	if h.o.Credential == nil || !h.o.Credential(strings.TrimSpace(cred)) {
		h.logins.fail(client)
		w.WriteHeader(http.StatusUnauthorized)
		h.render(w, "login.html", &pageData{Title: "Log in", Error: "that is not the admin credential (the value of the variable admin_token_env names)"})
		return
	}
	h.logins.succeed(client)
	h.sessions.create(w, r)
	http.Redirect(w, r, localNext(r.URL.Query().Get("next")), http.StatusSeeOther)
}

// localNext is the login form's next= target if it is a path of this
// console, else "/". Browsers drop tabs and newlines from a Location
// ("/\t/evil.example" becomes "//evil.example", another site) and read "\"
// as "/", so a target with a control character or a backslash, or one that
// starts with "//", is refused.
func localNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if next[i] < 0x20 || next[i] == 0x7f {
			return "/"
		}
	}
	return next
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	s := h.sessions.get(r)
	if s == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	if msg := s.checkMutation(r); msg != "" {
		http.Error(w, msg, http.StatusForbidden)
		return
	}
	h.sessions.end(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// listCache keeps the serving snapshot's providers in file order, sorted
// once per revision.
type listCache struct {
	mu   sync.Mutex
	snap *policy.Snapshot
	l    []*provider.Provider
}

func (c *listCache) get(snap *policy.Snapshot) []*provider.Provider {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != snap {
		c.snap, c.l = snap, sortedProviders(snap)
	}
	return c.l
}

// matches reports whether p matches a search: by name, ID, or a claim in
// its trust conditions (case-insensitive).
func matches(p *provider.Provider, q string) bool {
	if q == "" {
		return true
	}
	if strings.Contains(strings.ToLower(p.Name), q) || strings.Contains(string(p.ID), q) {
		return true
	}
	if p.Conditions != nil {
		for _, c := range p.Conditions.Conditions {
			if strings.Contains(strings.ToLower(c.Claim), q) {
				return true
			}
		}
	}
	return strings.Contains(strings.ToLower(p.TrustConditions), q)
}

func (h *Handler) listPage(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	if s == nil {
		return
	}
	d := &pageData{Title: "OIDC identity providers", CSRF: s.csrf, ReadOnly: h.readOnly(), Schema: FormSchema()}
	snap := h.o.Engine.Current()
	if snap == nil {
		d.Error = "no policy loaded"
		h.render(w, "list.html", d)
		return
	}
	all := h.list.get(snap)
	d.TotalAll = len(all)
	d.Query = strings.TrimSpace(r.URL.Query().Get("q"))
	q := strings.ToLower(d.Query)
	d.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	if d.Page < 1 {
		d.Page = 1
	}
	skip := (d.Page - 1) * PageSize
	for _, p := range all {
		if !matches(p, q) {
			continue
		}
		if d.Total >= skip && len(d.Rows) < PageSize {
			d.Rows = append(d.Rows, p)
		}
		d.Total++
	}
	d.Pages = (d.Total + PageSize - 1) / PageSize
	d.First = skip + 1
	link := func(page int) string {
		v := url.Values{"page": {strconv.Itoa(page)}}
		if d.Query != "" {
			v.Set("q", d.Query)
		}
		return "/?" + v.Encode()
	}
	if d.Page > 1 {
		d.PrevURL = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = link(d.Page + 1)
	}
	h.render(w, "list.html", d)
}

func (h *Handler) typeInfo(t string) (TypeInfo, bool) {
	for _, ti := range Types() {
		if string(ti.Type) == t {
			return ti, true
		}
	}
	return TypeInfo{}, false
}

func (h *Handler) newPage(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	if s == nil {
		return
	}
	d := &pageData{Title: "Add an OIDC identity provider", CSRF: s.csrf, ReadOnly: h.readOnly(), Schema: FormSchema()}
	ti, ok := h.typeInfo(r.URL.Query().Get("type"))
	if !ok {
		h.render(w, "type.html", d)
		return
	}
	d.Type = ti
	d.Provider = map[string]any{"type": string(ti.Type), "lifetime": d.Schema.Default}
	h.render(w, "form.html", d)
}

func (h *Handler) providerPage(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	if s == nil {
		return
	}
	id := mux.Vars(r)["id"]
	p, err := h.find(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if p == nil {
		w.WriteHeader(http.StatusNotFound)
		h.render(w, "list.html", &pageData{Title: "Not found", CSRF: s.csrf, Error: "no provider with id " + id})
		return
	}
	t, _ := p["type"].(string)
	ti, _ := h.typeInfo(t)
	d := &pageData{
		Title: "Provider", CSRF: s.csrf, ReadOnly: h.readOnly(), Schema: FormSchema(),
		Type: ti, Provider: p, ID: id, ETag: etagOf(p), Created: r.URL.Query().Get("created") == "1",
		Revoke: h.o.RevokeTokens != nil,
	}
	if n, ok := p["name"].(string); ok && n != "" {
		d.Title = n
	}
	h.render(w, "form.html", d)
}
