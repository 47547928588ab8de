package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/fakeapi"
)

// newHealthcheck is for container healthchecks: distroless images have no
// curl.
func newHealthcheck() *cobra.Command {
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck [--url http://127.0.0.1:9090/readyz]",
		Short: "Exit 0 if the sidecar's readiness endpoint answers 200 (for container healthchecks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck %s: %w", url, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:9090/readyz", "readiness URL")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait")
	return cmd
}

// newFakeUpstream serves the small fake Buddy API used by docker-compose.yml
// and the demo. Hidden: it is an example upstream, not part of the product.
func newFakeUpstream() *cobra.Command {
	var listen, tokenEnv string
	cmd := &cobra.Command{
		Use:    "fake-upstream --listen ADDR --token-env NAME",
		Short:  "Serve a small fake Buddy API that accepts only the token in $NAME (example upstream)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok := os.Getenv(tokenEnv)
			if tok == "" {
				return fmt.Errorf("%s is empty: set the token the fake API accepts", tokenEnv)
			}
			srv := &http.Server{Addr: listen, Handler: fakeapi.New(tok), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			fmt.Fprintln(cmd.ErrOrStderr(), "fake Buddy API listening on", listen)
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8081", "address to listen on")
	cmd.Flags().StringVar(&tokenEnv, "token-env", "BUDDY_TOKEN", "variable holding the accepted upstream token")
	return cmd
}
