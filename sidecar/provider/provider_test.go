package provider

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

func TestDiagnosticString(t *testing.T) {
	tests := []struct {
		d    Diagnostic
		want string
	}{
		{Diagnostic{File: "providers.yaml", Line: 12, Col: 5, Field: "providers[1].lifetime", Message: `"15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`},
			`providers.yaml:12:5: providers[1].lifetime: "15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`},
		{Diagnostic{File: "p.yaml", Line: 3, Field: "x", Message: "m", Warning: true}, "p.yaml:3: warning: x: m"},
		{Diagnostic{File: "p.yaml", Message: "empty"}, "p.yaml: empty"},
		{Diagnostic{Field: "lifetime", Message: "m"}, "lifetime: m"},
		{Diagnostic{Message: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestValidationError(t *testing.T) {
	_, err := Parse("providers.yaml", []byte("providers:\n  - id: x\n    name: n\n    type: other\n    issuer: https://i/\n    audience: a\n    policy: p\n    scopes: [WORKSPACE]\n"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := `providers.yaml: invalid providers file: 1 error, 1 warning
providers.yaml:2:9: providers[0].id: "x" is not a UUID; write it as 8-4-4-4-12 hex digits, e.g. 550e8400-e29b-41d4-a716-446655440000
providers.yaml:5:13: warning: providers[0].issuer: "https://i/" ends with a slash; the iss claim must match it exactly, and most issuers have none`
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	if len(ve.Errors()) != 1 {
		t.Errorf("Errors() = %v", ve.Errors())
	}
}

func TestLifetimes(t *testing.T) {
	var names []string
	for _, d := range Lifetimes() {
		names = append(names, FormatLifetime(d))
	}
	if got := strings.Join(names, " "); got != "10m 30m 1h 1h30m 3h 8h" {
		t.Errorf("presets = %s", got)
	}
	for in, want := range map[string]time.Duration{
		"10m": 10 * time.Minute, "600s": 10 * time.Minute, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute,
		"1h30m0s": 90 * time.Minute, "60m": time.Hour, "480m": 8 * time.Hour, "0.5h": 30 * time.Minute,
	} {
		got, msg := parseLifetime(in)
		if msg != "" || got != want {
			t.Errorf("parseLifetime(%q) = %v, %q; want %v", in, got, msg, want)
		}
	}
	for in, want := range map[string]string{
		"15m":  `"15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
		"1h1s": `"1h1s" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
		"0s":   `"0s" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
		"-10m": `"-10m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
		"10":   `"10" is not a duration; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
		"":     `"" is not a duration; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
	} {
		if _, msg := parseLifetime(in); msg != want {
			t.Errorf("parseLifetime(%q) = %q, want %q", in, msg, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 90 * time.Minute: "1h30m", 10 * time.Minute: "10m", 90 * time.Second: "1m30s", 8 * time.Hour: "8h"} {
		if got := FormatLifetime(d); got != want {
			t.Errorf("FormatLifetime(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestKinds(t *testing.T) {
	for _, ty := range Types() {
		k, ok := KindOf(ty)
		if !ok || k.Type() != ty {
			t.Errorf("KindOf(%s) = %v, %v", ty, k, ok)
		}
	}
	if _, ok := KindOf("gitlab"); ok {
		t.Error("KindOf(gitlab) ok")
	}
	org := "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
	tests := []struct {
		p                Provider
		issuer, audience string
	}{
		{Provider{Type: GitHubActions}, GitHubIssuer, "Buddy"},
		{Provider{Type: GitHubActions, Audience: "https://x"}, GitHubIssuer, "https://x"},
		{Provider{Type: CircleCI, OrganizationID: org}, "https://oidc.circleci.com/org/" + org, org},
		{Provider{Type: Other, Issuer: "https://i", Audience: "a"}, "https://i", "a"},
		{Provider{Type: Other, Issuer: "https://i"}, "https://i", ""},
	}
	for _, tt := range tests {
		k, _ := KindOf(tt.p.Type)
		if got := k.Issuer(&tt.p); got != tt.issuer {
			t.Errorf("%s issuer = %s, want %s", tt.p.Type, got, tt.issuer)
		}
		if got := k.Audience(&tt.p); got != tt.audience {
			t.Errorf("%s audience = %s, want %s", tt.p.Type, got, tt.audience)
		}
	}
}

// TestKindValidateIdempotent: Validate on a provider whose Issuer and
// Audience hold the effective values reports no errors (FromMetadata relies
// on it).
func TestKindValidateIdempotent(t *testing.T) {
	for _, p := range validProviders(t) {
		k, _ := KindOf(p.Type)
		k.Validate(p, func(field, msg string, warning bool) {
			if !warning {
				t.Errorf("%s: %s: %s", p.ID, field, msg)
			}
		})
	}
}

func TestCheckIssuer(t *testing.T) {
	tests := map[string]string{
		"https://issuer.example.com":         "",
		"https://issuer.example.com:8443/x":  "",
		"http://localhost:8080":              "",
		"http://LOCALHOST":                   "",
		"http://127.0.0.1":                   "",
		"http://127.8.9.10:1/x":              "",
		"http://[::1]:9/x":                   "",
		"http://10.0.0.1":                    "error: uses http",
		"http://localhost.evil.com":          "error: uses http",
		"https://u@issuer.example.com":       "error: contains user info",
		"https://issuer.example.com?":        "error: has a query",
		"https://issuer.example.com?a=b":     "error: has a query",
		"https://issuer.example.com#":        "error: has a fragment",
		"https://issuer.example.com/":        "warning: ends with a slash",
		"https://issuer.example.com/tenant/": "warning: ends with a slash",
		"issuer.example.com":                 "error: is not an absolute URL",
		"https://":                           "error: is not an absolute URL",
		"https:issuer":                       "error: is not an absolute URL",
		"ftp://x":                            `error: scheme "ftp" is not allowed`,
		"https://exa mple.com":               "error: is not an absolute URL",
	}
	for in, want := range tests {
		ps := checkIssuer(in)
		got := ""
		if len(ps) > 0 {
			got = "error: "
			if ps[0].warning {
				got = "warning: "
			}
			got += ps[0].msg
		}
		if want == "" && got != "" || want != "" && (!strings.HasPrefix(got, strings.SplitN(want, ": ", 2)[0]) || !strings.Contains(got, strings.SplitN(want, ": ", 2)[1])) {
			t.Errorf("checkIssuer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	tests := []struct {
		in, want, err, warn string
	}{
		{"203.0.113.0/24", "203.0.113.0/24", "", ""},
		{"203.0.113.7", "203.0.113.7/32", "", ""},
		{"2001:db8::/32", "2001:db8::/32", "", ""},
		{"2001:db8::1", "2001:db8::1/128", "", ""},
		{"10.1.2.3/8", "10.0.0.0/8", "", `"10.1.2.3/8" has host bits set; it means 10.0.0.0/8: write that`},
		{"10.0.0.*", "", `"10.0.0.*": wildcards are not supported`, ""},
		{"10.0.0.0/33", "", `"10.0.0.0/33" is not a CIDR prefix`, ""},
		{"fe80::1%eth0", "", `"fe80::1%eth0" has a zone`, ""},
		{"example.com", "", `"example.com" is not an IP address or CIDR prefix`, ""},
		{"", "", `"" is not an IP address`, ""},
	}
	for _, tt := range tests {
		p, err, warn := parseNetwork(tt.in)
		if tt.err != "" {
			if !strings.HasPrefix(err, tt.err) {
				t.Errorf("parseNetwork(%q) error = %q, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != "" || p != netip.MustParsePrefix(tt.want) || warn != tt.warn {
			t.Errorf("parseNetwork(%q) = %v, %q, %q; want %s, %q", tt.in, p, err, warn, tt.want, tt.warn)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := Keys()
	tests := map[string]string{
		"lifetme": "lifetime", "Lifetime": "lifetime", "trust-conditions": "trust_conditions",
		"conditions": "trust_conditions", "organisation_id": "organization_id", "org_id": "organization_id",
		"scope": "scopes", "workspace": "workspaces", "ip_restriction": "ip_restrictions",
		"issuer_url": "issuer", "aud": "audience", "denial": "denial_detail", "zzz": "", "completely_unrelated_key": "",
	}
	for in, want := range tests {
		if got := suggest(in, keys, keyAliases); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"github": "github_actions", "GitHub-Actions": "github_actions", "circle_ci": "circleci", "gitlab": ""} {
		if got := suggest(in, []string{"github_actions", "circleci", "other"}, typeAliases); got != want {
			t.Errorf("suggest type %q = %q, want %q", in, got, want)
		}
	}
}

// TestEveryKeyDecoded makes sure Parse handles every key of the field table.
func TestEveryKeyDecoded(t *testing.T) {
	values := map[string]string{
		"id": "550e8400-e29b-41d4-a716-446655440000", "name": "n", "type": "circleci", "lifetime": "3h",
		"audience": "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", "organization_id": "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
		"issuer": "https://oidc.circleci.com/org/9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", "trust_conditions": "sub exists",
		"policy": "p", "ip_restrictions": "[10.0.0.0/8]", "workspaces": "[w]", "scopes": "[WORKSPACE]",
		"allow_token_reuse": "true", "max_token_age": "1m", "max_token_lifetime": "2h", "denial_detail": "generic",
	}
	var b strings.Builder
	b.WriteString("providers:\n  - ")
	for i, k := range Keys() {
		v, ok := values[k]
		if !ok {
			t.Fatalf("test has no value for key %s", k)
		}
		if i > 0 {
			b.WriteString("    ")
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	f, err := Parse("all.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	p := f.Providers[0]
	if p.Lifetime != 3*time.Hour || p.Policy != "p" || len(p.IPRestrictions) != 1 || !slices.Equal(p.Workspaces, []string{"w"}) ||
		!p.AllowTokenReuse || p.MaxTokenAge != time.Minute || p.MaxTokenLifetime != 2*time.Hour || p.DenialDetail != DenialGeneric || p.Conditions == nil || p.Name != "n" {
		t.Errorf("provider = %+v", p)
	}
	var warnings []string
	for _, w := range f.Warnings {
		warnings = append(warnings, w.String())
	}
	want := []string{
		"all.yaml:6:13: warning: providers[0].issuer: circleci providers derive the issuer from organization_id; remove issuer",
		"all.yaml:7:15: warning: providers[0].audience: circleci providers always use organization_id as the audience; remove audience",
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
}

func TestDefaults(t *testing.T) {
	f, err := Parse("p.yaml", []byte("providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: n\n    type: github_actions\n    trust_conditions: repository_owner is \"o\"\n    scopes: [WORKSPACE]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := f.Providers[0]
	if p.Lifetime != DefaultLifetime || p.Audience != "Buddy" || p.Issuer != GitHubIssuer || p.DenialDetail != DenialConditions ||
		p.Workspaces != nil || p.IPRestrictions != nil || p.AllowTokenReuse || p.MaxTokenAge != 0 || p.Source != (Pos{"p.yaml", 2}) {
		t.Errorf("defaults: %+v", p)
	}
	if f.Lookup(string(p.ID)) != p || f.Lookup("x") != nil {
		t.Error("Lookup")
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+10), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(big)
	if err == nil || !strings.Contains(err.Error(), big+": the file is 4194305 bytes; the limit is 4194304 (4 MiB)") {
		t.Errorf("Load(big) = %v", err)
	}
}

// TestAliasBomb: nested aliases cannot make validation slow. The bound is
// structural, not timed: the parser charges every YAML node it visits
// (aliases expanded) to a budget of nodeBudget + the file's size and stops
// when it runs out, so the work done is asserted on that count, far below
// what the file would expand to, and the refusal names the limit.
func TestAliasBomb(t *testing.T) {
	const aliases = 150000
	var b strings.Builder
	b.WriteString("x-s: &s [" + strings.Join(scope.All(), ", ") + "]\n")
	b.WriteString("x-p: &p {id: 550e8400-e29b-41d4-a716-446655440000, name: n, type: other, issuer: https://i, audience: a, policy: p, scopes: *s}\nproviders: [")
	for i := range aliases {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*p")
	}
	b.WriteString("]\n")
	src := []byte(b.String())

	// What one *p expands to: its mapping (7 keys, 7 values) and the scope
	// list; the whole file expands to aliases times that.
	perAlias := 1 + 2*7 + 1 + len(scope.All())
	limit := nodeBudget + len(src)
	if aliases*perAlias <= 2*limit {
		t.Fatalf("the bomb expands to %d nodes, not well past the budget of %d: make it bigger", aliases*perAlias, limit)
	}

	r := parse("bomb.yaml", src)
	// Stopping at the budget: a few nodes past it (the one that exhausts it,
	// and the alias being resolved at each open level), never the expansion.
	if r.charged > limit+100 {
		t.Errorf("parse visited %d nodes; the budget is %d (the file expands to %d)", r.charged, limit, aliases*perAlias)
	}
	if r.charged < limit {
		t.Errorf("parse visited %d nodes, below the budget of %d: the bomb did not reach the limit", r.charged, limit)
	}
	_, err := Parse("bomb.yaml", src)
	if err == nil || !strings.Contains(err.Error(), "the file expands to too many YAML nodes (nested aliases?); simplify it") {
		t.Errorf("err = %.500v", err)
	}

	// A file just as long without aliases stays far inside the budget.
	plain := "providers:\n" + strings.Repeat("  - {id: 550e8400-e29b-41d4-a716-446655440000, name: n, type: other, issuer: https://i, audience: a, policy: p, scopes: [WORKSPACE]}\n", len(src)/120)
	if r := parse("plain.yaml", []byte(plain)); r.charged > len(plain) {
		t.Errorf("a file without aliases charged %d nodes for %d bytes: the budget's size allowance is too small", r.charged, len(plain))
	}
}

func TestTooManyProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: n\n    type: other\n    issuer: https://i\n    scopes:\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "      - NOPE_%d\n", i)
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatal(err)
	}
	if n := len(ve.Diagnostics); n != maxDiagnostics+1 {
		t.Errorf("%d diagnostics, want %d", n, maxDiagnostics+1)
	}
	if last := ve.Diagnostics[len(ve.Diagnostics)-1].String(); last != "many.yaml: too many errors; stopped after 1000" {
		t.Errorf("last = %s", last)
	}

	// Warnings alone never stop a file from loading, however many.
	b.Reset()
	b.WriteString("providers:\n")
	for i := range 1500 {
		fmt.Fprintf(&b, "  - {id: %s, name: n, type: other, issuer: https://i, policy: p, scopes: [WORKSPACE]}\n", uuid.NewString())
		_ = i
	}
	f, err := Parse("warn.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Warnings); n != maxDiagnostics+1 || f.Warnings[n-1].String() != "warn.yaml: warning: 500 more warnings not shown" {
		t.Errorf("%d warnings, last %v", n, f.Warnings[n-1])
	}
	if len(f.Providers) != 1500 {
		t.Errorf("%d providers", len(f.Providers))
	}
}

func TestTrustConditionPositions(t *testing.T) {
	// The error is at "iz"; each style places it at file line 4, column 24
	// or at the matching spot.
	tests := []struct {
		name, value string
		line, col   int
	}{
		{"plain", `ref iz "x"`, 5, 27},
		{"single quoted", `'ref iz "x"'`, 5, 28},
		{"single quoted with ''", `'ref iz ''x'''`, 5, 28},
		{"double quoted with escapes", `"\"ref\" iz \"x\""`, 5, 32},
		{"literal", "|\n      ref is \"x\"\n      and b iz \"y\"", 7, 13},
		{"folded", ">\n      ref is \"x\"\n      and b iz \"y\"", 7, 13},
		{"plain multi-line", "ref is \"x\"\n      and b iz \"y\"", 6, 13},
		{"unicode before", `'é is "x" and b iz "y"'`, 5, 39},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "providers:\n  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: n\n    type: other\n    trust_conditions: " + tt.value + "\n    issuer: https://i\n    audience: a\n    scopes: [WORKSPACE]\n"
			_, err := Parse("p.yaml", []byte(src))
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Diagnostics) != 1 {
				t.Fatalf("err = %v", err)
			}
			d := ve.Diagnostics[0]
			if d.Line != tt.line || d.Col != tt.col || d.Field != "providers[0].trust_conditions" {
				t.Errorf("at %d:%d (%s), want %d:%d\n%s", d.Line, d.Col, d.Field, tt.line, tt.col, src)
			}
			if !strings.Contains(d.Message, "^") || !strings.Contains(d.Message, `found "iz"`) {
				t.Errorf("message = %s", d.Message)
			}
		})
	}
}

// TestMergeBomb: a mapping merging itself many times over is walked once:
// the nodes parse visits stay proportional to the file, not to the merges.
func TestMergeBomb(t *testing.T) {
	for _, src := range []string{
		"x-x: &x {<<: [" + strings.Repeat("*x,", 100) + "*x]}\nproviders: [*x]\n",
		"x-x: &x {<<: [" + strings.Repeat("*x,", 3) + "*x], <<: *x}\nproviders: [" + strings.Repeat("*x,", 1000) + "*x]\n",
	} {
		r := parse("m.yaml", []byte(src))
		if r.charged > 4*len(src) {
			t.Errorf("parse visited %d nodes for a %d-byte file", r.charged, len(src))
		}
		if _, err := Parse("m.yaml", []byte(src)); err == nil {
			t.Error("accepted")
		}
	}
	// Nested merges work up to the limit.
	src := "x-a: &a {type: other}\nx-b: &b {<<: *a, issuer: 'https://i'}\nx-c: &c {<<: *b, audience: a}\n" +
		"providers:\n  - <<: *c\n    id: 550e8400-e29b-41d4-a716-446655440000\n    name: n\n    policy: p\n    scopes: [WORKSPACE]\n"
	f, err := Parse("m.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Providers[0]; p.Type != Other || p.Issuer != "https://i" || p.Audience != "a" {
		t.Errorf("merged provider = %+v", p)
	}
}

// TestFieldTableCoversProvider keeps the field table and the Provider
// struct's yaml tags in step: every tagged field has a row, in order.
func TestFieldTableCoversProvider(t *testing.T) {
	var tags []string
	ty := reflect.TypeFor[Provider]()
	for i := range ty.NumField() {
		if k := ty.Field(i).Tag.Get("yaml"); k != "" && k != "-" {
			tags = append(tags, k)
		}
	}
	keys := Keys()
	sort.Strings(tags)
	sort.Strings(keys)
	if !slices.Equal(tags, keys) {
		t.Errorf("Provider yaml tags %v\nfield table keys %v", tags, keys)
	}
	for _, f := range fields {
		if f.schema == nil || f.set == nil || f.doc == "" || (f.typ == tList) != (f.item != nil) {
			t.Errorf("field %s: incomplete row", f.key)
		}
	}
}

// TestUnknownClaimWarned: a condition on a claim the type's tokens never
// carry can never be met; it is warned about at its position, with the
// closest documented claim.
func TestUnknownClaimWarned(t *testing.T) {
	src := `providers:
  - id: 550e8400-e29b-41d4-a716-446655440000
    name: gha
    type: github_actions
    scopes: [WORKSPACE]
    trust_conditions: 'repository_owner is "octo-org" and reff is "refs/heads/main" and repo_property_team is "x" and check_run_id exists'
  - id: 9b2f6c1e-3d4a-4b5c-8e7f-0a1b2c3d4e5f
    name: circle
    type: circleci
    organization_id: 4f5e9a52-7c1d-4c8e-9a3b-2b6f0d1e8c77
    scopes: [WORKSPACE]
    trust_conditions: |
      project-id is "p"
      and oidc.circleci.com/vcs-reff is "refs/heads/main"
      and zzzzzzzz exists
  - id: 2a7d3f4e-8b9c-4d1e-a2f3-5b6c7d8e9f01
    name: other
    type: other
    issuer: https://gitlab.example.com
    audience: x
    scopes: [WORKSPACE]
    trust_conditions: 'anything_at_all is "x"'
`
	f, err := Parse("providers.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range f.Warnings {
		got = append(got, w.String())
	}
	want := []string{
		`providers.yaml:6:59: warning: providers[0].trust_conditions: github_actions tokens have no claim "reff", so this condition can never be met; did you mean ref?`,
		`providers.yaml:13:7: warning: providers[1].trust_conditions: circleci tokens have no claim "project-id", so this condition can never be met; did you mean oidc.circleci.com/project-id?`,
		`providers.yaml:14:11: warning: providers[1].trust_conditions: circleci tokens have no claim "oidc.circleci.com/vcs-reff", so this condition can never be met; did you mean oidc.circleci.com/vcs-ref?`,
		`providers.yaml:15:11: warning: providers[1].trust_conditions: circleci tokens have no claim "zzzzzzzz", so this condition can never be met (docs/providers.md lists the claims)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
