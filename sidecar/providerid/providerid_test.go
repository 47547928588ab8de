package providerid

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in, want, err string
	}{
		{in: Example, want: Example},
		{in: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", want: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
		{in: "550E8400-E29B-41D4-A716-446655440000", err: `"550E8400-E29B-41D4-A716-446655440000" is not in canonical form; write 550e8400-e29b-41d4-a716-446655440000`},
		{in: "{550e8400-e29b-41d4-a716-446655440000}", err: "is not in canonical form; write 550e8400-e29b-41d4-a716-446655440000"},
		{in: "urn:uuid:550e8400-e29b-41d4-a716-446655440000", err: "is not in canonical form"},
		{in: "550e8400e29b41d4a716446655440000", err: "is not in canonical form"},
		{in: "00000000-0000-0000-0000-000000000000", err: "the nil UUID is a placeholder"},
		{in: "", err: `"" is not a UUID`},
		{in: "a/../b", err: `"a/../b" is not a UUID`},
		{in: "550e8400-e29b-41d4-a716-44665544000g", err: "is not a UUID"},
		{in: "550e8400-e29b-41d4-a716_446655440000", err: "is not a UUID"},
	} {
		got, err := Parse(tt.in)
		if tt.err == "" {
			if err != nil || string(got) != tt.want {
				t.Errorf("Parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || got != "" || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Parse(%q) = %q, %v; want an *Error containing %q", tt.in, got, err, tt.err)
		}
	}
	// The exchange edge's canonicalisation: lower-casing upper-case hex
	// gives the same ID.
	if id, err := Parse(strings.ToLower("550E8400-E29B-41D4-A716-446655440000")); err != nil || id != Example {
		t.Errorf("lower-cased upper-case UUID: %q, %v", id, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example)
	f.Add("550E8400-E29B-41D4-A716-446655440000")
	f.Add("{550e8400-e29b-41d4-a716-446655440000}")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if id != "" {
				t.Fatalf("Parse(%q) returned %q with an error", s, id)
			}
			return
		}
		if string(id) != s || len(s) != 36 || strings.ToLower(s) != s {
			t.Fatalf("Parse(%q) = %q", s, id)
		}
		// IDs are safe in file names and Rego package paths.
		if strings.ContainsAny(s, `/\."`) {
			t.Fatalf("Parse(%q) accepted an unsafe id", s)
		}
	})
}
