package login

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	userAgent = "oidc-sidecar-login"
	// maxBackoff caps one wait between attempts.
	maxBackoff = time.Minute
	// maxTokenLen bounds an issued token.
	maxTokenLen = 4096
	// maxMessage bounds a server's error message in an error line.
	maxMessage = 300
)

// response is one HTTP answer, its body read (up to maxTokenBytes).
type response struct {
	status int
	header http.Header
	body   []byte
}

// send performs the request build returns, retrying network errors and 5xx
// answers with exponential backoff (r.backoff, then twice that, ...), up to
// r.attempts tries in all; any other answer ends it at once. It returns the
// last answer, or the last error when the last try got none, and the number
// of tries made. build must create a fresh request each time.
func (r *runner) send(ctx context.Context, what string, c *http.Client, build func() (*http.Request, error)) (*response, int, error) {
	for attempt := 1; ; attempt++ {
		req, err := build()
		if err != nil {
			return nil, attempt, err
		}
		var resp *response
		res, err := c.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(io.LimitReader(res.Body, maxTokenBytes))
			_ = res.Body.Close()
			if rerr != nil {
				err = rerr
			} else {
				resp = &response{status: res.StatusCode, header: res.Header, body: body}
			}
		}
		if ctx.Err() != nil {
			return nil, attempt, ctx.Err()
		}
		var why string
		switch {
		case err != nil:
			why = rootCause(err).Error()
		case resp.status >= 500:
			why = fmt.Sprintf("HTTP %d", resp.status)
		default:
			return resp, attempt, nil
		}
		if attempt >= r.attempts {
			return resp, attempt, err
		}
		delay := r.backoff
		for i := 1; i < attempt && delay < maxBackoff; i++ {
			delay *= 2
		}
		delay = min(delay, maxBackoff)
		r.notef("%s: attempt %d of %d failed (%s); retrying in %s", what, attempt, r.attempts, why, delay)
		if err := r.sleep(ctx, delay); err != nil {
			return nil, attempt, err
		}
	}
}

// exchange posts the OIDC token to the sidecar and returns the issued token.
func (r *runner) exchange(ctx context.Context, jwt string) (string, *Error) {
	r.secrets = append(r.secrets, jwt)
	body, _ := json.Marshal(struct { // two strings: cannot fail
		ProviderID       string `json:"provider_id"`
		WebIdentityToken string `json:"web_identity_token"`
	}{r.providerID, jwt})
	target := r.endpoint + ExchangePath
	resp, attempts, err := r.send(ctx, "token exchange", r.exchanger, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", userAgent)
		return req, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", stopped(ctx, StepExchange, "exchanging the OIDC token")
		}
		hint := "check --sidecar-url and that the sidecar is reachable from this job"
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			hint = "check --sidecar-url; if the sidecar's certificate comes from a private CA, point SSL_CERT_FILE at that CA's certificate"
		}
		e := &Error{Step: StepExchange, Err: err, Line: oneLine(fmt.Sprintf("token exchange failed: cannot reach %s after %s: %s: %s",
			target, plural(attempts, "attempt"), redact(rootCause(err).Error(), jwt), hint), 0)}
		return "", e
	}

	st := resp.status
	fail := func(msg, hint string) (string, *Error) {
		return "", &Error{Step: StepExchange, Status: st,
			Line: oneLine(fmt.Sprintf("token exchange failed: %s (HTTP %d): %s", msg, st, hint), 0)}
	}
	switch {
	case st >= 200 && st <= 299:
		token, problem := parseToken(resp.body)
		if problem != "" {
			return fail(problem, "check that --sidecar-url points at the oidc-sidecar (or Buddy's API), not at another service")
		}
		return token, nil
	case st >= 300 && st <= 399:
		loc := oneLine(resp.header.Get("Location"), maxMessage)
		return fail(fmt.Sprintf("the sidecar redirected to %q", loc),
			"use the final address as --sidecar-url (redirects are not followed, so that the OIDC token goes only where you point it)")
	}
	msg := serverMessage(resp.body)
	if msg == "" {
		msg = fmt.Sprintf("Token exchange failed with status %d", st)
	}
	msg = redact(msg, jwt)
	var hint string
	switch {
	case st == http.StatusBadRequest:
		hint = "check --provider-id, and that --source gives the job's own, unmodified OIDC token"
	case st == http.StatusUnauthorized:
		hint = fmt.Sprintf("the sidecar refused this job's OIDC token: compare the token's issuer, audience (--audience) and claims with provider %s's settings and trust conditions", r.providerID)
	case st == http.StatusForbidden:
		hint = fmt.Sprintf("provider %s does not allow this job (trust conditions, IP or workspace restrictions): ask the sidecar's operator", r.providerID)
	case st == http.StatusNotFound || st == http.StatusMethodNotAllowed:
		hint = fmt.Sprintf("check that --sidecar-url is the sidecar's base URL and that provider %s exists in its providers.yaml", r.providerID)
	case st == http.StatusTooManyRequests:
		hint = "the sidecar is rate-limiting exchanges and 429 is not retried: " + retryAfter(resp.header.Get("Retry-After"))
	case st >= 500 && st <= 599:
		hint = fmt.Sprintf("the sidecar failed %s: check its logs and readiness", plural(attempts, "attempt"))
	case st >= 400 && st <= 499:
		hint = "check --sidecar-url and --provider-id"
	default:
		hint = "check that --sidecar-url points at the oidc-sidecar"
	}
	return fail(msg, hint)
}

