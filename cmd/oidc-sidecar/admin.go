package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/revocation"
)

// newAdmin groups calls to a running sidecar's admin listener.
func newAdmin() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Operate a running sidecar through its admin listener",
	}
	cmd.AddCommand(newRevokeProviderTokens())
	return cmd
}

func newRevokeProviderTokens() *cobra.Command {
	var adminURL, providerID, tokenEnv string
	cmd := &cobra.Command{
		Use:   "revoke-provider-tokens --admin-url URL --provider-id ID",
		Short: "End every token of one provider issued before now, on every replica (credential from $OIDC_SIDECAR_ADMIN_TOKEN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := revocation.RevokeProviderTokens(cmd.Context(), nil, adminURL, providerID, os.Getenv(tokenEnv))
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	cmd.Flags().StringVar(&adminURL, "admin-url", "http://127.0.0.1:9090", "the sidecar's admin listener")
	cmd.Flags().StringVar(&providerID, "provider-id", "", "the provider whose tokens to revoke")
	cmd.Flags().StringVar(&tokenEnv, "token-env", "OIDC_SIDECAR_ADMIN_TOKEN", "the variable holding the admin credential")
	return cmd
}
