// Package scope holds Buddy's OAuth scope names and the hierarchy between
// them (which scope implies which).
//
// The list and the hierarchy come from Buddy's public documentation (the
// "Supported scopes" list of the OAuth 2.0 introduction, route pages and CLI
// help). Where Buddy does not state an implication and it is inferred from the
// scope names only, the edge says so (Edge.Stated is false); the same holds
// for scopes that are inferred to exist (Scope.Inferred).
//
// The package has no dependencies and no state beyond its tables. Nothing in
// it may be modified at run time: the exported variables are copies.
package scope

import (
	"slices"
	"sort"
)

// Group says where a scope name was seen.
type Group string

// The groups of scopes, in the order of Buddy's documentation.
const (
	// GroupOAuth is the "Supported scopes" list of the OAuth 2.0 docs.
	GroupOAuth Group = "oauth"
	// GroupNewer holds scopes seen on route pages and in CLI help, with no
	// description from Buddy.
	GroupNewer Group = "newer"
	// GroupLegacy holds the RELEASE_* scopes of Buddy's removed "releases"
	// feature (Node SDK 1.0.10).
	GroupLegacy Group = "legacy"
)

// Scope describes one Buddy scope.
type Scope struct {
	Name    string
	Meaning string // paraphrased from Buddy's docs, or derived from the routes using it
	Group   Group
	// Inferred is true when the scope was never seen in Buddy's docs and is
	// assumed to exist from the naming pattern. No scope is inferred any
	// more: ENVIRONMENT_INFO, once assumed, is stated by the environment
	// "get" pages of Buddy's API reference (2025 and January 2026).
	Inferred bool
}

// Legacy reports whether the scope belongs to a feature Buddy removed.
func (s Scope) Legacy() bool { return s.Group == GroupLegacy }

// Edge is one direct implication: holding From grants To as well.
type Edge struct {
	From, To string
	// Stated is true when Buddy's documentation says From "contains" To;
	// false when the edge is inferred from the MANAGE ⊃ ADD ⊃ INFO naming
	// pattern or from the wording of the descriptions.
	Stated bool
	// Source says where the edge comes from, in a few words.
	Source string
}

