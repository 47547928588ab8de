package provider

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics, is deterministic, reports errors only as a
// *ValidationError with at least one error, and what it accepts survives the
// metadata round trip.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "providers:", "providers: [*a]", "a: &a [*a]\nproviders: *a", "providers:\n- <<: *x\n",
		"x: &x {<<: *x}\nproviders: [*x]", "providers: [{<<: [*a]}]", "providers: !!binary aGVsbG8=",
		"providers:\n  - trust_conditions: \"\\x41 is \\\"b\\\"\"\n", "\xef\xbb\xbfproviders: []", "providers:\n\t- a",
		"providers: [{id: 550e8400-e29b-41d4-a716-446655440000, name: n, type: other, issuer: 'https://i', audience: a, trust_conditions: \"a is \\u0022b\\u0022\", scopes: [WORKSPACE]}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		file2, err2 := Parse("fuzz.yaml", data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Parse is not deterministic: %v vs %v", err, err2)
		}
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T: %v", err, err)
			}
			if len(ve.Errors()) == 0 {
				t.Fatalf("ValidationError without errors: %v", err)
			}
			for _, d := range ve.Diagnostics {
				if d.Message == "" || d.File != "fuzz.yaml" || d.Line < 0 || d.Col < 0 {
					t.Fatalf("bad diagnostic %#v", d)
				}
			}
			return
		}
		if len(file.Providers) == 0 && len(file.Warnings) == 0 {
			t.Fatal("valid file without providers and without the warning that says so")
		}
		if len(file2.Warnings) != len(file.Warnings) {
			t.Fatal("warnings differ between runs")
		}
		seen := map[ID]bool{}
		for _, p := range file.Providers {
			if p.ID == "" || p.Name == "" || len(p.Scopes) == 0 || p.Issuer == "" || seen[p.ID] {
				t.Fatalf("accepted an incomplete provider: %+v", p)
			}
			seen[p.ID] = true
			m := p.Metadata()
			q, err := FromMetadata(m)
			if err != nil {
				t.Fatalf("FromMetadata of an accepted provider: %v\n%q", err, data)
			}
			if got := q.Metadata(); !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n%#v\n%#v", got, m)
			}
		}
	})
}
