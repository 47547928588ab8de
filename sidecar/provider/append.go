package provider

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"
)

// NewOptions describes a provider for Append (the `provider new` command).
// Empty strings and nil lists leave the key out of the file (its default
// applies); Workspaces nil means all workspaces.
type NewOptions struct {
	Type            Type
	Name            string
	OrganizationID  string
	Issuer          string
	Audience        string
	TrustConditions string
	Lifetime        string
	Scopes          []string
	Workspaces      []string
	IPRestrictions  []string
}

// SchemaComment is the first line of a providers file that provider new
// creates: YAML language servers (VS Code, JetBrains, Neovim) then complete
// and check the file against docs/providers.schema.json.
const SchemaComment = "# yaml-language-server: $schema=https://raw.githubusercontent.com/oidc-sidecar/oidc-sidecar/main/docs/providers.schema.json"

// newProviderFile is the file name diagnostics about the options carry.
const newProviderFile = "new provider"

// Append adds a provider made from opts, with a fresh UUID v4, to the end of
// the providers: list of the file at path, creating the file if it does not
// exist, and returns the new id.
//
// The new provider is validated with the same rules as Parse first; on
// failure Append returns a *ValidationError whose diagnostics name the
// options (File "new provider", Field "lifetime", ...) and writes nothing.
// The existing file must be valid (a missing or empty providers: list is
// fine). Append inserts text: everything in the file stays byte for byte,
// comments included, except that an empty "providers: []" or "providers: ~"
// loses its "[]" or "~". The result is validated before it replaces the file
// atomically (temporary file and rename, same mode); warnings are not
// returned — Load the file to see them.
func Append(path string, opts NewOptions) (id ID, err error) {
	id = ID(uuid.NewString())
	item, err := renderItem(id, opts)
	if err != nil {
		return "", err
	}

	// The new provider alone.
	alone := "providers:\n" + indentLines(item, "  ")
	if r := parse(newProviderFile, []byte(alone)); r.hasErrors() {
		return "", &ValidationError{Diagnostics: optionDiagnostics(r.diags)}
	}

	// The target: follow a symbolic link so that the link stays one.
	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved
	}
	old, err := os.ReadFile(target)
	mode := fs.FileMode(0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return "", fmt.Errorf("providers file: %w", err)
	default:
		if fi, err := os.Stat(target); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	if len(old) > MaxFileSize {
		return "", fmt.Errorf("providers file %s: %d bytes; the limit is %d (4 MiB)", path, len(old), MaxFileSize)
	}

	updated, err := insertItem(path, old, item)
	if err != nil {
		return "", err
	}
	if _, err := Parse(path, updated); err != nil {
		return "", err
	}
	if err := writeAtomic(target, updated, mode); err != nil {
		return "", fmt.Errorf("providers file: %w", err)
	}
	return id, nil
}

// optionDiagnostics rewrites diagnostics about the lone new provider to
// name the options instead of file positions.
func optionDiagnostics(ds []Diagnostic) []Diagnostic {
	out := make([]Diagnostic, 0, len(ds))
	for _, d := range ds {
		d.Line, d.Col = 0, 0
		d.Field = strings.TrimPrefix(strings.TrimPrefix(d.Field, "providers[0]"), ".")
		out = append(out, d)
	}
	return out
}

// renderItem renders the new provider as a one-item YAML block list: the
// keys of the field table that opts sets, in the table's order.
func renderItem(id ID, o NewOptions) (string, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	for _, f := range fields {
		var v any
		switch {
		case f.key == "id":
			v = string(id)
		case f.option != nil:
			v = f.option(o)
		}
		switch v := v.(type) {
		case string:
			m.Content = append(m.Content, str(f.key), str(v))
		case []string:
			s := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{}}
			for _, it := range v {
				s.Content = append(s.Content, str(it))
			}
			m.Content = append(m.Content, str(f.key), s)
		}
	}

	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{m}}); err != nil {
		return "", fmt.Errorf("rendering the new provider: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("rendering the new provider: %w", err)
	}
	return b.String(), nil
}

func indentLines(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		if l != "\n" {
			b.WriteString(prefix)
		}
		b.WriteString(l)
	}
	return b.String()
}

