package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// doc is a providers file read for editing: its bytes, its YAML node tree
// and, for each entry of the providers: list, the byte range it occupies,
// so that an edit replaces exactly one entry's text and leaves every other
// byte — comments, order, quoting, indentation — as it was.
type doc struct {
	path  string
	data  []byte
	mode  fs.FileMode
	root  *yaml.Node // the top-level mapping
	seq   *yaml.Node // providers: (a sequence), nil when absent
	items []item
	// insertAt is where a new entry goes (after the last one); dashCol is the
	// column of the entries' "-" (0-based).
	insertAt, dashCol int
}

// item is one entry of the providers: list.
type item struct {
	id    string
	node  *yaml.Node
	start int // first byte of the entry's line ("  - id: ...")
	end   int // first byte after the entry (the next entry's comments, or the list's end)
	// headStart is start, moved up over the comment lines just above it.
	headStart int
}

// fileETag is the providers file's revision as an entity tag.
func fileETag(data []byte) string {
	s := sha256.Sum256(data)
	return `"` + hex.EncodeToString(s[:16]) + `"`
}

// readDoc reads and indexes path. The file must be a valid providers file
// (the caller checks with provider.Parse).
func readDoc(path string) (*doc, error) {
	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved // a symlinked file stays a symlink
	}
	data, err := os.ReadFile(target)
	if err != nil {
		return nil, fmt.Errorf("providers file: %w", err)
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm()
	}
	return indexDoc(target, data, mode)
}

func indexDoc(path string, data []byte, mode fs.FileMode) (*doc, error) {
	d := &doc{path: path, data: data, mode: mode}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("providers file: %w", err)
	}
	if n.Kind != yaml.DocumentNode || len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("providers file: the top level is not a mapping with a providers: key")
	}
	d.root = n.Content[0]
	starts := lineStarts(data)
	lineOff := func(line int) int { // 1-based line → byte offset of its start
		if line-1 < len(starts) {
			return starts[line-1]
		}
		return len(data)
	}
	// The end of the providers: list is where the next top-level key (with
	// its comments) starts, or the end of the file.
	listEnd := len(data)
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		if d.root.Content[i].Value != "providers" {
			continue
		}
		d.seq = d.root.Content[i+1]
		if i+2 < len(d.root.Content) {
			k := d.root.Content[i+2]
			listEnd = commentsAbove(data, starts, k.Line, k.Column)
		}
	}
	if d.seq == nil || d.seq.Kind != yaml.SequenceNode {
		d.seq = nil
		return d, nil
	}
	for i, it := range d.seq.Content {
		if it.Kind != yaml.MappingNode {
			continue
		}
		x := item{node: it, start: lineOff(it.Line)}
		x.headStart = commentsAbove(data, starts, it.Line, it.Column-2)
		for j := 0; j+1 < len(it.Content); j += 2 {
			if it.Content[j].Value == "id" {
				x.id = it.Content[j+1].Value
			}
		}
		if i+1 < len(d.seq.Content) {
			nx := d.seq.Content[i+1]
			x.end = commentsAbove(data, starts, nx.Line, nx.Column-2)
		} else {
			x.end = trimTrailingBlank(data, x.start, listEnd)
		}
		d.items = append(d.items, x)
	}
	if len(d.items) > 0 {
		last := d.items[len(d.items)-1]
		d.insertAt = last.end
		d.dashCol = last.node.Column - 3 // "- " before the first key
		if d.dashCol < 0 {
			d.dashCol = 0
		}
	}
	return d, nil
}

func lineStarts(src []byte) []int {
	out := []int{0}
	for i, c := range src {
		if c == '\n' {
			out = append(out, i+1)
		}
	}
	return out
}

// commentsAbove returns the offset of line (1-based), moved up over the
// comment lines directly above it that are indented at least col-1.
func commentsAbove(data []byte, starts []int, line, col int) int {
	l := line - 1 // 0-based
	if l >= len(starts) {
		return len(data)
	}
	for l > 0 {
		prev := string(data[starts[l-1]:starts[l]])
		t := strings.TrimLeft(prev, " \t")
		if !strings.HasPrefix(t, "#") || len(prev)-len(t) < col-1 {
			break
		}
		l--
	}
	return starts[l]
}

