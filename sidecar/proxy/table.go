package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
)

// table is the route table of one policy snapshot compiled into
// gorilla/mux routers. It is built once per snapshot and read-only after.
//
// Routes are split into one router per number of "/" in their template: a
// path can only match a template with as many slashes (a variable never
// spans one), so a request is matched against its bucket only. Templates
// ending in {name...} (the rest of the path, slashes included) are in one
// more router, rest, tried when the path's bucket has no route for it.
type table struct {
	snap    *policy.Snapshot
	routers map[int]*mux.Router // by strings.Count(template, "/")
	rest    *mux.Router         // templates ending in {name...}; nil if none
	byMux   map[*mux.Route]*routes.Route
	// slashVars: per route, its variables that may hold an encoded slash
	// ({branch%2F}); routes without any are absent.
	slashVars map[*routes.Route]map[string]bool
	methods   []string   // every method some route accepts, sorted
	shapes    []shape    // every route's segments, for the letter-case check
	wsAt      []wsPrefix // where {workspace} sits, for paths that match no route
	routes    []routes.Route
}

// shape is a route template split into segments; a variable is "". A
// segment mixing literal text and variables ({base}...{head}) has a
// case-insensitive pattern in mixed; rest is true for a template ending in
// {name...} (its last segment is then not in segs).
type shape struct {
	route *routes.Route
	segs  []string
	mixed map[int]*regexp.Regexp
	rest  bool
}

// wsPrefix locates the workspace variable: segs are the segments before
// it ("" = any value), so /workspaces/{workspace}/... gives ["workspaces"].
type wsPrefix struct{ segs []string }

// match is the outcome of routing one request.
type match struct {
	route *routes.Route     // nil: no route for this method and path
	vars  map[string]string // the route's variables, escaped exactly as in the path
	// wrongMethod: the path matches routes, none for this method.
	wrongMethod bool
	// caseVariant: the path matches a route only when letter case is ignored.
	caseVariant bool
	// slashRefused: the path has an encoded slash (%2F) that is not inside
	// a variable the matched route declares may hold one (or no route
	// matches); the proxy refuses it with 400 (route is then nil).
	slashRefused bool
}

// newTable compiles a snapshot's routes. Routes are registered most
// specific first — at the first segment where two templates differ, a
// literal beats a variable — so /a/special wins over /a/{x}; otherwise the
// table's order is kept. GET routes also accept HEAD unless the table has a
// HEAD route for the same template.
func newTable(snap *policy.Snapshot) *table {
	t := &table{
		snap:      snap,
		routers:   map[int]*mux.Router{},
		byMux:     make(map[*mux.Route]*routes.Route, len(snap.Routes)),
		slashVars: map[*routes.Route]map[string]bool{},
		routes:    slices.Clone(snap.Routes),
	}
	explicitHead := map[string]bool{}
	for _, r := range t.routes {
		if r.Method == http.MethodHead {
			explicitHead[template(r.Path)] = true
		}
	}
	order := make([]int, len(t.routes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return moreSpecific(t.routes[order[a]].Path, t.routes[order[b]].Path)
	})
	methodSet := map[string]bool{}
	seenWS := map[string]bool{}
	for _, i := range order {
		r := &t.routes[i]
		methods := []string{r.Method}
		if r.Method == http.MethodGet && !explicitHead[template(r.Path)] {
			methods = append(methods, http.MethodHead)
		}
		for _, m := range methods {
			methodSet[m] = true
		}
		// SkipClean: never a 301 to a cleaned path (checkPath rejects what
		// cleaning would change). UseEncodedPath: match, and take variables
		// from, the escaped path that is forwarded.
		segs, names := splitTemplate(r.Path)
		sh := shape{route: r, segs: segs}
		muxPath := routes.MuxTemplate(r.Path)
		if sv := routes.SlashVars(r.Path); sv != nil {
			t.slashVars[r] = sv
		}
		var rt *mux.Router
		if n := len(names); n > 0 && strings.HasSuffix(names[n-1], "...") {
			// {name...}: one or more whole segments. checkPath has already
			// refused empty, "." and ".." segments, and match refuses an
			// encoded slash in it, so the value is the rest of the path
			// exactly as forwarded.
			name := strings.TrimSuffix(names[n-1], "...")
			muxPath = muxPath[:strings.LastIndexByte(muxPath, '/')+1] + "{" + name + ":.+}"
			sh.segs, names, sh.rest = segs[:n-1], names[:n-1], true
			if t.rest == nil {
				t.rest = mux.NewRouter().SkipClean(true).UseEncodedPath()
			}
			rt = t.rest
		} else {
			n := strings.Count(r.Path, "/")
			if rt = t.routers[n]; rt == nil {
				rt = mux.NewRouter().SkipClean(true).UseEncodedPath()
				t.routers[n] = rt
			}
		}
		mr := rt.NewRoute().Path(muxPath).Methods(methods...)
		t.byMux[mr] = r

		for j, seg := range sh.segs {
			if seg != "" && strings.Contains(seg, "{") {
				if sh.mixed == nil {
					sh.mixed = map[int]*regexp.Regexp{}
				}
				sh.mixed[j] = mixedPattern(seg)
			}
		}
		t.shapes = append(t.shapes, sh)
		for j, name := range names {
			if name != routes.WorkspaceVar {
				continue
			}
			if key := strings.Join(segs[:j], "/"); !seenWS[key] {
				seenWS[key] = true
				t.wsAt = append(t.wsAt, wsPrefix{segs: segs[:j]})
			}
		}
	}
	for m := range methodSet {
		t.methods = append(t.methods, m)
	}
	sort.Strings(t.methods)
	return t
}