// insertItem returns src with item (a rendered one-item block list at
// column 1) added to the end of its providers: list.
func insertItem(path string, src []byte, item string) ([]byte, error) {
	r := parse(path, src)
	var blocking []Diagnostic
	for _, d := range r.diags {
		if !d.Warning && d.code != codeNoProviders {
			blocking = append(blocking, d)
		}
	}
	if len(blocking) > 0 {
		return nil, &ValidationError{Diagnostics: r.diags}
	}
	nl := "\n"
	if bytes.Contains(src, []byte("\r\n")) {
		nl = "\r\n"
	}
	conv := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", nl)) }
	appendAtEnd := func(text string) []byte {
		out := slices.Clone(src)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, nl...)
		}
		return append(out, conv(text)...)
	}
	refuse := func(why string) error {
		return fmt.Errorf("providers file %s: %s; add the provider by hand (see docs/providers.md)", path, why)
	}

	if r.root == nil {
		// Empty, or only comments. A new file gets the schema line the
		// examples have, so that editors complete and check it.
		if len(bytes.TrimSpace(src)) == 0 {
			return conv(SchemaComment + "\nproviders:\n" + indentLines(item, "  ")), nil
		}
		return appendAtEnd("providers:\n" + indentLines(item, "  ")), nil
	}
	if r.root.Style&yaml.FlowStyle != 0 || r.root.Column != 1 {
		return nil, refuse("the top level is not a block mapping starting at column 1")
	}
	v := r.providersValue
	if v == nil {
		return appendAtEnd("providers:\n" + indentLines(item, "  ")), nil
	}
	lines := lineStarts(src)
	lineEnd := func(l int) int { // offset just past line l's newline (1-based)
		if l < len(lines) {
			return lines[l]
		}
		return len(src)
	}
	// Find the providers key (the node before v in the root mapping).
	var key *yaml.Node
	for i := 0; i+1 < len(r.root.Content); i += 2 {
		if r.root.Content[i+1] == v {
			key = r.root.Content[i]
		}
	}
	if key == nil {
		return nil, refuse("cannot locate the providers: key")
	}
	itemIndent := strings.Repeat(" ", key.Column-1+2)

	switch {
	case v.Kind == yaml.AliasNode:
		return nil, refuse("providers: is an alias")
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null",
		v.Kind == yaml.SequenceNode && v.Style&yaml.FlowStyle != 0 && len(v.Content) == 0:
		// "providers:", "providers: ~", "providers: null" or "providers: []":
		// drop the placeholder, then insert the item on the next line.
		out := slices.Clone(src)
		if v.Value != "" || v.Kind == yaml.SequenceNode {
			if v.Line != key.Line {
				return nil, refuse("the empty providers value is not on the providers: line")
			}
			ps := &parser{src: src, lines: lines}
			start := ps.offset(v.Line, v.Column)
			if start < 0 {
				return nil, refuse("cannot locate the providers value")
			}
			end := min(start+len(v.Value), len(src))
			if v.Kind == yaml.SequenceNode {
				close := bytes.IndexByte(src[start:lineEnd(v.Line)], ']')
				if close < 0 {
					return nil, refuse("cannot find the end of providers: []")
				}
				end = start + close + 1
			}
			// Drop the spaces before the placeholder too, but keep a
			// comment after it apart from the colon.
			for start > 0 && (src[start-1] == ' ' || src[start-1] == '\t') {
				start--
			}
			rest := src[end:]
			if len(rest) > 0 && rest[0] == '#' {
				rest = append([]byte(" "), rest...)
			}
			out = append(slices.Clone(src[:start]), rest...)
			lines = lineStarts(out)
		}
		at := len(out)
		if key.Line < len(lines) {
			at = lines[key.Line]
		}
		text := conv(indentLines(item, itemIndent))
		if at == len(out) && len(out) > 0 && out[len(out)-1] != '\n' {
			text = append([]byte(nl), text...)
		}
		return slices.Concat(out[:at], text, out[at:]), nil
	case v.Kind != yaml.SequenceNode || v.Style&yaml.FlowStyle != 0:
		return nil, refuse("providers: is not a block list (- id: ... lines)")
	}

	// A block list: find its last line. Its items start with "-" at the
	// list's column; anything indented deeper belongs to an item; blank
	// lines and comments at or left of the dash may follow the list, so the
	// new item goes after the last line that is neither.
	// The node's position is that of its anchor or tag if it has one, so
	// find the first dash from there.
	ps := &parser{src: src, lines: lines}
	first, dash := 0, 0
	if off := ps.offset(v.Line, v.Column); off >= 0 && off < len(src) && src[off] == '-' {
		first, dash = v.Line, v.Column-1
	} else {
		for l := v.Line + 1; l <= len(lines) && first == 0; l++ {
			text := strings.TrimRight(string(src[lines[l-1]:lineEnd(l)]), "\r\n")
			trimmed := strings.TrimLeft(text, " ")
			switch {
			case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			case strings.HasPrefix(trimmed, "-"):
				first, dash = l, len(text)-len(trimmed)
			default:
				return nil, refuse("cannot find the first item of providers:")
			}
		}
		if first == 0 {
			return nil, refuse("cannot find the first item of providers:")
		}
	}
	last := first
scan:
	for l := first + 1; l <= len(lines); l++ {
		text := string(src[lines[l-1]:lineEnd(l)])
		text = strings.TrimRight(text, "\r\n")
		trimmed := strings.TrimLeft(text, " ")
		ind := len(text) - len(trimmed)
		switch {
		case trimmed == "":
			continue
		case ind > dash:
			last = l
		case ind == dash && (trimmed == "-" || strings.HasPrefix(trimmed, "- ") || strings.HasPrefix(trimmed, "-\t")):
			last = l
		case strings.HasPrefix(trimmed, "#"):
			continue
		default:
			break scan // the first line after the list
		}
	}
	at := lineEnd(last)
	text := conv(indentLines(item, strings.Repeat(" ", dash)))
	if at == len(src) && len(src) > 0 && src[len(src)-1] != '\n' {
		text = append([]byte(nl), text...)
	}
	return slices.Concat(src[:at], text, src[at:]), nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over path.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}
