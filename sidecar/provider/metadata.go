package provider

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

// metadataKeys are the keys of the provider metadata document, in the order
// of docs/architecture.md.
var metadataKeys = []string{
	"id", "name", "type", "issuer", "audience", "lifetime_seconds", "scopes",
	"workspaces", "ip_restrictions", "trust_conditions", "has_conditions",
	"policy", "allow_token_reuse", "max_token_age_seconds", "max_token_lifetime_seconds",
	"denial_detail",
	"source",
}

// MetadataKeys returns the keys of the document Metadata produces.
func MetadataKeys() []string { return slices.Clone(metadataKeys) }

// Metadata returns the provider metadata document OPA sees at
// data.sidecar.providers[<id>] (docs/architecture.md, "Provider metadata
// document"). Values are plain string, bool, int, []any and map[string]any,
// which OPA converts without a JSON round trip; "workspaces" is nil (null)
// when all workspaces are allowed, "ip_restrictions" is [] when any address
// is.
func (p *Provider) Metadata() map[string]any {
	ips := make([]any, len(p.IPRestrictions))
	for i, pr := range p.IPRestrictions {
		ips[i] = pr.String()
	}
	var ws any
	if p.Workspaces != nil {
		ws = strs(p.Workspaces)
	}
	return map[string]any{
		"id":                         p.ID,
		"name":                       p.Name,
		"type":                       string(p.Type),
		"issuer":                     p.Issuer,
		"audience":                   p.Audience,
		"lifetime_seconds":           int(p.Lifetime / time.Second),
		"scopes":                     strs(p.Scopes),
		"workspaces":                 ws,
		"ip_restrictions":            ips,
		"trust_conditions":           p.TrustConditions,
		"has_conditions":             p.conditionCount() > 0,
		"policy":                     p.Policy,
		"allow_token_reuse":          p.AllowTokenReuse,
		"max_token_age_seconds":      int(p.MaxTokenAge / time.Second),
		"max_token_lifetime_seconds": int(p.EffectiveMaxTokenLifetime() / time.Second),
		"denial_detail":              string(p.DenialDetail),
		"source":                     p.Source.Base(),
	}
}

// conditionCount returns the number of parsed trust conditions.
func (p *Provider) conditionCount() int {
	if p.Conditions == nil {
		return 0
	}
	return len(p.Conditions.Conditions)
}

