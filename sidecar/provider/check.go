package provider

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/providerid"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

// The checks here return "" when the value is fine, or a message saying what
// is wrong and how to fix it. Parse and FromMetadata share them.

const uuidExample = providerid.Example

// checkUUID checks a UUID written in a file (the provider ID, a CircleCI
// organization ID) with the one rule of ParseID.
func checkUUID(s string) string {
	if _, err := ParseID(s); err != nil {
		return err.Error()
	}
	return ""
}

func checkLifetime(d time.Duration) string {
	if slices.Contains(lifetimes, d) {
		return ""
	}
	return fmt.Sprintf("%q is not a Buddy lifetime preset; use one of %s", FormatLifetime(d), lifetimeList())
}

// parseLifetime parses a lifetime as written in the file.
func parseLifetime(s string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Sprintf("%q is not a duration; use one of %s", s, lifetimeList())
	}
	if slices.Contains(lifetimes, d) {
		return d, ""
	}
	return 0, fmt.Sprintf("%q is not a Buddy lifetime preset; use one of %s", s, lifetimeList())
}

func parseMaxTokenAge(s string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Sprintf("%q is not a duration; write e.g. 5m or 1h (0s = no limit)", s)
	}
	return d, checkMaxTokenAge(d)
}

// DefaultMaxTokenLifetime is max_token_lifetime when the file omits it.
// CI OIDC tokens live minutes to hours (GitHub: 5-10 min, CircleCI: 1 h).
const DefaultMaxTokenLifetime = 24 * time.Hour

// MaxMaxTokenLifetime bounds max_token_lifetime.
const MaxMaxTokenLifetime = 30 * 24 * time.Hour

// EffectiveMaxTokenLifetime is p's maximum OIDC token lifetime, with 0
// meaning the default.
func (p *Provider) EffectiveMaxTokenLifetime() time.Duration {
	if p.MaxTokenLifetime <= 0 {
		return DefaultMaxTokenLifetime
	}
	return p.MaxTokenLifetime
}

func parseMaxTokenLifetime(s string) (time.Duration, string) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Sprintf("%q is not a duration; write e.g. 1h or 24h", s)
	}
	return d, checkMaxTokenLifetime(d)
}

func checkMaxTokenLifetime(d time.Duration) string {
	switch {
	case d <= 0:
		return fmt.Sprintf("%s is not positive; write the longest time between iat and exp the issuer's tokens may have, e.g. 1h (the default is 24h)", d)
	case d%time.Second != 0:
		return fmt.Sprintf("%s is not a whole number of seconds; use e.g. %s", d, d.Truncate(time.Second)+time.Second)
	case d > MaxMaxTokenLifetime:
		return fmt.Sprintf("%s is more than the maximum %s; CI OIDC tokens live minutes to hours", d, "720h (30 days)")
	}
	return ""
}

func checkMaxTokenAge(d time.Duration) string {
	switch {
	case d < 0:
		return fmt.Sprintf("%s is negative; use 0s for no limit, or a positive duration", d)
	case d%time.Second != 0:
		return fmt.Sprintf("%s is not a whole number of seconds; use e.g. %s", d, d.Truncate(time.Second)+time.Second)
	}
	return ""
}

// scopeProblem says what is wrong with scope name s, or "" if it is known.
func scopeProblem(s string) string {
	if scope.Known(s) {
		return ""
	}
	msg := fmt.Sprintf("unknown scope %q", s)
	if sug := suggest(s, scope.All()); sug != "" {
		return msg + fmt.Sprintf("; did you mean %s?", sug)
	}
	return msg + "; see the scope table in docs/providers.md"
}

// scopeWarning says why a known scope deserves a warning, or "".
func scopeWarning(s string) string {
	sc, ok := scope.Describe(s)
	switch {
	case !ok:
		return ""
	case sc.Legacy():
		return fmt.Sprintf("%s is a legacy scope of Buddy's removed releases feature; Buddy may reject it", s)
	case sc.Inferred:
		return fmt.Sprintf("%s is inferred to exist but was never seen in Buddy's docs; Buddy may reject it", s)
	}
	return ""
}

var policyRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// regoKeywords cannot be package path segments.
var regoKeywords = []string{
	"as", "contains", "default", "else", "every", "false", "if", "import",
	"in", "not", "null", "package", "some", "true", "with",
}

