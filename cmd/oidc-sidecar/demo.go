package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/demo"
)

func newDemo() *cobra.Command {
	var keep, verbose bool
	cmd := &cobra.Command{
		Use:   "demo [--keep-running]",
		Short: "Run the whole flow locally with no set-up: issuer, fake Buddy API, sidecar",
		Long: `Starts, in this process, a local OIDC issuer, a small fake Buddy API and the
sidecar (in-memory token store, no Redis), then walks through: a GitHub
Actions-like token exchanged for a sidecar token; an allowed API call; a call
needing a scope the token lacks (Buddy's 403); a token from another repository
denied, with the failing condition explained; a replayed token refused; an
expired token refused. It exits non-zero if any step does not behave as
printed. --keep-running leaves everything up and prints curl commands.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := demo.Options{Out: cmd.OutOrStdout(), KeepRunning: keep}
			if verbose {
				o.Log = os.Stderr
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-running", false, "leave everything running and print curl commands to try")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the sidecar's JSON logs (audit events included) to stderr")
	return cmd
}
