package routes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
)

// A Section is one part of Buddy's API reference, recognised by the path
// templates under it, with the scope the conservative rule gives its routes
// whose page states no scope: the section's strongest scope, the one that
// implies (or is) every scope its documented routes need.
type Section struct {
	Name string
	// prefixes are normalized templates ({} for a variable); a route is in
	// the section when its normalized path is one of them or lies under one.
	prefixes []string
	Rule     string
}

// Sections lists Buddy's API sections, most specific first (the first
// whose prefix matches wins). docs/routes.md explains the rule.
var sections = []Section{
	{"user: profile", []string{"/user"}, "USER_INFO"},
	{"user: tokens", []string{"/user/token", "/user/tokens"}, "TOKEN_MANAGE"},
	{"user: emails", []string{"/user/emails"}, "MANAGE_EMAILS"},
	{"user: ssh keys", []string{"/user/keys"}, "USER_KEY"},
	{"user: integrations", []string{"/user/integrations"}, "INTEGRATION_MANAGE"},
	{"workspaces", []string{"/workspaces", "/workspaces/{}"}, "WORKSPACE"},
	{"members", []string{"/workspaces/{}/members"}, "WORKSPACE"},
	{"groups", []string{"/workspaces/{}/groups"}, "WORKSPACE"},
	{"permissions", []string{"/workspaces/{}/permissions"}, "WORKSPACE"},
	{"sso", []string{"/workspaces/{}/sso"}, "WORKSPACE"},
	{"repository: branches", []string{"/workspaces/{}/projects/{}/repository/branches"}, "REPOSITORY_WRITE"},
	{"repository: commits", []string{"/workspaces/{}/projects/{}/repository/commits", "/workspaces/{}/projects/{}/repository/comparison"}, "REPOSITORY_WRITE"},
	{"repository: contents", []string{"/workspaces/{}/projects/{}/repository/contents"}, "REPOSITORY_WRITE"},
	{"repository: tags", []string{"/workspaces/{}/projects/{}/repository/tags"}, "REPOSITORY_WRITE"},
	{"repository: pull requests", []string{"/workspaces/{}/projects/{}/repository/pulls"}, "REPOSITORY_WRITE"},
	{"actions", []string{"/workspaces/{}/projects/{}/pipelines/{}/actions"}, "EXECUTION_MANAGE"},
	{"executions", []string{"/workspaces/{}/projects/{}/pipelines/{}/executions"}, "EXECUTION_MANAGE"},
	{"pipelines", []string{"/workspaces/{}/projects/{}/pipelines"}, "EXECUTION_MANAGE"},
	{"environments", []string{"/workspaces/{}/environments", "/workspaces/{}/projects/{}/environments"}, "ENVIRONMENT_MANAGE"},
	{"projects", []string{"/workspaces/{}/projects"}, "WORKSPACE"},
	{"variables", []string{"/workspaces/{}/variables"}, "VARIABLE_MANAGE"},
	{"sandboxes", []string{"/workspaces/{}/sandboxes"}, "SANDBOX_MANAGE"},
	{"targets", []string{"/workspaces/{}/targets"}, "TARGET_MANAGE"},
	{"integrations", []string{"/workspaces/{}/integrations"}, "INTEGRATION_MANAGE"},
	{"webhooks", []string{"/workspaces/{}/webhooks"}, "WEBHOOK_MANAGE"},
	{"artifacts", []string{"/workspaces/{}/artifacts"}, "ARTIFACT_MANAGE"},
	{"domains", []string{"/workspaces/{}/domains"}, "ZONE_WRITE"},
}

// Sections returns Buddy's API sections in the order of docs/routes.md.
func Sections() []Section { return slices.Clone(sections) }

// SectionOf returns the section of a route template, or false when the
// template lies in none (a route of another API).
func SectionOf(path string) (Section, bool) {
	n := normalize(path)
	for _, s := range sections {
		for _, p := range s.prefixes {
			if n == p || (strings.HasPrefix(n, p+"/") && !exactOnly(s, p)) {
				return s, true
			}
		}
	}
	return Section{}, false
}

// exactOnly: the user-profile and workspaces sections hold only their own
// paths, not everything under them.
func exactOnly(s Section, p string) bool {
	return p == "/user" || s.Name == "workspaces"
}

// RuleScopes is the conservative rule for a route whose page states no
// scope (docs/routes.md, "Routes whose page states no scope"): the
// strongest scope of its section. One exception: deleting a project needs
// PROJECT_DELETE, the scope Buddy's scope list names for exactly that
// (WORKSPACE does not imply it). ok is false outside Buddy's sections.
func RuleScopes(method, path string) (scopes []string, ok bool) {
	s, ok := SectionOf(path)
	if !ok {
		return nil, false
	}
	if method == http.MethodDelete && normalize(path) == "/workspaces/{}/projects/{}" {
		return []string{"PROJECT_DELETE"}, true
	}
	return []string{s.Rule}, true
}

