package provider

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/yamlerr"
)

// MaxFileSize is the largest providers file Parse accepts.
const MaxFileSize = 4 << 20

const (
	// maxDiagnostics caps the report for pathological files.
	maxDiagnostics = 1000
	// nodeBudget caps the YAML nodes visited, aliases expanded, so that a
	// small file of nested aliases cannot make validation slow. The size of
	// the file is added to it: without aliases a file has fewer nodes than
	// bytes, so only alias expansion can exceed it.
	nodeBudget = 1_000_000
	// maxMergeDepth caps nested "<<" merge keys (and catches cycles).
	maxMergeDepth = 8
)

// Diagnostic codes that Append needs to tell apart.
const (
	codeNoProviders = "no-providers"
)

// Keys returns the keys of a provider entry, in the order of the Provider
// struct (from its yaml tags).
func Keys() []string { return slices.Clone(providerKeys) }

var providerKeys = func() []string {
	var keys []string
	t := reflect.TypeFor[Provider]()
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("yaml"); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}()

var keyAliases = map[string]string{
	"conditions": "trust_conditions", "condition": "trust_conditions", "trust": "trust_conditions",
	"org_id": "organization_id", "org": "organization_id", "organization": "organization_id",
	"aud": "audience", "iss": "issuer", "issuer_url": "issuer", "provider_url": "issuer", "url": "issuer",
	"ttl": "lifetime", "expires_in": "lifetime", "duration": "lifetime",
	"provider_id": "id", "uuid": "id", "kind": "type", "provider": "type",
	"allowed_ips": "ip_restrictions", "ips": "ip_restrictions", "ip": "ip_restrictions", "cidrs": "ip_restrictions",
	"max_age": "max_token_age", "reuse": "allow_token_reuse", "permissions": "scopes",
	"workspace_restrictions": "workspaces", "rego": "policy",
}

// Load reads and parses the providers file at path. See Parse.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("providers file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("providers file: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a providers file; filename is used in
// diagnostics and provider sources only. It reports every problem at once:
// on errors it returns a *ValidationError holding all diagnostics (warnings
// included); otherwise the File, with the warnings in File.Warnings.
func Parse(filename string, data []byte) (*File, error) {
	r := parse(filename, data)
	if r.hasErrors() {
		return nil, &ValidationError{Diagnostics: r.diags}
	}
	return &File{Path: filename, Providers: r.providers, Warnings: r.diags}, nil
}

type result struct {
	root           *yaml.Node // the top-level mapping, nil if none
	providersValue *yaml.Node // the value of providers:, nil if absent
	providers      []*Provider
	diags          []Diagnostic
	// charged is how many YAML nodes (aliases expanded) parse charged to
	// the node budget: the work it did, whatever the file would expand to.
	charged int
}

func (r *result) hasErrors() bool {
	return slices.ContainsFunc(r.diags, func(d Diagnostic) bool { return !d.Warning })
}

type parser struct {
	file         string
	src          []byte
	lines        []int // byte offset of each line start
	diags        []Diagnostic
	budget       int
	full         bool // maxDiagnostics errors reached: stop
	nerr, nwarn  int
	moreWarnings int  // warnings dropped after maxDiagnostics
	over         bool // nodeBudget exceeded
	ids          map[string]idUse
	// seen holds the diagnostics reported so far by position and message:
	// a mapping merged into several providers (<<: *anchor) has its
	// problems reported once, under the first provider that uses it.
	seen map[string]bool
}

type idUse struct {
	path string
	line int
}

