package glyph

import "testing"

func TestFor(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want Marks
	}{
		{map[string]string{"LANG": "en_US.UTF-8"}, unicodeMarks},
		{map[string]string{"LANG": "C.utf8"}, unicodeMarks},
		{map[string]string{"LANG": "C"}, asciiMarks},
		{map[string]string{}, asciiMarks},
		{map[string]string{"LC_ALL": "POSIX", "LANG": "en_US.UTF-8"}, asciiMarks}, // LC_ALL wins
		{map[string]string{"LC_CTYPE": "de_DE.UTF-8", "LANG": "C"}, unicodeMarks},
	} {
		if got := For(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("%v: %v, want %v", c.env, got, c.want)
		}
	}
}