// match routes a request by method and escaped path (already checked by
// checkPath). It never looks at anything else of the request.
func (t *table) match(method, escPath string) match {
	m := t.route(method, escPath)
	if hasEncodedSlash(escPath) && !t.slashesAllowed(m) {
		return match{slashRefused: true}
	}
	return m
}

// slashesAllowed reports whether every encoded slash of the matched path
// lies inside a variable that the route declares may hold one. The path
// outside the variables is the template's literal text, which never holds
// a '%', so checking the variables' values covers the whole path.
func (t *table) slashesAllowed(m match) bool {
	if m.route == nil {
		return false
	}
	sv := t.slashVars[m.route]
	for name, v := range m.vars {
		if hasEncodedSlash(v) && !sv[name] {
			return false
		}
	}
	return true
}

// route is match without the encoded-slash check.
func (t *table) route(method, escPath string) match {
	req := routingRequest(method, escPath)
	wrongMethod := false
	// The path's own bucket first (fixed templates are more specific than
	// any {name...} one), then the rest-of-path templates.
	for _, router := range []*mux.Router{t.routers[strings.Count(escPath, "/")], t.rest} {
		if router == nil {
			continue
		}
		var rm mux.RouteMatch
		if router.Match(req, &rm) && rm.MatchErr == nil {
			if r := t.byMux[rm.Route]; r != nil {
				return match{route: r, vars: rm.Vars}
			}
		}
		if rm.MatchErr == mux.ErrMethodMismatch {
			wrongMethod = true
		}
	}
	m := match{vars: t.workspaceOf(escPath)}
	if wrongMethod {
		m.wrongMethod = true
	} else {
		m.caseVariant = t.isCaseVariant(escPath)
	}
	return m
}

// allowed lists the methods that have a route for escPath (for Allow).
func (t *table) allowed(escPath string) []string {
	var out []string
	for _, m := range t.methods {
		if t.match(m, escPath).route != nil {
			out = append(out, m)
		}
	}
	return out
}

// workspaceOf finds the workspace segment of a path that matches no route,
// so that the policy can still apply a token's workspace restriction when
// unknown routes are forwarded. Positions come from the table's own
// templates: with Buddy's table, /workspaces/<w>/... gives <w>. Literal
// segments are compared ignoring case, in case the upstream does.
func (t *table) workspaceOf(escPath string) map[string]string {
	if len(t.wsAt) == 0 {
		return nil
	}
	segs := strings.Split(escPath[1:], "/")
	for _, w := range t.wsAt {
		if len(segs) <= len(w.segs) {
			continue
		}
		ok := true
		for i, s := range w.segs {
			if s != "" && !strings.EqualFold(s, segs[i]) {
				ok = false
				break
			}
		}
		if ok {
			return map[string]string{routes.WorkspaceVar: segs[len(w.segs)]}
		}
	}
	return nil
}