// trimTrailingBlank moves end back over blank lines and comment lines
// (which belong to what follows), but not before from.
func trimTrailingBlank(data []byte, from, end int) int {
	for end > from {
		i := bytes.LastIndexByte(data[:end-1], '\n') + 1
		line := strings.TrimSpace(string(data[i:end]))
		if line != "" && !strings.HasPrefix(line, "#") {
			break
		}
		end = i
	}
	return end
}

func (d *doc) find(id string) int {
	for i, it := range d.items {
		if it.id == id {
			return i
		}
	}
	return -1
}

// render renders an entry as list item text at the document's indentation.
func (d *doc) render(entry *yaml.Node) (string, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(entry); err != nil {
		return "", err
	}
	_ = enc.Close()
	pad := strings.Repeat(" ", d.dashCol)
	var out strings.Builder
	for i, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		switch {
		case i == 0:
			out.WriteString(pad + "- " + line)
		case line == "":
		default:
			out.WriteString(pad + "  " + line)
		}
		out.WriteByte('\n')
	}
	return out.String(), nil
}

// replaced returns the file with entry i's text replaced by text (its
// comments above are kept); text "" deletes the entry and those comments.
func (d *doc) replaced(i int, text string) []byte {
	it := d.items[i]
	from := it.start
	if text == "" {
		from = it.headStart
	}
	out := make([]byte, 0, len(d.data)+len(text))
	out = append(out, d.data[:from]...)
	out = append(out, text...)
	return append(out, d.data[it.end:]...)
}

// emptied returns the file with its only entry deleted: "providers: []"
// (deleting the entry's text would leave "providers:", a null the loader
// refuses). The tree is re-encoded; there is no other entry whose
// formatting could be lost.
func (d *doc) emptied() ([]byte, error) {
	d.seq.Content = nil
	d.seq.Style = yaml.FlowStyle
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{d.root}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// appended returns the file with text added as the last entry.
func (d *doc) appended(entry *yaml.Node) ([]byte, error) {
	if d.seq != nil && len(d.items) > 0 && d.seq.Style&yaml.FlowStyle == 0 {
		text, err := d.render(entry)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(d.data)+len(text))
		out = append(out, d.data[:d.insertAt]...)
		if d.insertAt > 0 && d.data[d.insertAt-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, text...)
		return append(out, d.data[d.insertAt:]...), nil
	}
	// No block list to extend (providers: [] or no key): the tree is
	// re-encoded; there is no entry whose formatting could be lost.
	if d.seq == nil {
		d.root.Content = append(d.root.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "providers"},
			&yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"})
		d.seq = d.root.Content[len(d.root.Content)-1]
	}
	d.seq.Style = 0
	d.seq.Content = append(d.seq.Content, entry)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{d.root}}); err != nil {
		return nil, err
	}
	_ = enc.Close()
	return b.Bytes(), nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, fsynced, renamed over path, and the directory fsynced.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if df, derr := os.Open(dir); derr == nil {
		_ = df.Sync()
		df.Close()
	}
	return nil
}

// writable says why path cannot be replaced, or "".
func writable(path string) string {
	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved
	}
	f, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Sprintf("the providers file %s is not writable by the sidecar (%v); edit it by hand, or make it writable and restart", path, errors.Unwrap(err))
	}
	f.Close()
	t, err := os.CreateTemp(filepath.Dir(target), ".oidc-sidecar-probe-*")
	if err != nil {
		return fmt.Sprintf("the directory of the providers file %s is not writable (%v): edits are written to a temporary file there and renamed (a Kubernetes ConfigMap mount is read-only: edit the ConfigMap instead)", path, errors.Unwrap(err))
	}
	t.Close()
	_ = os.Remove(t.Name())
	return ""
}