func strs(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// MetadataError is returned by FromMetadata; it lists every problem found.
type MetadataError struct {
	ID       string   // the document's id, if it has a usable one
	Problems []string // "key: what is wrong"
}

func (e *MetadataError) Error() string {
	who := "provider metadata"
	if e.ID != "" {
		who += " " + strconv.Quote(e.ID)
	}
	return who + ": " + strings.Join(e.Problems, "; ")
}

// FromMetadata rebuilds a Provider from its metadata document, as found in a
// bundle's data.sidecar.providers[<id>]. It accepts what a JSON decoder or
// OPA produces (numbers as int, int64, float64 or json.Number; lists as []any
// or []string), checks the same rules as Parse — including the type's Kind —
// and returns a *MetadataError listing every problem. Every key of the
// document is required (but max_token_lifetime_seconds, newer than the
// format) and unknown keys are rejected.
// Metadata(FromMetadata(Metadata(p))) equals Metadata(p).
func FromMetadata(m map[string]any) (*Provider, error) {
	d := &metaDecoder{m: m}
	p := &Provider{}
	for k := range m {
		if !slices.Contains(metadataKeys, k) {
			d.fail(k, "unknown key")
		}
	}
	p.ID = d.str("id")
	if p.ID != "" {
		if msg := checkUUID(p.ID); msg != "" {
			d.fail("id", msg)
		}
	}
	p.Name = d.str("name")
	if strings.TrimSpace(p.Name) == "" && d.ok("name") {
		d.fail("name", "empty")
	}
	p.Type = Type(d.str("type"))
	kind, kindOK := KindOf(p.Type)
	if !kindOK && d.ok("type") {
		d.fail("type", checkType(string(p.Type)))
	}
	p.Issuer = d.str("issuer")
	p.Audience = d.str("audience")
	if n, ok := d.int("lifetime_seconds"); ok {
		p.Lifetime = time.Duration(n) * time.Second
		if msg := checkLifetime(p.Lifetime); msg != "" {
			d.fail("lifetime_seconds", msg)
		}
	}
	p.Scopes = d.strList("scopes", false)
	if p.Scopes != nil && len(p.Scopes) == 0 {
		d.fail("scopes", "empty")
	}
	for i, s := range p.Scopes {
		if msg := scopeProblem(s); msg != "" {
			d.fail(fmt.Sprintf("scopes[%d]", i), msg)
		}
	}
	p.Workspaces = d.strList("workspaces", true)
	if p.Workspaces != nil && len(p.Workspaces) == 0 {
		d.fail("workspaces", "empty list allows no workspace; use null for all")
	}
	for i, s := range p.Workspaces {
		if msg := checkWorkspace(s); msg != "" {
			d.fail(fmt.Sprintf("workspaces[%d]", i), msg)
		}
	}
	ips := d.strList("ip_restrictions", false)
	p.IPRestrictions = make([]netip.Prefix, 0, len(ips))
	for i, s := range ips {
		pr, msg, warn := parseNetwork(s)
		switch {
		case msg != "":
			d.fail(fmt.Sprintf("ip_restrictions[%d]", i), msg)
		case warn != "" || pr.String() != s:
			d.fail(fmt.Sprintf("ip_restrictions[%d]", i), fmt.Sprintf("%q is not in canonical form %s", s, pr))
		default:
			p.IPRestrictions = append(p.IPRestrictions, pr)
		}
	}
	p.TrustConditions = d.str("trust_conditions")
	hasConds := d.bool("has_conditions")
	if strings.TrimSpace(p.TrustConditions) != "" {
		x, err := trust.Parse(p.TrustConditions)
		if err != nil {
			d.fail("trust_conditions", err.Error())
		} else {
			p.Conditions = x
		}
	}
	parseFailed := p.Conditions == nil && strings.TrimSpace(p.TrustConditions) != ""
	if d.ok("has_conditions") && d.ok("trust_conditions") && !parseFailed {
		if n := p.conditionCount(); (n > 0) != hasConds {
			d.fail("has_conditions", fmt.Sprintf("is %v, but trust_conditions has %d condition(s)", hasConds, n))
		}
	}
	p.Policy = d.str("policy")
	if p.Policy != "" {
		if msg := checkPolicy(p.Policy); msg != "" {
			d.fail("policy", msg)
		}
	}
	p.AllowTokenReuse = d.bool("allow_token_reuse")
	if n, ok := d.int("max_token_age_seconds"); ok {
		p.MaxTokenAge = time.Duration(n) * time.Second
		if msg := checkMaxTokenAge(p.MaxTokenAge); msg != "" {
			d.fail("max_token_age_seconds", msg)
		}
	}
	// max_token_lifetime_seconds is optional, so that bundles built before
	// it existed still load; absent, the default applies.
	if _, present := m["max_token_lifetime_seconds"]; !present {
		p.MaxTokenLifetime = 0
	} else if n, ok := d.int("max_token_lifetime_seconds"); ok {
		p.MaxTokenLifetime = time.Duration(n) * time.Second
		if msg := checkMaxTokenLifetime(p.MaxTokenLifetime); msg != "" {
			d.fail("max_token_lifetime_seconds", msg)
		}
	}
	p.DenialDetail = DenialDetail(d.str("denial_detail"))
	if d.ok("denial_detail") {
		if msg := checkDenialDetail(string(p.DenialDetail)); msg != "" {
			d.fail("denial_detail", msg)
		}
	}
	p.Source = parsePos(d.str("source"))

	if kindOK {
		if p.Type == CircleCI {
			p.OrganizationID = p.Audience
		}
		kind.Validate(p, func(key, msg string, warning bool) {
			if key == "organization_id" && p.Type == CircleCI {
				key = "audience" // the document holds the organization ID as the audience
			}
			if !warning {
				d.fail(key, msg)
			}
		})
		if iss := kind.Issuer(p); iss != p.Issuer {
			d.fail("issuer", fmt.Sprintf("%q does not match the %s type's issuer %q", p.Issuer, p.Type, iss))
		}
		if aud := kind.Audience(p); aud != p.Audience {
			d.fail("audience", fmt.Sprintf("%q does not match the %s type's audience %q", p.Audience, p.Type, aud))
		}
	}
	if len(d.problems) > 0 {
		sort.Strings(d.problems)
		e := &MetadataError{Problems: d.problems}
		if checkUUID(p.ID) == "" {
			e.ID = p.ID
		}
		return nil, e
	}
	return p, nil
}

// parsePos parses "file:line" (or just "file").
func parsePos(s string) Pos {
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if n, err := strconv.Atoi(s[i+1:]); err == nil && n > 0 && strconv.Itoa(n) == s[i+1:] {
			return Pos{File: s[:i], Line: n}
		}
	}
	return Pos{File: s}
}

type metaDecoder struct {
	m        map[string]any
	problems []string
	bad      map[string]bool
}

func (d *metaDecoder) fail(key, msg string) {
	d.problems = append(d.problems, key+": "+msg)
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[key] = true
}

// ok reports whether key was present and of the right type.
func (d *metaDecoder) ok(key string) bool {
	_, present := d.m[key]
	return present && !d.bad[key]
}

func (d *metaDecoder) get(key string) (any, bool) {
	v, ok := d.m[key]
	if !ok {
		d.fail(key, "missing")
	}
	return v, ok
}

func (d *metaDecoder) str(key string) string {
	v, ok := d.get(key)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(key, fmt.Sprintf("must be a string, found %T", v))
	}
	return s
}

func (d *metaDecoder) bool(key string) bool {
	v, ok := d.get(key)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		d.fail(key, fmt.Sprintf("must be a boolean, found %T", v))
	}
	return b
}

func (d *metaDecoder) int(key string) (int64, bool) {
	v, ok := d.get(key)
	if !ok {
		return 0, false
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case int32:
		n = int64(x)
	case uint64:
		if x > math.MaxInt64 {
			ok = false
		}
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			ok = false
		}
		n = int64(x)
	case json.Number:
		var err error
		n, err = x.Int64()
		ok = err == nil
	default:
		ok = false
	}
	// Durations in seconds must fit a time.Duration.
	if ok && (n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second)) {
		ok = false
	}
	if !ok {
		d.fail(key, fmt.Sprintf("must be a whole number of seconds, found %v", v))
	}
	return n, ok
}

// strList decodes a list of strings; with nullable, null gives nil.
func (d *metaDecoder) strList(key string, nullable bool) []string {
	v, ok := d.get(key)
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case nil:
		if nullable {
			return nil
		}
	case []string:
		return slices.Clone(x)
	case []any:
		out := make([]string, 0, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				d.fail(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("must be a string, found %T", e))
				continue
			}
			out = append(out, s)
		}
		return out
	}
	d.fail(key, fmt.Sprintf("must be a list of strings, found %T", v))
	return nil
}
