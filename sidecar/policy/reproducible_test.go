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

// TestWriteBundleDir: the directory policy compile --out writes is a bundle
// directory OPA's own reader accepts, with the manifest, the data and every
// module; writing again drops the module of a removed provider.
func TestWriteBundleDir(t *testing.T) {
	ps := exampleProviders(t)
	b, err := Build(context.Background(), Sources{Providers: ps, Policies: []File{}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteBundleDir(dir, b); err != nil {
		t.Fatal(err)
	}
	got, err := ReadBundleFile(dir) // OPA's bundle.DirectoryLoader and reader
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest.Revision != b.Manifest.Revision || got.Manifest.Roots == nil || (*got.Manifest.Roots)[0] != Root {
		t.Fatalf("manifest %+v", got.Manifest)
	}
	if len(got.Modules) != len(b.Modules) || len(got.Modules) < 2 {
		t.Fatalf("%d modules, want %d", len(got.Modules), len(b.Modules))
	}
	provs := got.Data[Root].(map[string]any)["providers"].(map[string]any)
	if len(provs) != len(ps) {
		t.Fatalf("data.json has %d providers, want %d", len(provs), len(ps))
	}
	// Again with one provider fewer: its module is gone.
	b2, err := Build(context.Background(), Sources{Providers: ps[1:], Policies: []File{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBundleDir(dir, b2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sidecar", "conditions", string(ps[0].ID)+".rego")); !os.IsNotExist(err) {
		t.Fatalf("the removed provider's module is still there: %v", err)
	}
}