func checkPolicy(s string) string {
	switch {
	case !policyRE.MatchString(s):
		return fmt.Sprintf("%q is not a valid policy name: use lower-case letters, digits and _, starting with a letter (the module's package is sidecar.custom.<name>)", s)
	case len(s) > 63:
		return fmt.Sprintf("policy name is %d characters long; the limit is 63", len(s))
	case slices.Contains(regoKeywords, s):
		return fmt.Sprintf("%q is a Rego keyword and cannot be a package name; choose another name", s)
	}
	return ""
}

func checkDenialDetail(s string) string {
	for _, d := range DenialDetails() {
		if string(d) == s {
			return ""
		}
	}
	return fmt.Sprintf("unknown denial_detail %q; use conditions (the 401 reply names the failing conditions) or generic (it does not)", s)
}

func checkType(s string) string {
	if _, ok := KindOf(Type(s)); ok {
		return ""
	}
	names := make([]string, 0, 3)
	for _, t := range Types() {
		names = append(names, string(t))
	}
	msg := fmt.Sprintf("unknown type %q; use one of %s", s, strings.Join(names, ", "))
	if sug := suggest(s, names, typeAliases); sug != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", sug)
	}
	return msg
}

var typeAliases = map[string]string{
	"github": "github_actions", "gha": "github_actions", "actions": "github_actions",
	"circle": "circleci", "generic": "other", "custom": "other", "oidc": "other",
}

var workspaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkWorkspace(s string) string {
	switch {
	case s == "":
		return "empty workspace handle"
	case s == "*":
		return `"*" is not a workspace; omit workspaces to allow all of them`
	case !workspaceRE.MatchString(s):
		return fmt.Sprintf("%q is not a workspace handle (the part after app.buddy.works/: letters, digits, '-', '_', '.')", s)
	}
	return ""
}

// parseNetwork parses an ip_restrictions entry: a CIDR prefix or a single
// address. The warning is set when the prefix had host bits (it is masked).
func parseNetwork(s string) (p netip.Prefix, errMsg, warning string) {
	hint := "use CIDR notation such as 203.0.113.0/24 or 2001:db8::/32, or a single address"
	if strings.Contains(s, "*") {
		return p, fmt.Sprintf("%q: wildcards are not supported; %s", s, hint), ""
	}
	if strings.Contains(s, "/") {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Sprintf("%q is not a CIDR prefix; %s", s, hint), ""
		}
		if m := pr.Masked(); m != pr {
			return m, "", fmt.Sprintf("%q has host bits set; it means %s: write that", s, m)
		}
		return pr, "", ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return p, fmt.Sprintf("%q is not an IP address or CIDR prefix; %s", s, hint), ""
	}
	if a.Zone() != "" {
		return p, fmt.Sprintf("%q has a zone; zones are not supported", s), ""
	}
	return netip.PrefixFrom(a, a.BitLen()), "", ""
}

type problem struct {
	msg     string
	warning bool
}

// checkIssuer checks an issuer URL: https (http only for loopback hosts),
// a host, no user info, query or fragment; a trailing slash is a warning.
func checkIssuer(s string) []problem {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return []problem{{fmt.Sprintf("%q is not an absolute URL; write the issuer as https://host/path, exactly as the tokens' iss claim has it", s), false}}
	}
	var out []problem
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			out = append(out, problem{fmt.Sprintf("%q uses http; issuers must use https (plain http is accepted only for localhost, 127.0.0.0/8 and ::1)", s), false})
		}
	default:
		out = append(out, problem{fmt.Sprintf("%q: scheme %q is not allowed; issuers must use https", s, u.Scheme), false})
	}
	if u.User != nil {
		out = append(out, problem{fmt.Sprintf("%q contains user info (user@); remove it", s), false})
	}
	if u.RawQuery != "" || u.ForceQuery {
		out = append(out, problem{fmt.Sprintf("%q has a query (?...); issuers cannot have one: remove it", s), false})
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		out = append(out, problem{fmt.Sprintf("%q has a fragment (#...); issuers cannot have one: remove it", s), false})
	}
	if strings.HasSuffix(u.Path, "/") && len(out) == 0 {
		out = append(out, problem{fmt.Sprintf("%q ends with a slash; the iss claim must match it exactly, and most issuers have none", s), true})
	}
	return out
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
