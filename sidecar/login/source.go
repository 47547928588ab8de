package login

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// maxTokenBytes bounds what is read as an OIDC token or a response body
// that should hold one.
const maxTokenBytes = 64 << 10

// CircleCI's variables, newest first.
var circleVars = []string{"CIRCLE_OIDC_TOKEN_V2", "CIRCLE_OIDC_TOKEN"}

func checkSource(s string) *Error {
	switch {
	case s == "auto" || s == "github" || s == "circleci":
		return nil
	case strings.HasPrefix(s, "env:"):
		name := s[len("env:"):]
		if name == "" {
			return usagef("--source env: needs a variable name, e.g. --source env:MY_OIDC_TOKEN")
		}
		if !envNameRE.MatchString(name) {
			return usagef("--source %q: %q is not a valid variable name (letters, digits and underscores, not starting with a digit)", s, name)
		}
		return nil
	case strings.HasPrefix(s, "file:"):
		if s[len("file:"):] == "" {
			return usagef("--source file: needs a path, e.g. --source file:/tmp/oidc-token")
		}
		return nil
	}
	return usagef("--source %q is not one of auto, github, circleci, env:NAME, file:PATH", s)
}

// oidcToken finds the job's OIDC token as Source says.
func (r *runner) oidcToken(ctx context.Context) (string, *Error) {
	var (
		tok, from string
		e         *Error
	)
	switch src := r.source; {
	case src == "github":
		tok, from, e = r.fromGitHub(ctx)
	case src == "circleci":
		tok, from, e = r.fromCircleCI()
	case strings.HasPrefix(src, "env:"):
		tok, from, e = r.fromEnv(src[len("env:"):])
	case strings.HasPrefix(src, "file:"):
		tok, from, e = fromFile(src[len("file:"):])
	case r.getenv("GITHUB_ACTIONS") == "true":
		tok, from, e = r.fromGitHub(ctx)
	case r.getenv("CIRCLECI") == "true":
		tok, from, e = r.fromCircleCI()
	default:
		return "", oidcf("no OIDC token found: --source auto looks for GitHub Actions (GITHUB_ACTIONS=true) and CircleCI (CIRCLECI=true) and found neither; elsewhere pass --source env:NAME or --source file:PATH")
	}
	if e != nil {
		return "", e
	}
	if !looksLikeJWT(tok) {
		return "", oidcf("the OIDC token from %s is not a JWT (three dot-separated base64url parts): point --source at the job's OIDC token", from)
	}
	return tok, nil
}

// fromGitHub requests a token for r.audience from the GitHub Actions
// runtime, as @actions/core's getIDToken does.
func (r *runner) fromGitHub(ctx context.Context) (string, string, *Error) {
	const from = "GitHub Actions"
	base := r.getenv("ACTIONS_ID_TOKEN_REQUEST_URL")
	bearer := r.getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if base == "" {
		return "", "", oidcf(`ACTIONS_ID_TOKEN_REQUEST_URL is not set: the job needs "permissions: id-token: write"`)
	}
	if bearer == "" {
		return "", "", oidcf(`ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set: the job needs "permissions: id-token: write"`)
	}
	r.secrets = append(r.secrets, bearer)
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", "", oidcf("ACTIONS_ID_TOKEN_REQUEST_URL is not an absolute http(s) URL: run on a GitHub Actions runner, or pass --source env:NAME")
	}
	// The runtime's URL already carries a query string (api-version=...).
	sep := "&"
	switch {
	case strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&"):
		sep = ""
	case u.RawQuery == "":
		sep = "?"
	}
	full := base + sep + "audience=" + encodeURIComponent(r.audience)

	resp, attempts, err := r.send(ctx, "GitHub OIDC token request", r.client, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", userAgent)
		return req, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", "", stopped(ctx, StepOIDCToken, "getting the OIDC token from GitHub")
		}
		e := oidcf("cannot get the job's OIDC token from GitHub after %d attempts: %s: re-run the job; if it keeps failing, check https://www.githubstatus.com",
			attempts, redact(rootCause(err).Error(), bearer))
		e.Err = err
		return "", "", e
	}
	switch {
	case resp.status >= 500:
		e := oidcf("GitHub's OIDC token endpoint failed with HTTP %d after %d attempts: re-run the job; if it keeps failing, check https://www.githubstatus.com", resp.status, attempts)
		e.Status = resp.status
		return "", "", e
	case resp.status < 200 || resp.status > 299:
		detail := ""
		if m := serverMessage(resp.body); m != "" {
			detail = ": " + redact(m, bearer)
		}
		e := oidcf(`GitHub refused the OIDC token request (HTTP %d%s): check that the job has "permissions: id-token: write" and that --audience %q is valid`, resp.status, detail, r.audience)
		e.Status = resp.status
		return "", "", e
	}
	var v struct {
		Value string `json:"value"`
	}
	if json.Unmarshal(resp.body, &v) != nil || strings.TrimSpace(v.Value) == "" {
		e := oidcf(`GitHub's OIDC token response has no "value" (HTTP %d): re-run the job; if it keeps failing, pass --source env:NAME`, resp.status)
		e.Status = resp.status
		return "", "", e
	}
	return strings.TrimSpace(v.Value), from, nil
}

// fromCircleCI reads CIRCLE_OIDC_TOKEN_V2, then CIRCLE_OIDC_TOKEN.
func (r *runner) fromCircleCI() (string, string, *Error) {
	for i, name := range circleVars {
		if v := strings.TrimSpace(r.getenv(name)); v != "" {
			if i > 0 {
				r.notef("%s is not set; using %s", circleVars[0], name)
			}
			return v, name, nil
		}
	}
	return "", "", oidcf("CIRCLE_OIDC_TOKEN_V2 and CIRCLE_OIDC_TOKEN are not set: run the job in a context or a project with OIDC tokens enabled (jobs from forked pull requests get none)")
}

func (r *runner) fromEnv(name string) (string, string, *Error) {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return "", "", oidcf("environment variable %s is empty or not set: set it to the job's OIDC token, or change --source", name)
	}
	return v, "environment variable " + name, nil
}

func fromFile(path string) (string, string, *Error) {
	data, err := readFileLimited(path, maxTokenBytes+1)
	if err != nil {
		var pe *fs.PathError
		cause := err
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		e := oidcf("cannot read the OIDC token file %s: %v: check --source file:PATH", path, cause)
		e.Err = err
		return "", "", e
	}
	if len(data) > maxTokenBytes {
		return "", "", oidcf("the OIDC token file %s is larger than 64 KiB: point --source at a file that holds only the token", path)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", "", oidcf("the OIDC token file %s is empty: write the job's OIDC token to it first, or change --source", path)
	}
	return v, "file " + path, nil
}

func readFileLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// looksLikeJWT reports whether s has a JWS compact serialization's shape:
// three base64url parts, the first two non-empty.
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '=', c == '.':
		default:
			return false
		}
	}
	return true
}

// encodeURIComponent escapes s like JavaScript's encodeURIComponent, which
// @actions/core uses for the audience (a space is %20, not +).
func encodeURIComponent(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
