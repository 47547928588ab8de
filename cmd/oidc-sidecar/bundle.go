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
			// CreateTemp makes the file 0600; a bundle is read by others
			// (a nonroot container user, a file server), as opa build's is.
			if err := tmp.Chmod(0o644); err != nil {
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
	_ = cmd.RegisterFlagCompletionFunc("unknown-routes", completeWords("deny", "authenticated"))
	yamlFile(cmd, "providers")
	return cmd
}

func newBundleInspect() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect BUNDLE [--format json]",
		Short: "Show a bundle's revision, modules, providers and routes, and check that it compiles",
		Long: `Reads a bundle (.tar.gz or directory), compiles it as serve would, and shows
what it holds. --format json prints {"revision", "roots", "modules": [paths],
"providers": [{"id", "type", "name"}], "routes": count}.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := jsonFormat(format)
			if err != nil {
				return err
			}
			b, err := policy.ReadBundleFile(args[0])
			if err != nil {
				return err
			}
			snap, err := policy.Compile(cmd.Context(), b)
			if err != nil {
				return fmt.Errorf("%s does not compile: %w", args[0], err)
			}
			rep := inspectReport{Revision: snap.Revision, Roots: []string{}, Modules: []string{}, Providers: []inspectProvider{}, Routes: len(snap.Routes)}
			if b.Manifest.Roots != nil {
				rep.Roots = *b.Manifest.Roots
			}
			for _, m := range b.Modules {
				rep.Modules = append(rep.Modules, m.Path)
			}
			ids := make([]string, 0, len(snap.Providers))
			for id := range snap.Providers {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				p := snap.Providers[id]
				rep.Providers = append(rep.Providers, inspectProvider{ID: id, Type: string(p.Type), Name: p.Name})
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, rep)
			}
			fmt.Fprintf(w, "revision:  %s\n", rep.Revision)
			if b.Manifest.Roots != nil {
				fmt.Fprintf(w, "roots:     %s\n", strings.Join(rep.Roots, ", "))
			}
			fmt.Fprintf(w, "modules:   %d\n", len(rep.Modules))
			for _, m := range rep.Modules {
				fmt.Fprintf(w, "  %s\n", m)
			}
			fmt.Fprintf(w, "providers: %d\n", len(rep.Providers))
			for _, p := range rep.Providers {
				fmt.Fprintf(w, "  %s  %-14s %s\n", p.ID, p.Type, p.Name)
			}
			fmt.Fprintf(w, "routes:    %d\n", rep.Routes)
			return nil
		},
	}
	formatFlag(cmd, &format)
	return cmd
}

type inspectReport struct {
	Revision  string            `json:"revision"`
	Roots     []string          `json:"roots"`
	Modules   []string          `json:"modules"`
	Providers []inspectProvider `json:"providers"`
	Routes    int               `json:"routes"`
}

type inspectProvider struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Name string `json:"name"`
}
