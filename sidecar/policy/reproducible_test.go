package policy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestBundleIndependentOfPathSpelling: the same providers file, named four
// ways — relative, with ./, absolute, and a copy elsewhere — gives the same
// revision and a byte-identical bundle (the bundle records the file's base
// name only).
func TestBundleIndependentOfPathSpelling(t *testing.T) {
	const rel = "../../examples/providers.yaml"
	abs, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var first []byte
	var firstRev string
	for _, p := range []string{rel, "./" + rel, abs, cp} {
		b, err := BuildFromFiles(context.Background(), p, nil, "", Settings{}, "")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteBundle(&buf, b); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first, firstRev = buf.Bytes(), b.Manifest.Revision
			continue
		}
		if b.Manifest.Revision != firstRev || !bytes.Equal(buf.Bytes(), first) {
			t.Errorf("%s: revision %s (first %s), identical bytes %v", p, b.Manifest.Revision, firstRev, bytes.Equal(buf.Bytes(), first))
		}
	}
}
