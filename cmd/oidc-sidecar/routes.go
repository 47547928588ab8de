package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/proxy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

func newRoutes() *cobra.Command {
	var (
		file, match string
		asJSON      bool
		f           routes.Filter
	)
	load := func() ([]routes.Route, error) {
		if file == "" {
			return routes.Default(), nil
		}
		return routes.Load(file, scope.Known)
	}
	cmd := &cobra.Command{
		Use:   "routes [--method M] [--path-prefix P] [--scope S] [--basis page|rule] [--match 'METHOD /path'] [--json]",
		Short: "Print the proxy's route table: method, path, required scopes, source",
		Long: `Prints the route table the proxy enforces — Buddy's built-in one, or the
CSV of --routes — so that "which scope does this call need?" needs no CSV
reading. --match runs the proxy's own path checks and matcher on one request
("METHOD /path?query" as a client sends it) and prints its route and
variables. docs/routes.md describes the table and the rule for routes whose
documentation states no scope ("oidc-sidecar routes lint" lists them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := load()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if match != "" {
				method, target, ok := strings.Cut(strings.TrimSpace(match), " ")
				if !ok {
					return fmt.Errorf("--match %q: want \"METHOD /path\", e.g. \"GET /workspaces/acme/projects\"", match)
				}
				r, vars, err := proxy.MatchRoute(rs, method, strings.TrimSpace(target))
				if err != nil {
					return err
				}
				if r == nil {
					fmt.Fprintf(out, "%s %s matches no route: refused under unknown_routes: deny\n", strings.ToUpper(method), target)
					return exitError{code: 1}
				}
				if asJSON {
					return printJSON(out, map[string]any{"route": routeJSON(*r), "vars": vars})
				}
				if err := routes.WriteText(out, []routes.Route{*r}); err != nil {
					return err
				}
				for _, k := range slices.Sorted(maps.Keys(vars)) {
					fmt.Fprintf(out, "  %s = %s\n", k, vars[k])
				}
				return nil
			}
			sel := f.Select(rs)
			if asJSON {
				return routes.WriteJSON(out, sel)
			}
			return routes.WriteText(out, sel)
		},
	}
	cmd.PersistentFlags().StringVar(&file, "routes", "", "a route table CSV (default: Buddy's built-in table)")
	cmd.Flags().StringVar(&f.Method, "method", "", "only routes of this HTTP method")
	cmd.Flags().StringVar(&f.PathPrefix, "path-prefix", "", "only templates starting with this, e.g. /workspaces/{workspace}/sandboxes")
	cmd.Flags().StringVar(&f.Scope, "scope", "", "only routes that list this scope")
	cmd.Flags().StringVar(&f.Basis, "basis", "", "only routes whose scopes come from the page (page) or the conservative rule (rule)")
	cmd.Flags().StringVar(&match, "match", "", `route one request: "METHOD /path?query"`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	lint := &cobra.Command{
		Use:   "lint [--routes FILE]",
		Short: "List routes whose scopes come from the conservative rule; fail on routes with no scope",
		Long: `Lists every route whose documentation states no scope and whose scopes
therefore come from the conservative rule of docs/routes.md (basis "rule").
Exits 1 when a route has no scope at all (any valid token could call it) or
a "rule" route's scopes differ from what the rule gives.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := load()
			if err != nil {
				return err
			}
			notes, errs := routes.Lint(rs)
			out := cmd.OutOrStdout()
			for _, p := range notes {
				fmt.Fprintf(out, "%-6s %s  %s  (%s)\n", p.Route.Method, p.Route.Path, strings.Join(p.Route.Scopes, ","), p.Message)
			}
			fmt.Fprintf(out, "%d routes, %d by the conservative rule, %d errors\n", len(rs), len(routes.Filter{Basis: routes.BasisRule}.Select(rs)), errs)
			if errs > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.AddCommand(lint)
	return cmd
}

func routeJSON(r routes.Route) map[string]any {
	return map[string]any{"method": r.Method, "path": r.Path, "scopes": r.Scopes, "basis": r.Basis, "source": r.Source}
}