func parse(filename string, data []byte) (r *result) {
	ps := &parser{file: filename, src: data, budget: nodeBudget + len(data), ids: map[string]idUse{}, seen: map[string]bool{}}
	r = &result{}
	defer func() {
		r.charged = nodeBudget + len(data) - ps.budget
		// yaml.v3 is not known to panic on any input, but a providers file
		// must never take the process down: turn a panic into a diagnostic.
		if v := recover(); v != nil {
			ps.add(Diagnostic{Message: fmt.Sprintf("internal error while reading the file (%v); please report it", v)})
			r.providers = nil
		}
		sort.SliceStable(ps.diags, func(i, j int) bool {
			a, b := ps.diags[i], ps.diags[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		if ps.full {
			ps.diags = append(ps.diags, Diagnostic{File: ps.file, Message: fmt.Sprintf("too many errors; stopped after %d", maxDiagnostics)})
		}
		if ps.moreWarnings > 0 {
			ps.diags = append(ps.diags, Diagnostic{File: ps.file, Warning: true, Message: fmt.Sprintf("%d more warnings not shown", ps.moreWarnings)})
		}
		r.diags = ps.diags
	}()
	if len(data) > MaxFileSize {
		ps.add(Diagnostic{Message: fmt.Sprintf("the file is %d bytes; the limit is %d (4 MiB)", len(data), MaxFileSize)})
		return r
	}
	ps.lines = lineStarts(data)

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.add(Diagnostic{Message: "the file is empty; it needs a providers: list (see docs/providers.md)", code: codeNoProviders})
		} else {
			ps.syntaxError(data, err)
		}
		return r
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		ps.add(Diagnostic{Line: extra.Line, Col: extra.Column, Message: "a second YAML document (after ---) is not allowed; keep every provider in the one providers: list"})
	case !errors.Is(err, io.EOF):
		ps.syntaxError(data, err)
	}

	if len(doc.Content) == 0 {
		ps.add(Diagnostic{Message: "the file is empty; it needs a providers: list (see docs/providers.md)", code: codeNoProviders})
		return r
	}
	root := ps.resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		ps.add(Diagnostic{Message: "the file is empty; it needs a providers: list (see docs/providers.md)", code: codeNoProviders})
		return r
	}
	if root.Kind != yaml.MappingNode {
		ps.errorf(root, "", "the file must be a mapping with a providers: list, found %s", describe(root))
		return r
	}
	r.root = root
	var provKey *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			ps.errorf(k, "", "keys must be plain names, found %s", describe(k))
		case name == "providers":
			if provKey != nil {
				ps.errorf(k, "providers", "duplicate key; the first providers: is on line %d: keep one list", provKey.Line)
				continue
			}
			provKey = k
			r.providersValue = v
		case strings.HasPrefix(name, "x-"):
			// Extension keys hold the user's own anchors; ignored.
		default:
			msg := fmt.Sprintf("unknown top-level key %q; the file holds a providers: list, plus x-... keys for your own anchors", name)
			if sug := suggest(name, []string{"providers"}, map[string]string{"provider": "providers"}); sug != "" {
				msg = fmt.Sprintf("unknown top-level key %q; did you mean %s?", name, sug)
			}
			ps.errorf(k, name, "%s", msg)
		}
	}
	if provKey == nil {
		ps.add(Diagnostic{Line: root.Line, Col: root.Column, Message: "no providers: list; add providers: with at least one provider (see docs/providers.md)", code: codeNoProviders})
		return r
	}
	list := ps.resolve(r.providersValue)
	switch {
	case list.Kind == yaml.ScalarNode && list.Tag == "!!null",
		list.Kind == yaml.SequenceNode && len(list.Content) == 0:
		ps.add(Diagnostic{Line: provKey.Line, Col: provKey.Column, Field: "providers", Message: "empty; add at least one provider (see docs/providers.md)", code: codeNoProviders})
		return r
	case list.Kind != yaml.SequenceNode:
		ps.errorf(list, "providers", "must be a list of providers (lines starting with \"- id: ...\"), found %s", describe(list))
		return r
	}
	for i, item := range list.Content {
		if ps.full || ps.over {
			break
		}
		if p := ps.provider(i, item); p != nil {
			r.providers = append(r.providers, p)
		}
	}
	return r
}

// lineStarts returns the byte offset of the start of every line.
func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

func (ps *parser) add(d Diagnostic) {
	if ps.full {
		return
	}
	if d.Line > 0 {
		k := fmt.Sprintf("%d:%d:%v:%s", d.Line, d.Col, d.Warning, d.Message)
		if ps.seen[k] {
			return
		}
		ps.seen[k] = true
	}
	if d.Warning {
		if ps.nwarn >= maxDiagnostics {
			ps.moreWarnings++
			return
		}
		ps.nwarn++
	} else {
		if ps.nerr >= maxDiagnostics {
			ps.full = true
			return
		}
		ps.nerr++
	}
	d.File = ps.file
	ps.diags = append(ps.diags, d)
}

