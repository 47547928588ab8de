package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/login"
)

func newLogin() *cobra.Command {
	var o login.Options
	cmd := &cobra.Command{
		Use:   "login --sidecar-url URL --provider-id ID",
		Short: "From a CI job: get the job's OIDC token, exchange it, and export the sidecar token",
		Long: `Finds the job's OIDC token (GitHub Actions: requested for --audience with
ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN; CircleCI: CIRCLE_OIDC_TOKEN_V2, then
CIRCLE_OIDC_TOKEN; or --source env:NAME / file:PATH), exchanges it at the
sidecar for --provider-id, and prints or exports the token. On GitHub Actions it
masks the token (::add-mask::) and appends BUDDY_TOKEN and BUDDY_API_ENDPOINT
to $GITHUB_ENV. Network errors and 5xx responses are retried with backoff,
4xx never. Every failure is one line that says what to do (docs/login.md).

Flags fall back to OIDC_SIDECAR_URL and OIDC_SIDECAR_PROVIDER_ID.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.SidecarURL == "" {
				o.SidecarURL = os.Getenv("OIDC_SIDECAR_URL")
			}
			if o.ProviderID == "" {
				o.ProviderID = os.Getenv("OIDC_SIDECAR_PROVIDER_ID")
			}
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return login.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.SidecarURL, "sidecar-url", "", "the sidecar's base URL (env OIDC_SIDECAR_URL)")
	f.StringVar(&o.ProviderID, "provider-id", "", "the provider ID to exchange for (env OIDC_SIDECAR_PROVIDER_ID)")
	f.StringVar(&o.Audience, "audience", "Buddy", "audience to request the GitHub Actions token for")
	f.StringVar(&o.Source, "source", "auto", "where the OIDC token comes from: auto | github | circleci | env:NAME | file:PATH")
	f.StringVar(&o.Format, "format", "token", "output: token | env | json")
	f.StringVar(&o.Export, "export", "auto", "auto (GitHub Actions: mask and write $GITHUB_ENV) | github | none")
	f.StringVar(&o.EnvName, "env-name", "BUDDY_TOKEN", "variable name for the token")
	_ = cmd.RegisterFlagCompletionFunc("format", completeWords("token", "env", "json"))
	_ = cmd.RegisterFlagCompletionFunc("source", completeWords("auto", "github", "circleci", "env:", "file:"))
	_ = cmd.RegisterFlagCompletionFunc("export", completeWords("auto", "github", "none"))
	return cmd
}
