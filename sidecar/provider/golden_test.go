package provider

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenOutput is what a golden file holds for a providers file: every
// diagnostic's String(), then for a valid file each provider's metadata.
func goldenOutput(t *testing.T, name string, data []byte) string {
	t.Helper()
	f, err := Parse(name, data)
	var b strings.Builder
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("Parse error is %T, want *ValidationError: %v", err, err)
		}
		for _, d := range ve.Diagnostics {
			b.WriteString(d.String() + "\n")
		}
		return b.String()
	}
	for _, d := range f.Warnings {
		b.WriteString(d.String() + "\n")
	}
	b.WriteString("--- metadata\n")
	for _, p := range f.Providers {
		j, err := json.MarshalIndent(p.Metadata(), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteString("\n")
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := goldenOutput(t, name, data)
			valid := strings.HasPrefix(name, "valid_")
			if isValid := strings.Contains(got, "--- metadata\n"); isValid != valid {
				t.Errorf("%s: valid = %v, want %v:\n%s", name, isValid, valid, got)
			}
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s: diagnostics differ (run go test -run TestGolden -update to accept)\n--- got\n%s--- want\n%s", name, got, want)
			}
		})
	}
}