// parseToken reads a successful exchange's body: the bare token as text
// (the sidecar's default answer, and Buddy's service's), a JSON string
// (Buddy's API reference; the sidecar's buddy_response: json_string), or
// JSON with a token, access_token or buddy_token field (as buddy/login
// does). problem is "" on success.
func parseToken(body []byte) (token, problem string) {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return "", "the response body is empty"
	}
	switch s[0] {
	case '"':
		if json.Unmarshal([]byte(s), &token) != nil {
			return "", "the response is malformed JSON"
		}
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &m) != nil {
			return "", "the response is malformed JSON"
		}
		for _, k := range []string{"token", "access_token", "buddy_token"} {
			var v string
			if raw, ok := m[k]; ok && json.Unmarshal(raw, &v) == nil && strings.TrimSpace(v) != "" {
				token = v
				break
			}
		}
		if token == "" {
			return "", "the response has no token, access_token or buddy_token field"
		}
	default:
		token = s
	}
	token = strings.TrimSpace(token)
	if !validToken(token) {
		return "", "the response is not a token (empty, over 4 KiB, or with spaces, quotes, markup or control characters)"
	}
	return token, ""
}

// validToken accepts printable ASCII without spaces, so that the token is
// safe in a header, a log mask, a shell word and a $GITHUB_ENV line.
func validToken(t string) bool {
	if t == "" || len(t) > maxTokenLen || strings.ContainsAny(t[:1], "<[{") {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '`' || c == '\\' {
			return false
		}
	}
	return true
}

// serverMessage extracts an error message from a JSON error body: Buddy's
// errors[0].message, else a top-level message, else OAuth's
// error_description or error. It returns "" when there is none.
func serverMessage(body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(bytes.TrimSpace(body), &m) != nil {
		return ""
	}
	str := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return oneLine(s, maxMessage)
	}
	var errs []struct {
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(m["errors"], &errs) == nil && len(errs) > 0 {
		if s := str(errs[0].Message); s != "" {
			return s
		}
	}
	for _, k := range []string{"message", "error_description", "error"} {
		if s := str(m[k]); s != "" {
			return s
		}
	}
	return ""
}

// retryAfter turns a Retry-After header (seconds or an HTTP date) into
// advice.
func retryAfter(h string) string {
	h = strings.TrimSpace(h)
	if h == "" {
		return "retry later"
	}
	if n, err := strconv.Atoi(h); err == nil && n >= 0 {
		return fmt.Sprintf("retry after %s (Retry-After: %d)", time.Duration(n)*time.Second, n)
	}
	if t, err := http.ParseTime(h); err == nil {
		return "retry after " + t.UTC().Format(time.RFC3339) + " (Retry-After)"
	}
	return "retry later (Retry-After: " + oneLine(h, 64) + ")"
}

// stopped is the error for a context that ended mid-request.
func stopped(ctx context.Context, step Step, doing string) *Error {
	cause := context.Cause(ctx)
	hint := "the job was cancelled"
	if errors.Is(cause, context.DeadlineExceeded) {
		hint = "the time allowed ran out: raise the step's timeout, or check that the server answers"
	}
	return &Error{Step: step, Err: cause, Line: oneLine(fmt.Sprintf("stopped while %s: %v (%s)", doing, cause, hint), 0)}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
