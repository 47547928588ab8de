package provider

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

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

// Keys returns the keys of a provider entry, in the order of the field
// table.
func Keys() []string { return slices.Clone(providerKeys) }

var providerKeys = func() []string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
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
	ids          map[ID]idUse
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
	ps := &parser{file: filename, src: data, budget: nodeBudget + len(data), ids: map[ID]idUse{}, seen: map[string]bool{}}
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
	case list.Kind == yaml.ScalarNode && list.Tag == "!!null":
		ps.add(Diagnostic{Line: provKey.Line, Col: provKey.Column, Field: "providers", Message: "empty; add a provider, or write providers: [] for none (see docs/providers.md)", code: codeNoProviders})
		return r
	case list.Kind == yaml.SequenceNode && len(list.Content) == 0:
		// A deployment may start with no provider (the console's empty
		// state, or the last one deleted): every exchange is then refused.
		ps.add(Diagnostic{Line: provKey.Line, Col: provKey.Column, Field: "providers", Warning: true,
			Message: "no providers: every token exchange is refused until one is added (see docs/providers.md)"})
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

// provParser decodes one provider entry: it is the YAML source and sink of
// decodeProvider.
type provParser struct {
	ps     *parser
	path   string
	node   *yaml.Node // where problems of the whole entry are reported
	fields map[string]entry
	nodes  map[string]*yaml.Node // resolved value nodes by key or key[i]
}

// at returns the node diagnostics about key point at: its value (or list
// item) if present, otherwise the provider mapping.
func (pp *provParser) at(key string) *yaml.Node {
	if n, ok := pp.nodes[key]; ok {
		return n
	}
	base, _, _ := strings.Cut(key, "[")
	if n, ok := pp.nodes[base]; ok {
		return n
	}
	if e, ok := pp.fields[base]; ok {
		return e.val
	}
	return pp.node
}

func (pp *provParser) fail(key, msg string) { pp.ps.errorf(pp.at(key), pp.field(key), "%s", msg) }
func (pp *provParser) warn(key, msg string) { pp.ps.warnf(pp.at(key), pp.field(key), "%s", msg) }
func (pp *provParser) strict() bool         { return false }

func (pp *provParser) conditionError(key, src string, err error) {
	pp.ps.conditionError(pp.field(key), pp.at(key), src, err)
}

func (pp *provParser) conditionWarn(key, src string, pos trust.Pos, msg string) {
	line, col := pp.ps.conditionPos(pp.at(key), src, pos.Line, pos.Col)
	pp.ps.add(Diagnostic{Line: line, Col: col, Field: pp.field(key), Message: msg, Warning: true})
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

// get decodes the shape of f's value (see source).
func (pp *provParser) get(f *field) (value, presence) {
	e, ok := pp.fields[f.key]
	if !ok {
		return value{}, absent
	}
	n := pp.ps.resolve(e.val)
	pp.nodes[f.key] = n
	if isNull(n) {
		if f.typ == tList {
			return value{}, null
		}
		return value{}, absent
	}
	if f.typ == tList {
		return pp.list(f.key, n)
	}
	switch {
	case n.Kind != yaml.ScalarNode && f.key == "trust_conditions":
		pp.fail(f.key, fmt.Sprintf(`must be one string, found %s; write e.g. trust_conditions: 'repository_owner is "octo-org" and ref is "refs/heads/main"'`, describe(n)))
		return value{}, invalid
	case n.Kind != yaml.ScalarNode:
		pp.fail(f.key, "must be a single value, found "+describe(n))
		return value{}, invalid
	}
	s := n.Value
	if f.typ != tText && strings.TrimSpace(s) != s {
		pp.fail(f.key, fmt.Sprintf("%q has leading or trailing spaces; remove them", s))
		return value{}, invalid
	}
	switch f.typ {
	case tBool:
		if n.Tag == "!!bool" {
			if b, err := strconv.ParseBool(strings.ToLower(s)); err == nil {
				return value{b: b}, present
			}
		}
		pp.fail(f.key, fmt.Sprintf("must be true or false, found %q", s))
		return value{}, invalid
	case tDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			pp.fail(f.key, fmt.Sprintf("%q is not a duration; %s", s, f.durationHint))
			return value{}, invalid
		}
		return value{s: s, d: d}, present
	}
	return value{s: s}, present
}

// list decodes a list of strings; items that are not strings are reported
// and skipped.
func (pp *provParser) list(key string, n *yaml.Node) (value, presence) {
	switch {
	case n.Kind == yaml.ScalarNode:
		pp.fail(key, fmt.Sprintf("must be a list: write [%s]", n.Value))
		return value{}, invalid
	case n.Kind != yaml.SequenceNode:
		pp.fail(key, "must be a list, found "+describe(n))
		return value{}, invalid
	}
	v := value{list: make([]string, len(n.Content)), skip: make([]bool, len(n.Content))}
	for i, it := range n.Content {
		if pp.ps.over {
			v.list, v.skip = v.list[:i], v.skip[:i]
			break
		}
		it = pp.ps.resolve(it)
		sub := fmt.Sprintf("%s[%d]", key, i)
		pp.nodes[sub] = it
		if it.Kind != yaml.ScalarNode || isNull(it) {
			pp.fail(sub, "must be a single value, found "+describe(it))
			v.skip[i] = true
			continue
		}
		v.list[i] = it.Value
	}
	return v, present
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
	pp := &provParser{ps: ps, path: path, node: at, fields: map[string]entry{}, nodes: map[string]*yaml.Node{}}
	ps.fields(n, path, 0, pp.fields, map[*yaml.Node]bool{})
	p := &Provider{Source: Pos{File: ps.file, Line: at.Line}}
	decodeProvider(pp, pp, p)
	if p.ID != "" {
		if first, dup := ps.ids[p.ID]; dup {
			pp.fail("id", fmt.Sprintf("duplicate id %s; %s (line %d) already uses it: every provider needs its own id", p.ID, first.path, first.line))
			p.ID = ""
		} else {
			ps.ids[p.ID] = idUse{path, pp.at("id").Line}
		}
	}
	if k, ok := KindOf(p.Type); ok {
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
