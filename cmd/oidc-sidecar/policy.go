package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

func newPolicy() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Compile, test and evaluate policies (trust conditions, guardrails, route authorization)",
	}
	cmd.AddCommand(newPolicyCompile(), newPolicyTest(), newPolicyEval())
	return cmd
}

func loadProviders(path string) ([]*provider.Provider, error) {
	f, err := provider.Load(path)
	if err != nil {
		return nil, err
	}
	for _, w := range f.Warnings {
		fmt.Fprintln(os.Stderr, w.String()) // String says "warning:"
	}
	return f.Providers, nil
}

func newPolicyCompile() *cobra.Command {
	var providersPath, out, routesPath, unknownRoutes string
	cmd := &cobra.Command{
		Use:   "compile --providers providers.yaml [--out DIR]",
		Short: "Print the Rego the trust conditions compile to, or write it as a bundle directory for opa",
		Long: `Compiles every provider's trust conditions to one Rego module
(package sidecar.conditions["<id>"]) plus the helper library they use
(package sidecar.trust). Without --out the modules are printed one after the
other.

With --out DIR, DIR becomes a bundle directory with everything but your
hand-written policies: .manifest (roots ["sidecar"]), data.json (providers,
scopes, routes, settings) and the modules. The upstream opa CLI takes it as it
is, beside the policies:

  opa check --strict DIR policies/
  opa test DIR policies/
  opa build -o bundle.tar.gz DIR policies/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := loadProviders(providersPath)
			if err != nil {
				return err
			}
			if out == "" {
				files, err := policy.CompileProviders(ps)
				if err != nil {
					return err
				}
				for _, f := range files {
					fmt.Fprintf(cmd.OutOrStdout(), "# ---- %s ----\n%s\n", f.Path, f.Src)
				}
				return nil
			}
			var rts []routes.Route
			if routesPath != "" {
				if rts, err = routes.Load(routesPath, scope.Known); err != nil {
					return err
				}
			}
			// No policies: they stay where they are, beside DIR.
			b, err := policy.Build(cmd.Context(), policy.Sources{Providers: ps, Policies: []policy.File{}, Routes: rts,
				Settings: policy.Settings{UnknownRoutes: unknownRoutes}})
			if err != nil {
				return err
			}
			if err := policy.WriteBundleDir(out, b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: .manifest (revision %s), data.json, %d module(s)\n", out, b.Manifest.Revision, len(b.Modules))
			return nil
		},
	}
	cmd.Flags().StringVar(&providersPath, "providers", "providers.yaml", "providers file")
	cmd.Flags().StringVar(&out, "out", "", "write a bundle directory here (default: print the modules)")
	cmd.Flags().StringVar(&routesPath, "routes", "", "route table CSV for data.json (default: Buddy's)")
	cmd.Flags().StringVar(&unknownRoutes, "unknown-routes", "deny", "deny | authenticated, for data.json's settings")
	yamlFile(cmd, "providers")
	_ = cmd.RegisterFlagCompletionFunc("unknown-routes", completeWords("deny", "authenticated"))
	return cmd
}

func newPolicyTest() *cobra.Command {
	var providersPath, routesPath, run, format string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run Rego unit tests (test_ rules) against the policies and the compiled providers",
		Long: `Runs the test_ rules found under PATH (default: ./policies if it exists, else
the policies built into this binary) against a bundle built from those
policies and, with --providers, the compiled providers — so tests can
exercise data.sidecar.conditions["<id>"] for your real providers. JSON/YAML
files named data.json under the paths (e.g. testdata/claims/<name>/data.json)
are loaded as data, as opa test does. Output is opa test's (--format json:
opa test --format json's array of results); the exit status is 1 when any test
fails or none ran.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ps []*provider.Provider
			if providersPath != "" {
				var err error
				if ps, err = loadProviders(providersPath); err != nil {
					return err
				}
			}
			var rts []routes.Route
			if routesPath != "" {
				var err error
				if rts, err = routes.Load(routesPath, scope.Known); err != nil {
					return err
				}
			}
			paths := args
			if len(paths) == 0 {
				if st, err := os.Stat("policies"); err == nil && st.IsDir() {
					paths = []string{"policies"}
				}
			}
			asJSON, err := jsonFormat(format)
			if err != nil {
				return err
			}
			sum, err := policy.RunTests(cmd.Context(), policy.TestOptions{
				Paths: paths, Providers: ps, Routes: rts, Run: run, Verbose: verbose, JSON: asJSON, Out: cmd.OutOrStdout(),
			})
			if err != nil {
				return err
			}
			if !sum.OK() {
				return exitError{code: exitRuntime}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&providersPath, "providers", "", "providers file whose compiled modules the tests can use")
	cmd.Flags().StringVar(&routesPath, "routes", "", "route table CSV (default: Buddy's)")
	cmd.Flags().StringVar(&run, "run", "", "only run tests whose name matches this regular expression")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every test, like opa test -v")
	formatFlag(cmd, &format)
	return cmd
}

func newPolicyEval() *cobra.Command {
	var providersPath, providerID, claimsPath, jwt, ip, at string
	var policyPaths, requested []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "eval --providers FILE --provider ID (--claims FILE.json | --token JWT) [--ip ADDR]",
		Short: "Show the exchange decision for a set of claims or a token, and why",
		Long: `Evaluates the exchange decision — trust conditions, hand-written policies,
guardrails, IP restrictions — for the given claims, and prints it. A denial
lists every failing condition with the claim's actual value.

With --token the claims are read from the JWT WITHOUT verifying its signature,
expiry or audience: this explains the policy, it does not authenticate. The
exit status is 0 for ALLOW and 3 for DENY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (claimsPath == "") == (jwt == "") {
				return usagef("give exactly one of --claims FILE.json or --token JWT")
			}
			ps, err := loadProviders(providersPath)
			if err != nil {
				return err
			}
			var pols []policy.File
			if len(policyPaths) > 0 {
				if pols, err = policy.LoadPolicies(policyPaths, false); err != nil {
					return err
				}
			}
			b, err := policy.Build(cmd.Context(), policy.Sources{Providers: ps, Policies: pols})
			if err != nil {
				return err
			}
			snap, err := policy.Compile(cmd.Context(), b)
			if err != nil {
				return err
			}
			var claims map[string]any
			if jwt != "" {
				if _, claims, err = oidc.Peek(strings.TrimSpace(jwt)); err != nil {
					return fmt.Errorf("--token: %w", err)
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "note: claims read from the token WITHOUT verifying its signature, expiry or audience")
				for _, p := range ps {
					if string(p.ID) == providerID {
						for _, m := range p.TokenMismatch(claims) {
							fmt.Fprintln(cmd.ErrOrStderr(), "note:", m)
						}
					}
				}
			} else {
				f, err := os.Open(claimsPath)
				if err != nil {
					return err
				}
				defer f.Close()
				if claims, err = policy.ReadClaims(f); err != nil {
					return fmt.Errorf("%s: %w", claimsPath, err)
				}
			}
			now := time.Now()
			if at != "" {
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return usagef("--time %q: want RFC 3339, e.g. 2026-11-22T10:00:00Z", at)
				}
			}
			var req []string
			if len(requested) > 0 {
				req = requested
			}
			d, err := snap.Exchange(cmd.Context(), policy.ExchangeInput{
				ProviderID: providerID, Claims: claims, ClientIP: ip, Time: now, RequestedScopes: req,
			})
			if err != nil {
				return err
			}
			if asJSON {
				doc, err := d.Document()
				if err != nil {
					return err
				}
				if err := printJSON(cmd.OutOrStdout(), doc); err != nil {
					return err
				}
			} else {
				d.Explain(cmd.OutOrStdout(), providerID)
			}
			if !d.Allow {
				return exitError{code: 3}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&providersPath, "providers", "providers.yaml", "providers file")
	f.StringVar(&providerID, "provider", "", "provider ID (required)")
	f.StringVar(&claimsPath, "claims", "", "JSON file with the token's claims")
	f.StringVar(&jwt, "token", "", "a JWT whose claims to use (signature NOT verified)")
	f.StringVar(&ip, "ip", "127.0.0.1", "client address, for IP restrictions")
	f.StringVar(&at, "time", "", "evaluation time, RFC 3339 (default: now)")
	f.StringSliceVar(&policyPaths, "policies", nil, "Rego files or directories (default: the built-in policies)")
	f.StringSliceVar(&requested, "scope", nil, "requested scopes (RFC 8693 narrowing), comma-separated")
	f.BoolVar(&asJSON, "json", false, "print the decision document as the policy returns it (as opa eval would)")
	_ = cmd.MarkFlagRequired("provider")
	_ = cmd.RegisterFlagCompletionFunc("provider", completeProviderIDs)
	_ = cmd.RegisterFlagCompletionFunc("scope", completeScopes)
	yamlFile(cmd, "providers")
	return cmd
}