// Problem is one finding of Lint.
type Problem struct {
	Route   Route
	Message string
}

// Lint lists what an operator should know about a table: every route whose
// scopes come from the conservative rule (Basis "rule"), every route with no
// scopes at all (any valid token may call it) and every rule route whose
// scopes are not what the rule gives. The second and third are errors;
// errs counts them.
func Lint(rs []Route) (notes []Problem, errs int) {
	for _, r := range rs {
		rule, inSection := RuleScopes(r.Method, r.Path)
		switch {
		case len(r.Scopes) == 0:
			msg := "no scope: any valid token may call it"
			if inSection {
				msg += fmt.Sprintf("; the conservative rule would require %s", strings.Join(rule, ", "))
			}
			notes = append(notes, Problem{r, msg})
			errs++
		case r.Basis == BasisRule && inSection && !slices.Equal(r.Scopes, rule):
			notes = append(notes, Problem{r, fmt.Sprintf("marked %q but the rule gives %s", BasisRule, strings.Join(rule, ", "))})
			errs++
		case r.Basis == BasisRule:
			notes = append(notes, Problem{r, "page states no scope: conservative rule applied"})
		}
	}
	return notes, errs
}

// Filter selects routes for "oidc-sidecar routes". Empty fields select all.
type Filter struct {
	Method     string // exact, case-insensitive
	PathPrefix string // template prefix, e.g. /workspaces/{workspace}/sandboxes
	Scope      string // the route lists this scope
	Basis      string // page or rule
}

// Select returns the routes the filter keeps, in table order.
func (f Filter) Select(rs []Route) []Route {
	var out []Route
	for _, r := range rs {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.PathPrefix != "" && !strings.HasPrefix(r.Path, f.PathPrefix) {
			continue
		}
		if f.Scope != "" && !slices.Contains(r.Scopes, strings.ToUpper(f.Scope)) {
			continue
		}
		if f.Basis != "" && r.Basis != f.Basis {
			continue
		}
		out = append(out, r)
	}
	return out
}

// WriteText prints routes as an aligned table: method, path, scopes, basis, source.
func WriteText(w io.Writer, rs []Route) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tPATH\tSCOPES\tBASIS\tSOURCE")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Method, r.Path, scopeText(r.Scopes), dash(r.Basis), dash(r.Source))
	}
	return tw.Flush()
}

// jsonRoute is the --json form of a route.
type jsonRoute struct {
	Method  string   `json:"method"`
	Path    string   `json:"path"`
	Scopes  []string `json:"scopes"`
	Basis   string   `json:"basis,omitempty"`
	Source  string   `json:"source,omitempty"`
	Section string   `json:"section,omitempty"`
}

// WriteJSON prints routes as a JSON array.
func WriteJSON(w io.Writer, rs []Route) error {
	out := make([]jsonRoute, 0, len(rs))
	for _, r := range rs {
		s, _ := SectionOf(r.Path)
		scopes := r.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		out = append(out, jsonRoute{r.Method, r.Path, scopes, r.Basis, r.Source, s.Name})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func scopeText(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// SectionCount is how many routes of a table lie in one section.
type SectionCount struct {
	Section Section
	Routes  int
	Rule    int // of which have Basis "rule"
}

// CountBySection counts a table's routes per section, in section order;
// routes in no section are counted under a Section named "other".
func CountBySection(rs []Route) []SectionCount {
	counts := make([]SectionCount, len(sections)+1)
	for i, s := range sections {
		counts[i].Section = s
	}
	counts[len(sections)].Section = Section{Name: "other"}
	for _, r := range rs {
		i := len(sections)
		if s, ok := SectionOf(r.Path); ok {
			i = slices.IndexFunc(sections, func(x Section) bool { return x.Name == s.Name })
		}
		counts[i].Routes++
		if r.Basis == BasisRule {
			counts[i].Rule++
		}
	}
	out := counts[:0]
	for _, c := range counts {
		if c.Routes > 0 {
			out = append(out, c)
		}
	}
	return out
}

// SectionsMarkdown is the per-section count table of docs/routes.md.
func SectionsMarkdown(rs []Route) string {
	var b strings.Builder
	b.WriteString("| section | routes | of which by the rule | rule scope |\n|---|---:|---:|---|\n")
	total, rule := 0, 0
	for _, c := range CountBySection(rs) {
		fmt.Fprintf(&b, "| %s | %d | %d | %s |\n", c.Section.Name, c.Routes, c.Rule, dash(c.Section.Rule))
		total += c.Routes
		rule += c.Rule
	}
	fmt.Fprintf(&b, "| **total** | **%d** | **%d** | |\n", total, rule)
	return b.String()
}

// TableMarkdown is the full route table of docs/routes.md.
func TableMarkdown(rs []Route) string {
	var b strings.Builder
	b.WriteString("| method | path | scopes | basis | source |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | [page](%s) |\n", r.Method, r.Path, scopeText(r.Scopes), dash(r.Basis), r.Source)
	}
	return b.String()
}
