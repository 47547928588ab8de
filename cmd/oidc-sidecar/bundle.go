package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
)

func newBundle() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Build and inspect OPA bundles that fully describe a deployment",
	}
	cmd.AddCommand(newBundleBuild(), newBundleInspect())
	return cmd
}

func newBundleBuild() *cobra.Command {
	var providers, routesPath, out, revision, unknownRoutes string
	var policies []string
	cmd := &cobra.Command{
		Use:   "build --providers providers.yaml [--policies DIR] -o bundle.tar.gz",
		Short: "Write a standard OPA bundle: compiled providers, policies, routes and data",
		Long: `Builds a bundle (.tar.gz) with a manifest (revision, roots ["sidecar"]),
the compiled provider modules, the trust library, the policies (default: the
built-in ones) and the data documents (providers, scopes, routes, settings).
The upstream opa run -b and opa inspect accept it; serve loads it with
bundle: in the configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, _, err := policy.BuildFromFiles(cmd.Context(), policy.Files{
				Providers: providers, Policies: policies, Routes: routesPath,
				Settings: policy.Settings{UnknownRoutes: unknownRoutes}, Revision: revision,
			})
			if err != nil {
				return err
			}
			if _, err := policy.Compile(cmd.Context(), b); err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), ".bundle-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if err := policy.WriteBundle(tmp, b); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: revision %s, %d module(s)\n", out, b.Manifest.Revision, len(b.Modules))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&providers, "providers", "providers.yaml", "providers file")
	f.StringSliceVar(&policies, "policies", nil, "Rego files or directories (default: the built-in policies)")
	f.StringVar(&routesPath, "routes", "", "route table CSV (default: Buddy's)")
	f.StringVar(&unknownRoutes, "unknown-routes", "deny", "deny | authenticated: what happens to requests that match no route")
	f.StringVar(&revision, "revision", "", "bundle revision (default: a hash of the content)")
	f.StringVarP(&out, "output", "o", "bundle.tar.gz", "output file")
	return cmd
}

func newBundleInspect() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect BUNDLE",
		Short: "Show a bundle's revision, modules, providers and routes, and check that it compiles",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := policy.ReadBundleFile(args[0])
			if err != nil {
				return err
			}
			snap, err := policy.Compile(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("%s does not compile: %w", args[0], err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "revision:  %s\n", snap.Revision)
			if b.Manifest.Roots != nil {
				fmt.Fprintf(w, "roots:     %s\n", strings.Join(*b.Manifest.Roots, ", "))
			}
			fmt.Fprintf(w, "modules:   %d\n", len(b.Modules))
			for _, m := range b.Modules {
				fmt.Fprintf(w, "  %s\n", m.Path)
			}
			ids := make([]string, 0, len(snap.Providers))
			for id := range snap.Providers {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			fmt.Fprintf(w, "providers: %d\n", len(ids))
			for _, id := range ids {
				p := snap.Providers[id]
				fmt.Fprintf(w, "  %s  %-14s %s\n", id, p.Type, p.Name)
			}
			fmt.Fprintf(w, "routes:    %d\n", len(snap.Routes))
			return nil
		},
	}
}
