package login

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// Step says which step of Run failed.
type Step string

const (
	// KindUsage: the options are wrong (a flag or its environment fallback).
	// Nothing was sent anywhere.
	StepUsage Step = "usage"
	// KindOIDCToken: the job's OIDC token could not be found or fetched.
	// Nothing was sent to the sidecar.
	StepOIDCToken Step = "oidc-token"
	// KindExchange: the sidecar did not answer with a token.
	StepExchange Step = "exchange"
	// KindOutput: the token was issued but could not be printed or exported.
	StepOutput Step = "output"
)

// Error is every failure Run returns. Error() is one line that says what
// went wrong and what to do; it never contains the OIDC token or the issued
// token.
type Error struct {
	Step Step
	// Status is the HTTP status of the last response of the failed step
	// (the exchange, or GitHub's token endpoint), 0 if there was none.
	Status int
	// Line is the message Error returns.
	Line string
	// Err is the underlying error, if any (for errors.Is / errors.As).
	Err error
}

func (e *Error) Error() string { return e.Line }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func newError(step Step, format string, args ...any) *Error {
	return &Error{Step: step, Line: oneLine(fmt.Sprintf(format, args...), 0)}
}

func usagef(format string, args ...any) *Error { return newError(StepUsage, format, args...) }

func oidcf(format string, args ...any) *Error { return newError(StepOIDCToken, format, args...) }

func outputf(format string, args ...any) *Error { return newError(StepOutput, format, args...) }

// oneLine makes s safe to print as one line of a CI log: control characters
// (newlines included) become spaces, runs of spaces collapse, and with
// max > 0 the result is cut to max runes. Text from servers goes through it
// so that a hostile or broken answer cannot forge log lines or workflow
// commands.
func oneLine(s string, max int) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if max > 0 && n >= max {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// redact removes secrets from text that came from elsewhere (a server's
// error message, a transport error) before it is printed.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// rootCause drops the *url.Error wrapping, whose text repeats the method
// and URL that the messages print themselves.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}
