// Package login is the CI-side client of the sidecar, run as
// `oidc-sidecar login`: the counterpart of Buddy's buddy/login GitHub
// Action. It finds the job's OIDC token (GitHub Actions, CircleCI, an
// environment variable or a file), exchanges it at the sidecar's
// POST /user/oidc/tokens, and prints the short-lived token it gets back or,
// on GitHub Actions, masks it and exports BUDDY_TOKEN and BUDDY_API_ENDPOINT
// to the following steps through $GITHUB_ENV.
//
// Every failure is an *Error whose Error() is one line saying what to do;
// docs/login.md lists them all. Neither the OIDC token nor the issued token
// is ever written to Stderr.
package login

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by Run to zero-valued Options fields.
const (
	DefaultAudience = "Buddy"
	DefaultEnvName  = "BUDDY_TOKEN"
	// EndpointEnvName is the variable that receives the sidecar's URL, as
	// buddy/login exports BUDDY_API_ENDPOINT.
	EndpointEnvName = "BUDDY_API_ENDPOINT"
	DefaultAttempts = 3
	DefaultBackoff  = time.Second
	// DefaultTimeout bounds each HTTP request when Options.HTTPClient is nil.
	DefaultTimeout = 30 * time.Second
)

// ExchangePath is the sidecar's (and Buddy's) token exchange route.
const ExchangePath = "/user/oidc/tokens"

// Options configure Run. Only SidecarURL and ProviderID are required.
type Options struct {
	// SidecarURL is the sidecar's base URL, e.g. https://sidecar.example.com
	// (a path prefix is kept). https is required except for loopback hosts.
	SidecarURL string
	// ProviderID is the provider's UUID in the sidecar's providers.yaml.
	ProviderID string
	// Audience is the audience requested from GitHub Actions (default
	// "Buddy"). CircleCI tokens always carry the organization ID instead.
	Audience string
	// Source says where the OIDC token comes from: "auto" (default: GitHub
	// Actions, then CircleCI), "github", "circleci", "env:NAME" or
	// "file:PATH".
	Source string
	// Format is how the token is printed when it is not exported to GitHub:
	// "token" (default), "env" (NAME='value' lines) or "json".
	Format string
	// Export is "auto" (default: on GitHub Actions mask the token and append
	// it to $GITHUB_ENV, elsewhere print it), "github" or "none" (print).
	Export string
	// EnvName names the token's variable in env output and $GITHUB_ENV
	// (default BUDDY_TOKEN). BUDDY_API_ENDPOINT always carries SidecarURL.
	EnvName string
	// Getenv reads the job's environment (default os.Getenv).
	Getenv func(string) string
	// HTTPClient sends the requests (default: a client with a 30 s timeout).
	// Redirects from the sidecar are never followed, whatever the client's
	// CheckRedirect says.
	HTTPClient *http.Client
	// Stdout receives the output; Stderr progress notes (defaults os.Stdout,
	// os.Stderr).
	Stdout, Stderr io.Writer
	// Retries is the number of attempts (default 3; 1 disables retrying) for
	// network errors and 5xx answers. Backoff is the first wait (default
	// 1 s), doubled after each failed attempt.
	Retries int
	Backoff time.Duration
	// Sleep waits between attempts (default: a timer that honours ctx).
	Sleep func(context.Context, time.Duration) error
}

// Run finds the job's OIDC token, exchanges it at the sidecar and prints or
// exports the issued token. A non-nil error is always an *Error.
func Run(ctx context.Context, o Options) error {
	r, e := prepare(o)
	if e != nil {
		return e
	}
	defer r.close()
	if e := r.run(ctx); e != nil {
		return e
	}
	return nil
}

// runner is Options validated and with defaults applied.
type runner struct {
	endpoint   string // SidecarURL without a trailing slash
	providerID string
	audience   string
	source     string
	format     string
	github     bool     // export to $GITHUB_ENV
	githubEnv  *os.File // opened before the exchange, so that it fails first
	envName    string
	getenv     func(string) string
	client     *http.Client // GitHub's token endpoint
	exchanger  *http.Client // the sidecar: redirects are not followed
	stdout     io.Writer
	stderr     io.Writer
	attempts   int
	backoff    time.Duration
	sleep      func(context.Context, time.Duration) error
	secrets    []string // redacted from notes: the runtime bearer, the OIDC token
}

