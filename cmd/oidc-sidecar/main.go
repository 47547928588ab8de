// Command oidc-sidecar exchanges CI OIDC tokens for short-lived API tokens
// and proxies the API behind policy. This package is the CLI only: flags,
// help text and exit codes; the work happens in the sidecar/ packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "oidc-sidecar:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "oidc-sidecar",
		Short: "Exchange CI OIDC tokens for short-lived, scoped API tokens, and proxy the API behind policy",
		Long: `oidc-sidecar lets CI jobs (GitHub Actions, CircleCI, any OIDC issuer) reach the
Buddy API — or any API like it — without stored secrets. A job posts its OIDC
token; the sidecar verifies it, evaluates the provider's trust conditions
(compiled to Rego, evaluated by embedded OPA) and returns a short-lived token
carrying the provider's scopes. Requests with that token go through the
sidecar's proxy, which enforces each route's scopes and workspaces.

Start with "oidc-sidecar demo" to see the whole flow with no set-up.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newServe(), newDemo(), newPolicy(), newProvider(), newBundle(), newLogin(), newHealthcheck(), newFakeUpstream(), newAdmin())
	return root
}
