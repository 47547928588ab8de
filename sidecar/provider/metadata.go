package provider

import (
	"encoding/json"
	"fmt"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// metadataKeys are the keys of the provider metadata document, in the order
// of docs/architecture.md: the field table's metadata keys, then the keys
// the document adds.
var metadataKeys = func() []string {
	keys := []string{}
	for _, f := range fields {
		if f.metaKey != "" {
			keys = append(keys, f.metaKey)
		}
	}
	// has_conditions follows trust_conditions.
	i := slices.Index(keys, "trust_conditions") + 1
	keys = slices.Insert(keys, i, "has_conditions")
	return append(keys, "source")
}()

// optionalMetaKeys may be absent from a metadata document: documents built
// before the key existed still load, with its default.
var optionalMetaKeys = []string{"max_token_lifetime_seconds"}

// MetadataKeys returns the keys of the document Metadata produces.
func MetadataKeys() []string { return slices.Clone(metadataKeys) }

// Metadata returns the provider metadata document OPA sees at
// data.sidecar.providers[<id>] (docs/architecture.md, "Provider metadata
// document"). Values are plain string, bool, int, []any and map[string]any,
// which OPA converts without a JSON round trip; "workspaces" is nil (null)
// when all workspaces are allowed, "ip_restrictions" is [] when any address
// is.
func (p *Provider) Metadata() map[string]any {
	m := make(map[string]any, len(metadataKeys))
	for _, f := range fields {
		if f.metaKey != "" {
			m[f.metaKey] = f.meta(p)
		}
	}
	m["has_conditions"] = p.conditionCount() > 0
	m["source"] = p.Source.Base()
	return m
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

// FromMetadata rebuilds a Provider from its metadata document, as found in a
// bundle's data.sidecar.providers[<id>]. It accepts what a JSON decoder or
// OPA produces (numbers as int, int64, float64 or json.Number; lists as []any
// or []string), checks the same rules as Parse — the field table and the
// type's Kind — and returns a *ValidationError listing every problem (File
// "provider metadata", Field the document's key). Every key of the document
// is required (but max_token_lifetime_seconds, newer than the format) and
// unknown keys are rejected. Metadata(FromMetadata(Metadata(p))) equals
// Metadata(p).
func FromMetadata(m map[string]any) (*Provider, error) {
	d := &metaDecoder{m: m}
	for k := range m {
		if !slices.Contains(metadataKeys, k) {
			d.diags = append(d.diags, Diagnostic{Field: k, Message: "unknown key"})
		}
	}
	p := &Provider{}
	if p.Type = Type(d.peek("type")); p.Type == CircleCI {
		d.orgIsAudience = true
	}
	p.Type = ""
	decodeProvider(d, d, p)
	hasConds := d.bool("has_conditions")
	parseFailed := p.Conditions == nil && strings.TrimSpace(p.TrustConditions) != ""
	if d.ok("has_conditions") && d.ok("trust_conditions") && !parseFailed {
		if n := p.conditionCount(); (n > 0) != hasConds {
			d.fail("has_conditions", fmt.Sprintf("is %v, but trust_conditions has %d condition(s)", hasConds, n))
		}
	}
	p.Source = parsePos(d.str("source"))
	if k, ok := KindOf(p.Type); ok {
		if iss := k.Issuer(p); iss != p.Issuer && d.ok("issuer") {
			d.fail("issuer", fmt.Sprintf("%q does not match the %s type's issuer %q", p.Issuer, p.Type, iss))
		}
		if aud := k.Audience(p); aud != p.Audience && d.ok("audience") {
			d.fail("audience", fmt.Sprintf("%q does not match the %s type's audience %q", p.Audience, p.Type, aud))
		}
	}
	if len(d.diags) > 0 {
		sort.SliceStable(d.diags, func(i, j int) bool { return d.diags[i].Field < d.diags[j].Field })
		subject := "provider metadata"
		if id, ok := m["id"].(string); ok {
			if _, err := ParseID(id); err == nil {
				subject += " " + strconv.Quote(id)
			}
		}
		return nil, &ValidationError{Subject: subject, Diagnostics: d.diags}
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

// metaDecoder is the metadata document's source and sink for
// decodeProvider.
type metaDecoder struct {
	m     map[string]any
	diags []Diagnostic
	bad   map[string]bool
	// orgIsAudience: a circleci document holds the organization ID as the
	// audience.
	orgIsAudience bool
}

func (d *metaDecoder) fail(key, msg string) {
	if key == "organization_id" && d.orgIsAudience {
		key = "audience"
	}
	// The field table's checks name the file's key; the document's may
	// differ (lifetime_seconds).
	base, rest, _ := strings.Cut(key, "[")
	if f := fieldByKey(base); f != nil && f.metaKey != "" && f.metaKey != base {
		key = f.metaKey
		if rest != "" {
			key += "[" + rest
		}
	}
	d.diags = append(d.diags, Diagnostic{Field: key, Message: msg})
	if d.bad == nil {
		d.bad = map[string]bool{}
	}
	d.bad[key] = true
}

// warn drops warnings: the file's loader showed them when the bundle was
// built.
func (d *metaDecoder) warn(key, msg string) {}
func (d *metaDecoder) strict() bool         { return true }

func (d *metaDecoder) conditionError(key, src string, err error)                { d.fail(key, err.Error()) }
func (d *metaDecoder) conditionWarn(key, src string, pos trust.Pos, msg string) {}

// ok reports whether key was present and of the right type.
func (d *metaDecoder) ok(key string) bool {
	_, present := d.m[key]
	return present && !d.bad[key]
}

// peek returns key's string value, or "", without reporting anything.
func (d *metaDecoder) peek(key string) string {
	s, _ := d.m[key].(string)
	return s
}

// get decodes the shape of f's value (see source).
func (d *metaDecoder) get(f *field) (value, presence) {
	if f.metaKey == "" {
		if f.key == "organization_id" && d.orgIsAudience {
			if s := d.peek("audience"); s != "" {
				return value{s: s}, present
			}
		}
		return value{}, absent
	}
	if _, ok := d.m[f.metaKey]; !ok && slices.Contains(optionalMetaKeys, f.metaKey) {
		return value{}, absent
	}
	key := f.metaKey
	var v value
	var ok bool
	switch f.typ {
	case tText, tToken:
		v.s = d.str(key)
		ok = d.ok(key)
		if ok && v.s == "" && f.metaEmpty {
			return value{}, absent
		}
	case tBool:
		v.b = d.bool(key)
		ok = d.ok(key)
	case tDuration:
		var n int64
		n, ok = d.int(key)
		v.d = time.Duration(n) * time.Second
		v.s = FormatLifetime(v.d)
	case tList:
		v.list = d.strList(key, f.key == "workspaces")
		ok = d.ok(key)
		if ok && v.list == nil && f.key != "workspaces" {
			v.list = []string{}
		}
	}
	if !ok {
		return value{}, invalid
	}
	return v, present
}

func (d *metaDecoder) raw(key string) (any, bool) {
	v, ok := d.m[key]
	if !ok {
		d.fail(key, "missing")
	}
	return v, ok
}

func (d *metaDecoder) str(key string) string {
	v, ok := d.raw(key)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok && !d.bad[key] {
		d.fail(key, fmt.Sprintf("must be a string, found %T", v))
	}
	return s
}

func (d *metaDecoder) bool(key string) bool {
	v, ok := d.raw(key)
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
	v, ok := d.raw(key)
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
	v, ok := d.raw(key)
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