var scopes = []Scope{
	{"WORKSPACE", "Basic workspace info, plus managing members, groups and member permissions.", GroupOAuth, false},
	{"PROJECT_DELETE", "Delete projects.", GroupOAuth, false},
	{"REPOSITORY_READ", "Read commits and repository content, including checkout.", GroupOAuth, false},
	{"REPOSITORY_WRITE", "Write to the repository, including deleting files.", GroupOAuth, false},
	{"EXECUTION_INFO", "Read pipeline execution history.", GroupOAuth, false},
	{"EXECUTION_RUN", "Start and stop executions.", GroupOAuth, false},
	{"EXECUTION_MANAGE", "Add and edit pipelines (and their actions).", GroupOAuth, false},
	{"USER_INFO", "Basic info about the authorized user.", GroupOAuth, false},
	{"USER_KEY", "The user's public SSH keys.", GroupOAuth, false},
	{"USER_EMAIL", "The user's list of email addresses.", GroupOAuth, false},
	{"MANAGE_EMAILS", "View and manage the user's email addresses.", GroupOAuth, false},
	{"INTEGRATION_INFO", "The user's list of integrations.", GroupOAuth, false},
	{"MEMBER_EMAIL", "Contact details of workspace members.", GroupOAuth, false},
	{"WEBHOOK_INFO", "Read webhook info.", GroupOAuth, false},
	{"WEBHOOK_ADD", "Read and add webhooks.", GroupOAuth, false},
	{"WEBHOOK_MANAGE", "Add, edit and delete webhooks.", GroupOAuth, false},
	{"VARIABLE_INFO", "Read environment-variable info.", GroupOAuth, false},
	{"VARIABLE_ADD", "Read and add environment variables.", GroupOAuth, false},
	{"VARIABLE_MANAGE", "Add, edit and delete environment variables.", GroupOAuth, false},

	{"TOKEN_INFO", "Read the current token (GET /user/token).", GroupNewer, false},
	{"TOKEN_MANAGE", "Create personal access tokens (POST /user/tokens).", GroupNewer, false},
	{"SANDBOX_INFO", "List sandboxes and their commands; get a command.", GroupNewer, false},
	{"SANDBOX_MANAGE", "Create, delete, start and snapshot sandboxes; run commands.", GroupNewer, false},
	{"TARGET_INFO", "List and get targets.", GroupNewer, false},
	{"TARGET_ADD", "Create targets.", GroupNewer, false},
	{"TARGET_MANAGE", "Edit targets.", GroupNewer, false},
	{"ENVIRONMENT_INFO", "Read environments (API reference, environment get pages).", GroupNewer, false},
	{"ENVIRONMENT_ADD", "Create environments.", GroupNewer, false},
	{"ENVIRONMENT_MANAGE", "Edit environments.", GroupNewer, false},
	{"INTEGRATION_ADD", "Create integrations.", GroupNewer, false},
	{"INTEGRATION_MANAGE", "Edit integrations.", GroupNewer, false},
	{"ARTIFACT_READ", "Get, list and download artifacts.", GroupNewer, false},
	{"ARTIFACT_WRITE", "Create artifacts.", GroupNewer, false},
	{"ARTIFACT_MANAGE", "Delete and publish artifacts.", GroupNewer, false},
	{"DISTRIBUTION_INFO", "List distributions.", GroupNewer, false},
	{"DISTRIBUTION_ADD", "Create distributions.", GroupNewer, false},
	{"DISTRIBUTION_MANAGE", "Update and delete distributions.", GroupNewer, false},
	{"ZONE_READ", "Read domains and their DNS records (API reference, Domains).", GroupNewer, false},
	{"ZONE_WRITE", "Create and edit DNS records of domains (API reference, Domains).", GroupNewer, false},

	{"RELEASE_INFO", "Read release history.", GroupLegacy, false},
	{"RELEASE_RUN", "Run and stop releases.", GroupLegacy, false},
	{"RELEASE_MANAGE", "Add and edit release scenarios.", GroupLegacy, false},
}

const (
	srcStated  = `Buddy's scope list: "contains" the implied scope`
	srcWording = "inferred from the descriptions' wording"
	srcNaming  = "inferred from the MANAGE ⊃ ADD ⊃ INFO naming pattern"
)

var edges = []Edge{
	{"REPOSITORY_WRITE", "REPOSITORY_READ", true, srcStated},
	{"EXECUTION_MANAGE", "EXECUTION_RUN", true, srcStated},
	{"EXECUTION_RUN", "EXECUTION_INFO", true, srcStated},
	{"MANAGE_EMAILS", "USER_EMAIL", true, srcStated},
	{"RELEASE_MANAGE", "RELEASE_RUN", true, srcStated},
	{"RELEASE_RUN", "RELEASE_INFO", true, srcStated},

	{"WEBHOOK_MANAGE", "WEBHOOK_ADD", false, srcWording},
	{"WEBHOOK_ADD", "WEBHOOK_INFO", false, srcWording},
	{"VARIABLE_MANAGE", "VARIABLE_ADD", false, srcWording},
	{"VARIABLE_ADD", "VARIABLE_INFO", false, srcWording},

	{"TARGET_MANAGE", "TARGET_ADD", false, srcNaming},
	{"TARGET_ADD", "TARGET_INFO", false, srcNaming},
	{"ENVIRONMENT_MANAGE", "ENVIRONMENT_ADD", false, srcNaming},
	{"ENVIRONMENT_ADD", "ENVIRONMENT_INFO", false, srcNaming},
	{"INTEGRATION_MANAGE", "INTEGRATION_ADD", false, srcNaming},
	{"INTEGRATION_ADD", "INTEGRATION_INFO", false, srcNaming},
	{"DISTRIBUTION_MANAGE", "DISTRIBUTION_ADD", false, srcNaming},
	{"DISTRIBUTION_ADD", "DISTRIBUTION_INFO", false, srcNaming},
	{"SANDBOX_MANAGE", "SANDBOX_INFO", false, srcNaming},
	{"TOKEN_MANAGE", "TOKEN_INFO", false, srcNaming},
	{"ARTIFACT_MANAGE", "ARTIFACT_WRITE", false, srcNaming},
	{"ARTIFACT_WRITE", "ARTIFACT_READ", false, srcNaming},
	{"ZONE_WRITE", "ZONE_READ", false, srcNaming},
}

