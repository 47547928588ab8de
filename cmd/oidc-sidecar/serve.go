package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/server"
)

func newServe() *cobra.Command {
	var config, bundle string
	var pprof bool
	cmd := &cobra.Command{
		Use:   "serve --config sidecar.yaml",
		Short: "Run the sidecar: token exchange and proxy on listen, health/metrics on admin_listen",
		Long: `Runs the sidecar with the given configuration file (see examples/sidecar.yaml
and docs/configuration.md). Every key can be overridden by an environment
variable, e.g. OIDC_SIDECAR_REDIS_URL or OIDC_SIDECAR_RATE_LIMITS_PER_IP; lists
are comma-separated. The configuration is validated at start and every problem
is listed. Without a redis block, tokens live in process memory (one instance
only; a warning says so). --bundle FILE|URL (or OIDC_SIDECAR_BUNDLE) serves a
bundle built by "bundle build" instead of the file's providers, policies and
routes; an OIDC_SIDECAR_* variable that sets no key is warned about.
--pprof (or pprof: true, OIDC_SIDECAR_PPROF) serves Go's profiles under
/debug/pprof/ on admin_listen, behind the admin credential.

Environment overrides:
  ` + strings.Join(server.EnvKeys(), "\n  "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.Load(config, server.LoadOptions{Environ: os.Environ(), Bundle: bundle, Pprof: pprof})
			if err != nil {
				return err
			}
			s, err := server.New(cmd.Context(), cfg, server.Options{})
			if err != nil {
				return err
			}
			return s.Serve(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "sidecar.yaml", "configuration file")
	cmd.Flags().StringVar(&bundle, "bundle", "", "serve this bundle (file, directory or http(s) URL) instead of the file's providers/policies/routes")
	cmd.Flags().BoolVar(&pprof, "pprof", false, "serve /debug/pprof/ on admin_listen behind the admin credential (profiles reveal internals; only while profiling)")
	return cmd
}