// isCaseVariant reports whether escPath matches some route when the case of
// its literal segments is ignored. Such a path reaches no route here, but an
// upstream that matches paths case-insensitively would route it, so the
// proxy refuses it instead of treating it as an unknown route.
func (t *table) isCaseVariant(escPath string) bool {
	segs := strings.Split(escPath[1:], "/")
	for _, sh := range t.shapes {
		if len(sh.segs) != len(segs) && !(sh.rest && len(segs) > len(sh.segs)) {
			continue
		}
		ok := true
		for i, s := range sh.segs {
			if re := sh.mixed[i]; re != nil {
				ok = re.MatchString(segs[i])
			} else if s != "" && !strings.EqualFold(s, segs[i]) {
				ok = false
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// routingRequest is the minimal request mux needs to match method and path.
func routingRequest(method, escPath string) *http.Request {
	u := &url.URL{Path: escPath, RawPath: escPath}
	if p, err := url.PathUnescape(escPath); err == nil {
		u.Path = p
	}
	return &http.Request{Method: method, URL: u}
}

// splitTemplate splits a route template into segments: literal segments
// as they are and variables as "", with the variables' names alongside
// (names[i] is "" for a literal segment; "name..." for a {name...}
// segment). A segment mixing literal text and variables ({base}...{head})
// is kept as it is, with no name.
func splitTemplate(tpl string) (segs, names []string) {
	tpl = routes.MuxTemplate(tpl)
	if tpl == "/" {
		return nil, nil
	}
	segs = strings.Split(tpl[1:], "/")
	names = make([]string, len(segs))
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && strings.Count(s, "{") == 1 {
			names[i] = s[1 : len(s)-1]
			segs[i] = ""
		}
	}
	return segs, names
}

// mixedPattern matches a segment mixing literal text and variables, with
// letter case ignored (for isCaseVariant): each {name} stands for
// [^/]+, as in gorilla/mux.
func mixedPattern(seg string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?i)^")
	for seg != "" {
		open := strings.IndexByte(seg, '{')
		if open < 0 {
			b.WriteString(regexp.QuoteMeta(seg))
			break
		}
		b.WriteString(regexp.QuoteMeta(seg[:open]))
		b.WriteString("[^/]+")
		seg = seg[open+strings.IndexByte(seg[open:], '}')+1:]
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// template is a route path with variable names erased, so /a/{x} and
// /a/{y} compare equal.
func template(tpl string) string {
	segs, _ := splitTemplate(tpl)
	return strings.Join(segs, "/")
}

// moreSpecific orders templates most specific first: segment by segment
// from the left, a literal before a segment mixing literal text and
// variables, that before a {variable}, and that before a {name...} (the
// rest of the path); a template that is a prefix of the other in this
// order comes first. The order is total (lexicographic over the segment
// kinds). Two fixed templates can only match the same path when they have
// as many segments (a variable never spans a "/"); a {name...} template
// can match paths of any length from its own, so /c/download/{p...} is
// tried before /c/{p...}, and /a/{x}/b/{p...} before /a/{p...}.
func moreSpecific(a, b string) bool {
	ka, kb := specificity(a), specificity(b)
	return slices.Compare(ka, kb) < 0
}

// specificity is the kind of each segment of a template, for moreSpecific:
// 0 literal, 1 mixed, 2 variable, 3 {name...}.
func specificity(tpl string) []int {
	segs, names := splitTemplate(tpl)
	k := make([]int, len(segs))
	for i, s := range segs {
		switch {
		case s == "" && strings.HasSuffix(names[i], "..."):
			k[i] = 3
		case s == "":
			k[i] = 2
		case strings.Contains(s, "{"):
			k[i] = 1
		}
	}
	return k
}

// MatchRoute routes one request the way the proxy does — the same path
// checks (docs/proxy.md, "Path handling") and the same matcher — against
// the table rs, for tools that answer "which route, which scopes?"
// (oidc-sidecar routes --match). target is the request target as a client
// sends it: an escaped path, optionally with a query (ignored). The route
// is nil when none matches; vars are the route's variables, escaped as in
// the path.
func MatchRoute(rs []routes.Route, method, target string) (*routes.Route, map[string]string, error) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, nil, fmt.Errorf("request target %q: %w", target, err)
	}
	esc, perr := checkPath(&http.Request{Method: method, URL: u})
	if perr != nil {
		return nil, nil, fmt.Errorf("request target %q is refused by the proxy (%d): %s", target, perr.status, perr.reason)
	}
	m := newTable(&policy.Snapshot{Routes: rs}).match(strings.ToUpper(method), esc)
	if m.slashRefused {
		return nil, nil, fmt.Errorf("request target %q is refused by the proxy (400): %s", target, encodedSlashReason)
	}
	return m.route, m.vars, nil
}