var (
	byName  = map[string]Scope{}
	sorted  []string
	implies = map[string][]string{} // direct edges, each list sorted
	closure = map[string][]string{} // transitive, each list sorted, without the scope itself
)

// Implies holds the hierarchy as direct edges: Implies[s] lists the scopes
// that s grants directly (sorted). Scopes that imply nothing are absent. It
// is a copy: changing it changes nothing else in the package.
var Implies map[string][]string

func init() {
	for _, s := range scopes {
		byName[s.Name] = s
		sorted = append(sorted, s.Name)
	}
	sort.Strings(sorted)
	for _, e := range edges {
		implies[e.From] = append(implies[e.From], e.To)
	}
	Implies = make(map[string][]string, len(implies))
	for k, v := range implies {
		sort.Strings(v)
		Implies[k] = slices.Clone(v)
	}
	all := make(map[string][]string, len(sorted))
	for _, s := range sorted {
		all[s] = implies[s]
	}
	for s, g := range Grants(all) {
		if rest := slices.DeleteFunc(g, func(x string) bool { return x == s }); len(rest) > 0 {
			closure[s] = rest
		}
	}
}

// Grants is the transitive closure of a hierarchy given as direct edges:
// for each scope that is a key of implies, every scope holding it grants
// (itself included), sorted. It is the Go side's one closure (the built-in
// table's and a bundle's data.sidecar.scopes.grants); policies/scope.rego
// computes the same with graph.reachable when a bundle has no grants.
func Grants(implies map[string][]string) map[string][]string {
	out := make(map[string][]string, len(implies))
	for s := range implies {
		seen := map[string]bool{s: true}
		stack := []string{s}
		for len(stack) > 0 {
			cur := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, n := range implies[cur] {
				if !seen[n] {
					seen[n] = true
					stack = append(stack, n)
				}
			}
		}
		out[s] = sortedKeys(seen)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Known reports whether s is a Buddy scope name (exact, upper-case match).
func Known(s string) bool {
	_, ok := byName[s]
	return ok
}

// All returns every known scope name, sorted.
func All() []string { return slices.Clone(sorted) }

// Describe returns what is known about scope s.
func Describe(s string) (Scope, bool) {
	sc, ok := byName[s]
	return sc, ok
}

// Scopes returns every known scope in documentation order (the OAuth list,
// then the newer scopes, then the legacy ones).
func Scopes() []Scope { return slices.Clone(scopes) }

// Edges returns the direct implications in documentation order.
func Edges() []Edge { return slices.Clone(edges) }

// ImpliedBy returns the scopes that s grants transitively, sorted, without s
// itself.
func ImpliedBy(s string) []string { return slices.Clone(closure[s]) }

// Data returns the scope document for OPA at data.sidecar.scopes:
//
//	{"known": ["ARTIFACT_MANAGE", ...], "implies": {"EXECUTION_MANAGE": ["EXECUTION_RUN"], ...}}
//
// "implies" holds the direct edges only. The values are plain []any,
// map[string]any and string, so OPA converts them without a JSON round
// trip. Each call returns a fresh document.
func Data() map[string]any {
	known := make([]any, len(sorted))
	for i, s := range sorted {
		known[i] = s
	}
	imp := make(map[string]any, len(implies))
	for k, v := range implies {
		l := make([]any, len(v))
		for i, s := range v {
			l[i] = s
		}
		imp[k] = l
	}
	return map[string]any{"known": known, "implies": imp}
}
