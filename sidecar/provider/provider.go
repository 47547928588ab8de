// Package provider loads and validates providers.yaml, the file that lists
// the OIDC identity providers the sidecar trusts — the same objects Buddy's
// "OIDC Identity Provider" form creates, with a few sidecar extensions.
//
// The field table (fields.go) is the single source of truth for a
// provider's keys: Parse (providers.yaml), DecodeJSON (the admin API),
// Metadata and FromMetadata (a bundle's data), Append (`provider new`) and
// Schema (docs/providers.schema.json, generated) read it, and one validator
// checks a provider from any of them, reporting a *ValidationError.
//
// Parse reports every problem of a file at once, each with file:line:col and
// the field path, e.g.
//
//	providers.yaml:12:5: providers[1].lifetime: "15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h
//
// The rules that differ by provider type live in one Kind per type (see
// KindOf), like the issuer types of sigstore's fulcio.
package provider

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/providerid"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

// Type is a provider type: which CI system issues the OIDC tokens.
type Type string

// The provider types, as Buddy's form offers them.
const (
	// GitHubActions trusts https://token.actions.githubusercontent.com and
	// requires the conditions to pin the repository owner.
	GitHubActions Type = "github_actions"
	// CircleCI trusts one CircleCI organization's issuer,
	// https://oidc.circleci.com/org/<organization_id>.
	CircleCI Type = "circleci"
	// Other trusts any OIDC issuer given in the file.
	Other Type = "other"
)

// Types returns every provider type, in documentation order.
func Types() []Type { return []Type{GitHubActions, CircleCI, Other} }

// DenialDetail says how much a 401 reply tells the caller about a denial.
type DenialDetail string

// The denial_detail values.
const (
	// DenialConditions names the failing conditions (expected vs actual
	// claim values) in the 401 reply. The default.
	DenialConditions DenialDetail = "conditions"
	// DenialGeneric returns a generic 401 reply; the details go to the audit
	// log only.
	DenialGeneric DenialDetail = "generic"
)

// DenialDetails returns every denial_detail value, the default first.
func DenialDetails() []DenialDetail { return []DenialDetail{DenialConditions, DenialGeneric} }

// lifetimes are Buddy's token lifetime presets, the only lifetimes a
// provider may have.
var lifetimes = []time.Duration{
	10 * time.Minute, 30 * time.Minute, time.Hour, 90 * time.Minute, 3 * time.Hour, 8 * time.Hour,
}

// Lifetimes returns Buddy's token lifetime presets, shortest first.
func Lifetimes() []time.Duration { return append([]time.Duration(nil), lifetimes...) }

// DefaultLifetime is the lifetime of a provider that does not set one.
const DefaultLifetime = 10 * time.Minute

// DefaultGitHubAudience is the audience of a github_actions provider that does
// not set one, as in Buddy's form.
const DefaultGitHubAudience = "Buddy"

// GitHubIssuer is the fixed issuer of github_actions providers.
const GitHubIssuer = "https://token.actions.githubusercontent.com"

// CircleCIIssuerPrefix is the start of a CircleCI organization's issuer; the
// organization ID follows it.
const CircleCIIssuerPrefix = "https://oidc.circleci.com/org/"