var (
	uuidRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func prepare(o Options) (*runner, *Error) {
	r := &runner{
		getenv:   o.Getenv,
		stdout:   o.Stdout,
		stderr:   o.Stderr,
		attempts: o.Retries,
		backoff:  o.Backoff,
		sleep:    o.Sleep,
		audience: o.Audience,
		source:   strings.TrimSpace(o.Source),
		format:   strings.TrimSpace(o.Format),
		envName:  strings.TrimSpace(o.EnvName),
	}
	if r.getenv == nil {
		r.getenv = os.Getenv
	}
	if r.stdout == nil {
		r.stdout = os.Stdout
	}
	if r.stderr == nil {
		r.stderr = os.Stderr
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	if r.backoff <= 0 {
		r.backoff = DefaultBackoff
	}
	if r.sleep == nil {
		r.sleep = sleepContext
	}
	if r.audience == "" {
		r.audience = DefaultAudience
	}
	if r.source == "" {
		r.source = "auto"
	}
	if r.format == "" {
		r.format = "token"
	}
	if r.envName == "" {
		r.envName = DefaultEnvName
	}
	r.client = o.HTTPClient
	if r.client == nil {
		r.client = &http.Client{Timeout: DefaultTimeout}
	}
	ex := *r.client
	ex.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r.exchanger = &ex

	var e *Error
	if r.endpoint, e = checkSidecarURL(o.SidecarURL); e != nil {
		return nil, e
	}
	r.providerID = strings.TrimSpace(o.ProviderID)
	switch {
	case r.providerID == "":
		return nil, usagef("provider ID is not set: pass --provider-id or set OIDC_SIDECAR_PROVIDER_ID")
	case !uuidRE.MatchString(r.providerID):
		return nil, usagef("--provider-id %q is not a UUID: copy the provider's id from the sidecar's providers.yaml (8-4-4-4-12 hex digits)", r.providerID)
	}
	if e := checkSource(r.source); e != nil {
		return nil, e
	}
	switch r.format {
	case "token", "env", "json":
	default:
		return nil, usagef("--format %q is not one of token, env, json", o.Format)
	}
	switch {
	case !envNameRE.MatchString(r.envName):
		return nil, usagef("--env-name %q is not a valid variable name: use letters, digits and underscores, not starting with a digit", o.EnvName)
	case strings.EqualFold(r.envName, EndpointEnvName):
		return nil, usagef("--env-name %s clashes with the variable that carries the sidecar's URL: choose another name", r.envName)
	}
	switch strings.TrimSpace(o.Export) {
	case "", "auto":
		r.github = r.getenv("GITHUB_ACTIONS") == "true"
	case "github":
		r.github = true
	case "none":
	default:
		return nil, usagef("--export %q is not one of auto, github, none", o.Export)
	}
	if r.github {
		path := r.getenv("GITHUB_ENV")
		if path == "" {
			return nil, outputf("GITHUB_ENV is not set: exporting to later steps needs a GitHub Actions runner; pass --export none to print the token instead")
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			e := outputf("cannot open $GITHUB_ENV for appending: %v: run this as a step of a GitHub Actions job, or pass --export none to print the token instead", err)
			e.Err = err
			return nil, e
		}
		r.githubEnv = f
	}
	return r, nil
}

func (r *runner) close() {
	if r.githubEnv != nil {
		_ = r.githubEnv.Close()
	}
}

// checkSidecarURL validates the base URL and returns it without a trailing
// slash.
func checkSidecarURL(raw string) (string, *Error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", usagef("sidecar URL is not set: pass --sidecar-url or set OIDC_SIDECAR_URL")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		if (u != nil && u.User != nil) || strings.Contains(raw, "@") {
			return "", usagef("--sidecar-url must not contain a user name or password: the exchange needs no credentials")
		}
		return "", usagef("--sidecar-url %q is not an absolute http(s) URL: use the sidecar's base URL, e.g. https://sidecar.example.com", raw)
	}
	if u.User != nil {
		return "", usagef("--sidecar-url must not contain a user name or password: the exchange needs no credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", usagef("--sidecar-url %q has a query or fragment: use the sidecar's base URL only", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "", usagef("--sidecar-url %q uses plain http: use https (plain http is accepted only for loopback hosts: localhost, 127.0.0.1, ::1)", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (r *runner) run(ctx context.Context) *Error {
	jwt, e := r.oidcToken(ctx)
	if e != nil {
		return e
	}
	token, e := r.exchange(ctx, jwt)
	if e != nil {
		return e
	}
	return r.output(token)
}

// notef writes a progress note to Stderr. Callers never pass a token.
func (r *runner) notef(format string, args ...any) {
	msg := redact(fmt.Sprintf(format, args...), r.secrets...)
	_, _ = io.WriteString(r.stderr, "oidc-sidecar login: "+oneLine(msg, 0)+"\n")
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
