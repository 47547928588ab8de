package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
)

func newProvider() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Create and validate OIDC identity providers (providers.yaml)",
	}
	cmd.AddCommand(newProviderNew(), newProviderValidate())
	return cmd
}

func newProviderNew() *cobra.Command {
	var file string
	var o provider.NewOptions
	var typ string
	cmd := &cobra.Command{
		Use:   "new --type TYPE --name NAME --scopes A,B [flags]",
		Short: "Append a provider with a fresh UUID to the providers file and print its ID",
		Long: `Appends a provider to the providers file (created if missing), keeping the
existing content and comments, and prints the new provider's ID. The provider is
validated first with the same rules as serve; nothing is written if it is
invalid.

Examples:
  oidc-sidecar provider new --type github_actions --name "GHA - octo-repo:deploy" \
    --conditions 'repository_owner is "octo-org" and ref is "refs/heads/main"' \
    --scopes WORKSPACE,EXECUTION_RUN --workspaces my-company
  oidc-sidecar provider new --type circleci --name "CircleCI deploy" \
    --organization-id 4f5e9a52-7c1d-4c8e-9a3b-2b6f0d1e8c77 --scopes EXECUTION_RUN`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Type = provider.Type(typ)
			id, err := provider.Append(file, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "providers.yaml", "providers file to append to")
	f.StringVar(&typ, "type", "", "github_actions | circleci | other (required)")
	f.StringVar(&o.Name, "name", "", "provider name (required)")
	f.StringVar(&o.OrganizationID, "organization-id", "", "CircleCI organization ID (circleci)")
	f.StringVar(&o.Issuer, "issuer", "", "issuer URL (other)")
	f.StringVar(&o.Audience, "audience", "", "audience (github_actions default: Buddy)")
	f.StringVar(&o.TrustConditions, "conditions", "", `trust conditions, e.g. 'repository_owner is "octo-org"'`)
	f.StringVar(&o.Lifetime, "lifetime", "", "token lifetime: 10m 30m 1h 1h30m 3h 8h (default 10m)")
	f.StringSliceVar(&o.Scopes, "scopes", nil, "scopes, comma-separated (required)")
	f.StringSliceVar(&o.Workspaces, "workspaces", nil, "workspaces (default: all)")
	f.StringSliceVar(&o.IPRestrictions, "ip-restrictions", nil, "allowed client CIDRs")
	_ = cmd.MarkFlagRequired("type")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.RegisterFlagCompletionFunc("type", completeWords(providerTypes()...))
	_ = cmd.RegisterFlagCompletionFunc("scopes", completeScopes)
	_ = cmd.RegisterFlagCompletionFunc("lifetime", completeWords(lifetimeWords...))
	yamlFile(cmd, "file")
	return cmd
}

func newProviderValidate() *cobra.Command {
	var file, format string
	cmd := &cobra.Command{
		Use:   "validate [providers.yaml | --providers providers.yaml] [--format json]",
		Short: "Check a providers file and list every problem with file:line",
		Long: `Checks a providers file with the rules serve applies and lists every error
and warning with file:line:col. --format json prints one object:
{"file", "valid", "providers", "errors", "warnings", "diagnostics": [{"file",
"line", "column", "field", "message", "severity": "error"|"warning"}]}; the
exit status is 1 when the file is invalid either way.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cmd.Flags().Changed("providers") {
					return usagef("name the providers file once: as the argument %q or with --providers %q, not both", args[0], file)
				}
				file = args[0]
			}
			asJSON, err := jsonFormat(format)
			if err != nil {
				return err
			}
			f, err := provider.Load(file)
			var ve *provider.ValidationError
			if err != nil && !(asJSON && errors.As(err, &ve)) {
				return err
			}
			if asJSON {
				rep := validateReport{File: file, Valid: err == nil, Diagnostics: []diagnosticJSON{}}
				diags := []provider.Diagnostic{}
				if f != nil {
					diags, rep.Providers = f.Warnings, len(f.Providers)
				} else {
					diags = ve.Diagnostics
				}
				for _, d := range diags {
					sev := "error"
					if d.Warning {
						sev = "warning"
						rep.Warnings++
					} else {
						rep.Errors++
					}
					rep.Diagnostics = append(rep.Diagnostics, diagnosticJSON{d.File, d.Line, d.Col, d.Field, d.Message, sev})
				}
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
				if !rep.Valid {
					return exitError{code: exitRuntime}
				}
				return nil
			}
			for _, w := range f.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), w.String()) // String says "warning:"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d provider(s), valid\n", file, len(f.Providers))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "providers", "providers.yaml", "providers file")
	yamlFile(cmd, "providers")
	formatFlag(cmd, &format)
	return cmd
}

type validateReport struct {
	File        string           `json:"file"`
	Valid       bool             `json:"valid"`
	Providers   int              `json:"providers"`
	Errors      int              `json:"errors"`
	Warnings    int              `json:"warnings"`
	Diagnostics []diagnosticJSON `json:"diagnostics"`
}

type diagnosticJSON struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
}