func (ps *parser) report(n *yaml.Node, field string, warning bool, format string, args ...any) {
	d := Diagnostic{Field: field, Message: fmt.Sprintf(format, args...), Warning: warning}
	if n != nil {
		d.Line, d.Col = n.Line, n.Column
	}
	ps.add(d)
}

func (ps *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	ps.report(n, field, false, format, args...)
}

func (ps *parser) warnf(n *yaml.Node, field, format string, args ...any) {
	ps.report(n, field, true, format, args...)
}

// syntaxError turns a yaml.v3 error into a diagnostic at the mistake's
// real line and column, with a hint.
func (ps *parser) syntaxError(data []byte, err error) {
	se := yamlerr.Locate(data, err)
	msg := "YAML syntax error: " + se.Msg
	if se.Hint != "" {
		msg += "; " + se.Hint
	}
	ps.add(Diagnostic{Line: se.Line, Col: se.Col, Message: msg})
}

var suggest = yamlerr.Suggest

// resolve follows an alias and charges the node budget.
func (ps *parser) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	ps.budget--
	if ps.budget < 0 && !ps.over {
		ps.over = true
		ps.add(Diagnostic{Line: n.Line, Message: "the file expands to too many YAML nodes (nested aliases?); simplify it"})
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value lines)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown YAML node"
}

// entry is one key: value of a provider mapping.
type entry struct{ key, val *yaml.Node }

// fields collects the keys of provider mapping n into out, following "<<"
// merge keys (explicit keys win over merged ones, earlier merges over later
// ones). Unknown and duplicate keys are reported.
func (ps *parser) fields(n *yaml.Node, path string, depth int, out map[string]entry, merged map[*yaml.Node]bool) {
	if ps.over || merged[n] {
		return // merging a mapping twice changes nothing
	}
	merged[n] = true
	if depth > maxMergeDepth {
		ps.errorf(n, path, "merge keys (<<) nested more than %d deep; flatten them", maxMergeDepth)
		return
	}
	var merges []*yaml.Node
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if ps.budget--; ps.budget < 0 {
			ps.resolve(k) // reports the exhausted budget
			return
		}
		if k.Kind != yaml.ScalarNode {
			ps.errorf(k, path, "keys must be plain names, found %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			ps.errorf(k, path+"."+name, "duplicate key; the first %s: is on line %d: keep one", name, first.Line)
			continue
		}
		seen[name] = k
		if !slices.Contains(providerKeys, name) {
			msg := fmt.Sprintf("unknown key %q", name)
			if sug := suggest(name, providerKeys, keyAliases); sug != "" {
				msg += fmt.Sprintf("; did you mean %s?", sug)
			} else {
				msg += "; the keys are " + strings.Join(providerKeys, ", ")
			}
			ps.errorf(k, path+"."+name, "%s", msg)
			continue
		}
		if _, ok := out[name]; !ok {
			out[name] = entry{k, v}
		}
	}
	for _, m := range merges {
		m = ps.resolve(m)
		var maps []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			maps = []*yaml.Node{m}
		case yaml.SequenceNode:
			for _, x := range m.Content {
				maps = append(maps, ps.resolve(x))
			}
		}
		for _, mm := range maps {
			if mm.Kind != yaml.MappingNode {
				ps.errorf(mm, path, "a merge key (<<) needs a mapping or a list of mappings, found %s", describe(mm))
				continue
			}
			ps.fields(mm, path, depth+1, out, merged)
		}
	}
}

// provParser decodes one provider entry.
type provParser struct {
	ps     *parser
	path   string
	node   *yaml.Node // where problems of the whole entry are reported
	fields map[string]entry
	bad    map[string]bool // keys with an error already reported
}

func (pp *provParser) has(key string) bool {
	_, ok := pp.fields[key]
	return ok
}

