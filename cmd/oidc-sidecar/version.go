package main

import (
	"fmt"

	"github.com/spf13/cobra"

	buildinfo "github.com/oidc-sidecar/oidc-sidecar/sidecar/version"
)

func newVersion() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the version, the VCS commit it was built from, and the Go version",
		Long: `Prints the version stamped by the release build or, without one, the one the
Go toolchain recorded: the module version (the tag for go install ...@vX.Y.Z,
a pseudo-version for a build from a clone), the commit and whether the tree
had uncommitted changes ("modified"). --json prints all of it as one object.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Get(version)
			if asJSON {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "oidc-sidecar", info)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build information as JSON")
	return cmd
}
