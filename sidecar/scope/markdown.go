package scope

import (
	"strings"
)

// Markdown markers delimiting the generated scope table in docs/providers.md.
const (
	MarkdownBegin = "<!-- BEGIN GENERATED scopes: go test ./sidecar/scope -run TestDocs -update -->"
	MarkdownEnd   = "<!-- END GENERATED scopes -->"
)

// MarkdownTable renders the scope list and hierarchy as a Markdown table:
// each scope, its meaning, the scopes it implies directly (inferred edges
// marked "inferred") and everything it grants transitively. Inferred and
// legacy scopes are marked in the first column. docs/providers.md holds the
// output between MarkdownBegin and MarkdownEnd; a test keeps it current.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Scope | Meaning | Implies directly | Grants in total |\n")
	b.WriteString("|---|---|---|---|\n")
	stated := map[[2]string]bool{}
	for _, e := range edges {
		stated[[2]string{e.From, e.To}] = e.Stated
	}
	for _, s := range scopes {
		name := "`" + s.Name + "`"
		switch {
		case s.Inferred:
			name += " (inferred to exist)"
		case s.Legacy():
			name += " (legacy)"
		}
		var direct []string
		for _, to := range implies[s.Name] {
			d := "`" + to + "`"
			if !stated[[2]string{s.Name, to}] {
				d += " (inferred)"
			}
			direct = append(direct, d)
		}
		var total []string
		for _, to := range closure[s.Name] {
			total = append(total, "`"+to+"`")
		}
		b.WriteString("| " + name + " | " + s.Meaning + " | " + orDash(direct) + " | " + orDash(total) + " |\n")
	}
	return b.String()
}

func orDash(l []string) string {
	if len(l) == 0 {
		return "–"
	}
	return strings.Join(l, ", ")
}