// at returns the node diagnostics about key point at: its value if present,
// otherwise the provider mapping.
func (pp *provParser) at(key string) *yaml.Node {
	if e, ok := pp.fields[key]; ok {
		return e.val
	}
	return pp.node
}

func (pp *provParser) errorf(n *yaml.Node, key, format string, args ...any) {
	base, _, _ := strings.Cut(key, "[")
	pp.bad[base] = true
	pp.ps.errorf(n, pp.field(key), format, args...)
}

func (pp *provParser) warnf(n *yaml.Node, key, format string, args ...any) {
	pp.ps.warnf(n, pp.field(key), format, args...)
}

func (pp *provParser) field(key string) string {
	if key == "" {
		return pp.path
	}
	if key[0] == '[' {
		return pp.path + key
	}
	return pp.path + "." + key
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// scalar returns the text of key's value. ok is false when the key is
// absent, null, or not a scalar (reported).
func (pp *provParser) scalar(key string) (s string, n *yaml.Node, ok bool) {
	e, present := pp.fields[key]
	if !present {
		return "", nil, false
	}
	n = pp.ps.resolve(e.val)
	switch {
	case isNull(n):
		return "", n, false
	case n.Kind != yaml.ScalarNode && key == "trust_conditions":
		pp.errorf(n, key, `must be one string, found %s; write e.g. trust_conditions: 'repository_owner is "octo-org" and ref is "refs/heads/main"'`, describe(n))
		return "", n, false
	case n.Kind != yaml.ScalarNode:
		pp.errorf(n, key, "must be a single value, found %s", describe(n))
		return "", n, false
	}
	return n.Value, n, true
}

// token is like scalar, for values where surrounding spaces are a mistake.
func (pp *provParser) token(key string) (string, *yaml.Node, bool) {
	s, n, ok := pp.scalar(key)
	if ok && strings.TrimSpace(s) != s {
		pp.errorf(n, key, "%q has leading or trailing spaces; remove them", s)
		return "", n, false
	}
	return s, n, ok
}

func (pp *provParser) boolean(key string) bool {
	s, n, ok := pp.scalar(key)
	if !ok {
		return false
	}
	if n.Tag == "!!bool" {
		if b, err := strconv.ParseBool(strings.ToLower(s)); err == nil {
			return b
		}
	}
	pp.errorf(n, key, "must be true or false, found %q", s)
	return false
}

// list returns the items of key's value. present is true when the key has
// a non-null value (even a bad one).
func (pp *provParser) list(key string) (items []*yaml.Node, n *yaml.Node, present bool) {
	e, ok := pp.fields[key]
	if !ok {
		return nil, nil, false
	}
	n = pp.ps.resolve(e.val)
	switch {
	case isNull(n):
		return nil, n, false
	case n.Kind == yaml.ScalarNode:
		pp.errorf(n, key, "must be a list: write [%s]", n.Value)
		return nil, n, true
	case n.Kind != yaml.SequenceNode:
		pp.errorf(n, key, "must be a list, found %s", describe(n))
		return nil, n, true
	}
	items = make([]*yaml.Node, 0, len(n.Content))
	for _, it := range n.Content {
		items = append(items, pp.ps.resolve(it))
	}
	return items, n, true
}

// strings returns the string items of a list, reporting the others; each
// string is passed to check with its node and index.
func (pp *provParser) stringItems(key string, items []*yaml.Node, check func(i int, s string, n *yaml.Node)) {
	seen := map[string]int{}
	for i, it := range items {
		if pp.ps.over {
			return
		}
		sub := fmt.Sprintf("%s[%d]", key, i)
		if it.Kind != yaml.ScalarNode || isNull(it) {
			pp.errorf(it, sub, "must be a single value, found %s", describe(it))
			continue
		}
		if strings.TrimSpace(it.Value) != it.Value {
			pp.errorf(it, sub, "%q has leading or trailing spaces; remove them", it.Value)
			continue
		}
		if j, dup := seen[it.Value]; dup {
			pp.warnf(it, sub, "%q is listed twice (also %s[%d]); remove one", it.Value, key, j)
			continue
		}
		seen[it.Value] = i
		check(i, it.Value, it)
	}
}

func (ps *parser) provider(i int, item *yaml.Node) *Provider {
	if ps.over {
		return nil
	}
	path := fmt.Sprintf("providers[%d]", i)
	n := ps.resolve(item)
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, path, "each provider must be a mapping (id:, name:, type:, ... lines), found %s", describe(n))
		return nil
	}
	// An entry that is an alias (- *anchor) is reported where it is used.
	at := n
	if item.Kind == yaml.AliasNode {
		at = item
	}
	pp := &provParser{ps: ps, path: path, node: at, fields: map[string]entry{}, bad: map[string]bool{}}
	ps.fields(n, path, 0, pp.fields, map[*yaml.Node]bool{})
	p := &Provider{Source: Pos{File: ps.file, Line: at.Line}}
	missing := func(key, msg string) { pp.errorf(at, key, "missing; %s", msg) }

	// type
	kindOK := false
	if s, v, ok := pp.token("type"); ok {
		if msg := checkType(s); msg != "" {
			pp.errorf(v, "type", "%s", msg)
		} else {
			p.Type, kindOK = Type(s), true
		}
	} else if v == nil || isNull(v) {
		missing("type", "use github_actions, circleci or other")
	}

	// id
	if s, v, ok := pp.token("id"); ok {
		if msg := checkUUID(s); msg != "" {
			pp.errorf(v, "id", "%s", msg)
		} else if first, dup := ps.ids[s]; dup {
			pp.errorf(v, "id", "duplicate id %s; %s (line %d) already uses it: every provider needs its own id", s, first.path, first.line)
		} else {
			ps.ids[s] = idUse{path, v.Line}
			p.ID = s
		}
	} else if v == nil || isNull(v) {
		missing("id", "every provider needs a UUID, e.g. "+uuidExample+" (uuidgen makes one; `oidc-sidecar provider new` adds one for you)")
	}

	// name
	if s, v, ok := pp.scalar("name"); ok && strings.TrimSpace(s) != "" {
		p.Name = s
	} else if ok {
		pp.errorf(v, "name", "empty; give the provider a label, e.g. \"GHA - octo-repo:deploy\"")
	} else if v == nil || isNull(v) {
		missing("name", "give the provider a label, e.g. \"GHA - octo-repo:deploy\"")
	}

	// lifetime
	p.Lifetime = DefaultLifetime
	if s, v, ok := pp.token("lifetime"); ok {
		if d, msg := parseLifetime(s); msg != "" {
			pp.errorf(v, "lifetime", "%s", msg)
		} else {
			p.Lifetime = d
		}
	}

	if s, _, ok := pp.token("audience"); ok {
		p.Audience = s
	}
	if s, _, ok := pp.token("organization_id"); ok {
		p.OrganizationID = s
	}
	if s, _, ok := pp.token("issuer"); ok {
		p.Issuer = s
	}

	// trust_conditions
	if s, v, ok := pp.scalar("trust_conditions"); ok && strings.TrimSpace(s) != "" {
		p.TrustConditions = s
		x, err := trust.Parse(s)
		if err != nil {
			ps.conditionError(pp.field("trust_conditions"), v, s, err)
		} else {
			p.Conditions = x
			for _, c := range x.Conditions {
				if msg := unknownClaim(p.Type, c.Claim); msg != "" {
					line, col := ps.conditionPos(v, s, c.Pos.Line, c.Pos.Col)
					ps.add(Diagnostic{Line: line, Col: col, Field: pp.field("trust_conditions"), Message: msg, Warning: true})
				}
			}
		}
	}

	// policy
	if s, v, ok := pp.token("policy"); ok {
		if msg := checkPolicy(s); msg != "" {
			pp.errorf(v, "policy", "%s", msg)
		} else {
			p.Policy = s
		}
	}

	// ip_restrictions
	if items, _, _ := pp.list("ip_restrictions"); items != nil {
		p.IPRestrictions = make([]netip.Prefix, 0, len(items))
		pp.stringItems("ip_restrictions", items, func(i int, s string, n *yaml.Node) {
			pr, msg, warn := parseNetwork(s)
			sub := fmt.Sprintf("ip_restrictions[%d]", i)
			if msg != "" {
				pp.errorf(n, sub, "%s", msg)
				return
			}
			if warn != "" {
				pp.warnf(n, sub, "%s", warn)
			}
			if slices.Contains(p.IPRestrictions, pr) {
				pp.warnf(n, sub, "%s is listed twice; remove one", pr)
				return
			}
			p.IPRestrictions = append(p.IPRestrictions, pr)
		})
	}

	// workspaces
	if items, v, present := pp.list("workspaces"); present {
		if items != nil && len(items) == 0 {
			pp.errorf(v, "workspaces", "an empty list allows no workspace at all; omit workspaces to allow all of them, or list the handles")
		}
		p.Workspaces = make([]string, 0, len(items))
		pp.stringItems("workspaces", items, func(i int, s string, n *yaml.Node) {
			if msg := checkWorkspace(s); msg != "" {
				pp.errorf(n, fmt.Sprintf("workspaces[%d]", i), "%s", msg)
				return
			}
			p.Workspaces = append(p.Workspaces, s)
		})
	}

	// scopes
	items, v, present := pp.list("scopes")
	switch {
	case !present && v == nil:
		missing("scopes", "list the Buddy scopes issued tokens get, e.g. [WORKSPACE, EXECUTION_RUN]")
	case !present || (items != nil && len(items) == 0):
		pp.errorf(v, "scopes", "empty; list at least one Buddy scope, e.g. [WORKSPACE, EXECUTION_RUN]")
	}
	pp.stringItems("scopes", items, func(i int, s string, n *yaml.Node) {
		sub := fmt.Sprintf("scopes[%d]", i)
		if msg := scopeProblem(s); msg != "" {
			pp.errorf(n, sub, "%s", msg)
			return
		}
		if msg := scopeWarning(s); msg != "" {
			pp.warnf(n, sub, "%s", msg)
		}
		p.Scopes = append(p.Scopes, s)
	})

	p.AllowTokenReuse = pp.boolean("allow_token_reuse")
	if s, v, ok := pp.token("max_token_age"); ok {
		if d, msg := parseMaxTokenAge(s); msg != "" {
			pp.errorf(v, "max_token_age", "%s", msg)
		} else {
			p.MaxTokenAge = d
		}
	}
	p.MaxTokenLifetime = DefaultMaxTokenLifetime
	if s, v, ok := pp.token("max_token_lifetime"); ok {
		if d, msg := parseMaxTokenLifetime(s); msg != "" {
			pp.errorf(v, "max_token_lifetime", "%s", msg)
		} else {
			p.MaxTokenLifetime = d
		}
	}
	p.DenialDetail = DenialConditions
	if s, v, ok := pp.token("denial_detail"); ok {
		if msg := checkDenialDetail(s); msg != "" {
			pp.errorf(v, "denial_detail", "%s", msg)
		} else {
			p.DenialDetail = DenialDetail(s)
		}
	}

	if kindOK {
		k, _ := KindOf(p.Type)
		k.Validate(p, func(key, msg string, warning bool) {
			if !pp.bad[key] { // a bad value was reported already
				pp.ps.report(pp.at(key), pp.field(key), warning, "%s", msg)
			}
		})
		p.Issuer, p.Audience = k.Issuer(p), k.Audience(p)
	}
	return p
}

// conditionError reports a trust-condition parse error at its position in
// the file, with the caret display.
func (ps *parser) conditionError(field string, n *yaml.Node, src string, err error) {
	var se *trust.SyntaxError
	if !errors.As(err, &se) {
		ps.errorf(n, field, "%v", err)
		return
	}
	line, col := ps.conditionPos(n, src, se.Pos.Line, se.Pos.Col)
	msg := se.Msg
	if c := strings.TrimRight(se.Caret(), "\n"); c != "" {
		msg += "\n" + indent(c, "    ")
	}
	ps.add(Diagnostic{Line: line, Col: col, Field: field, Message: msg})
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
