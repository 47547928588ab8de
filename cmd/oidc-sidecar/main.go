// Command oidc-sidecar exchanges CI OIDC tokens for short-lived API tokens
// and proxies the API behind policy. This package is the CLI only: flags,
// help text and exit codes; the work happens in the sidecar/ packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/login"
	buildinfo "github.com/oidc-sidecar/oidc-sidecar/sidecar/version"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, sidecar/version falls back to the Go build info.
var version = "dev"

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// Exit statuses, as --help states them.
const (
	exitRuntime = 1 // the command ran and failed
	exitUsage   = 2 // unknown command or flag, a missing or bad argument
)

// cobraUsage recognises the usage errors cobra makes itself (unknown
// command, missing required flags), which no hook can wrap.
var cobraUsage = []string{"unknown command ", "required flag(s) ", "unknown flag: ", "unknown shorthand flag: ",
	"flag needs an argument: ", "invalid argument ", "accepts ", "requires at least ", "if any flags in the group "}

// exitCode maps err to the exit status.
func exitCode(err error) int {
	var ee exitError
	var ue usageError
	var le *login.Error
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &le) && le.Step == login.StepUsage:
		return exitUsage
	}
	for _, p := range cobraUsage {
		if strings.HasPrefix(err.Error(), p) {
			return exitUsage
		}
	}
	return exitRuntime
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	os.Exit(run(ctx, root, os.Stderr))
}

// run executes root and returns the exit status, printing the error.
func run(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	c, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	code := exitCode(err)
	var ee exitError
	if !errors.As(err, &ee) {
		fmt.Fprintln(stderr, "oidc-sidecar:", err)
		if code == exitUsage && c != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", c.CommandPath())
		}
	}
	return code
}

// markUsageErrors makes argument-count and flag-parsing errors of every
// command usage errors.
func markUsageErrors(c *cobra.Command) {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if a := c.Args; a != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := a(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	if !c.Runnable() && c.HasParent() {
		// A command group ("policy"): help, or a usage error for an
		// unknown subcommand (cobra would print help and exit 0).
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
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

Start with "oidc-sidecar demo" to see the whole flow with no set-up.

Exit status: 0 on success; 1 when the command fails (a bad file, an
unreachable service); 2 for a usage error (unknown command or flag, a missing
required flag, a wrong argument); "policy eval" exits 3 for DENY.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get(version).String(),
	}
	root.SetVersionTemplate("oidc-sidecar {{.Version}}\n")
	root.AddCommand(newServe(), newDemo(), newPolicy(), newProvider(), newBundle(), newLogin(), newHealthcheck(), newFakeUpstream(), newVersion(), newRoutes(), newAdmin())
	markUsageErrors(root)
	return root
}