// FormatLifetime writes d the way the providers file does: 10m, 1h, 1h30m.
func FormatLifetime(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func lifetimeList() string {
	l := make([]string, len(lifetimes))
	for i, d := range lifetimes {
		l[i] = FormatLifetime(d)
	}
	return strings.Join(l, ", ")
}

// Provider is one entry of the providers file. After Parse or FromMetadata,
// every field holds its effective value: defaults applied, Issuer and
// Audience computed by the provider's Kind.
type Provider struct {
	// ID is the provider's UUID (canonical lower-case form). CI jobs send it
	// as provider_id.
	ID ID `yaml:"id"`
	// Name is a free-text label.
	Name string `yaml:"name"`
	// Type is the provider type.
	Type Type `yaml:"type"`
	// Lifetime is how long an issued token stays valid: one of Lifetimes().
	Lifetime time.Duration `yaml:"lifetime"`
	// Audience is the aud the OIDC token must carry; "" means aud is not
	// checked (other providers only).
	Audience string `yaml:"audience"`
	// OrganizationID is the CircleCI organization UUID (circleci only).
	OrganizationID string `yaml:"organization_id"`
	// Issuer is the iss the OIDC token must carry.
	Issuer string `yaml:"issuer"`
	// TrustConditions is the source text of the trust conditions, "" if none.
	TrustConditions string `yaml:"trust_conditions"`
	// Policy names a hand-written Rego module, package sidecar.custom.<Policy>,
	// that must allow the exchange too; "" if none.
	Policy string `yaml:"policy"`
	// IPRestrictions lists the networks exchanges may come from; empty means
	// any address. Single addresses are stored as /32 or /128 prefixes.
	IPRestrictions []netip.Prefix `yaml:"ip_restrictions"`
	// Workspaces lists the workspace handles issued tokens may use; nil means
	// all of the user's workspaces.
	Workspaces []string `yaml:"workspaces"`
	// Scopes are the Buddy scopes issued tokens carry (never empty).
	Scopes []string `yaml:"scopes"`
	// AllowTokenReuse turns off the one-exchange-per-OIDC-token replay guard.
	AllowTokenReuse bool `yaml:"allow_token_reuse"`
	// MaxTokenAge rejects OIDC tokens whose iat is older than this; 0 means
	// no limit beyond exp. Always whole seconds.
	MaxTokenAge time.Duration `yaml:"max_token_age"`
	// MaxTokenLifetime rejects OIDC tokens whose exp is more than this after
	// their iat, and so bounds the replay guard's keys. Parse sets
	// DefaultMaxTokenLifetime when the file does not; 0 (a Provider built
	// in code) means the default too. Always whole seconds.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// DenialDetail says how much a 401 reply tells.
	DenialDetail DenialDetail `yaml:"denial_detail"`

	// Conditions is TrustConditions parsed; nil if there are none.
	Conditions *trust.Expr `yaml:"-"`
	// Source is where the provider is defined.
	Source Pos `yaml:"-"`
}

// Pos is a place in a providers file.
type Pos struct {
	File string
	Line int
}

// String returns "file:line", or just the file when the line is unknown.
func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Base is String with the file's base name only: what bundles record, so
// that the same file gives the same bundle however its path is spelled.
func (p Pos) Base() string {
	return Pos{File: filepath.Base(p.File), Line: p.Line}.String()
}

// File is a loaded, valid providers file.
type File struct {
	Path      string
	Providers []*Provider
	// Warnings are the problems that do not stop the file from loading.
	Warnings []Diagnostic
}

// Lookup returns the provider with the given id, or nil.
func (f *File) Lookup(id string) *Provider {
	for _, p := range f.Providers {
		if string(p.ID) == id {
			return p
		}
	}
	return nil
}

// Diagnostic is one problem found in a providers file.
type Diagnostic struct {
	File string
	// Line and Col are 1-based; 0 when unknown.
	Line, Col int
	// Field is the path of the offending field, e.g. "providers[1].lifetime";
	// "" for problems of the file as a whole.
	Field string
	// Message says what is wrong and how to fix it.
	Message string
	// Warning is true for problems that do not stop the file from loading.
	Warning bool

	code string // internal classification, e.g. codeNoProviders
}

// String formats the diagnostic as
//
//	providers.yaml:12:5: providers[1].lifetime: "15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h
//
// with "warning: " after the position for warnings.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		b.WriteString(":")
	}
	if d.Line > 0 {
		b.WriteString(strconv.Itoa(d.Line))
		b.WriteString(":")
		if d.Col > 0 {
			b.WriteString(strconv.Itoa(d.Col))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if d.Warning {
		b.WriteString("warning: ")
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// ValidationError is the one error type of provider validation: Parse (a
// providers file), FromMetadata (a bundle's metadata document) and
// DecodeJSON (the admin API's body) return it. It holds every diagnostic
// found, warnings included, in file order.
type ValidationError struct {
	// Subject names what was validated when it is not a providers file,
	// e.g. `provider metadata "550e8400-…"`; the diagnostics then have no
	// File.
	Subject     string
	Diagnostics []Diagnostic
}

// Error lists every diagnostic, one a line, after a summary line.
func (e *ValidationError) Error() string {
	var nerr, nwarn int
	file := ""
	for _, d := range e.Diagnostics {
		if d.Warning {
			nwarn++
		} else {
			nerr++
		}
		if file == "" {
			file = d.File
		}
	}
	var b strings.Builder
	switch {
	case e.Subject != "":
		b.WriteString(e.Subject + ": " + plural(nerr, "error"))
	case file == newProviderFile: // provider new's options, not a file
		b.WriteString("the new provider is invalid: " + plural(nerr, "error"))
	case file == "":
		b.WriteString("invalid providers file: " + plural(nerr, "error"))
	default:
		b.WriteString(file + ": invalid providers file: " + plural(nerr, "error"))
	}
	if nwarn > 0 {
		b.WriteString(", " + plural(nwarn, "warning"))
	}
	for _, d := range e.Diagnostics {
		b.WriteString("\n")
		b.WriteString(d.String())
	}
	return b.String()
}

// Errors returns the diagnostics that are errors.
func (e *ValidationError) Errors() []Diagnostic {
	var out []Diagnostic
	for _, d := range e.Diagnostics {
		if !d.Warning {
			out = append(out, d)
		}
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ID is a provider ID; see package providerid for the rule.
type ID = providerid.ID

// ParseID is the one parse rule for provider IDs (providerid.Parse).
func ParseID(s string) (ID, error) { return providerid.Parse(s) }
