package oidc

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func stdDecode(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil { // "null"
		return nil, errTrailing
	}
	if d.More() {
		return nil, errTrailing
	}
	if _, err := d.Token(); err == nil {
		return nil, errTrailing
	}
	return m, nil
}

var errTrailing = &jsonError{0, "trailing"}

func TestDecodeObjectValid(t *testing.T) {
	for _, doc := range []string{
		`{}`,
		` { } `,
		`{"a":1}`,
		`{"a":-0.5e+10,"b":0,"c":-0,"d":1E2,"e":12.0e-3}`,
		`{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00x"}`,
		`{"a":[],"b":{},"c":[{}],"d":[1,"x",true,false,null,{"e":[1]}]}`,
		`{"nul":"\u0000"}`,
		`{"":1}`,
		"{\"utf8\":\"héllo 世界 🚀\"}",
		`{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}`, // same name at different places is fine
		"{\n\t\"a\" : 1 ,\r\n \"b\":2}\n",
	} {
		got, err := decodeObject([]byte(doc), 32)
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		want, err := stdDecode([]byte(doc))
		if err != nil {
			t.Fatalf("%s: std: %v", doc, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", doc, got, want)
		}
	}
}

func TestDecodeObjectInvalid(t *testing.T) {
	for _, doc := range []string{
		``, ` `, `[]`, `"x"`, `1`, `null`, `true`,
		`{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`, `{a:1}`, `{'a':1}`,
		`{"a":1}{}`, `{"a":1} x`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":+1}`,
		`{"a":NaN}`, `{"a":Infinity}`, `{"a":tru}`, `{"a":nul}`, `{"a":[1,]}`, `{"a":[1 2]}`,
		`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, `{"a":"` + "\x01" + `"}`, `{"a":"unterminated}`,
		`{"a":"\ud800"}`, `{"a":"\udc00"}`, `{"a":"\ud800\u0041"}`, `{"a":"\ud800x"}`,
		"{\"a\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"\xc0\xaf\":1}",
		`{"a":1,"a":1}`, `{"a":1,"\u0061":2}`, `{"x":{"b":1,"b":2}}`, `{"x":[{"b":1,"b":2}]}`,
		`{"a":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`,
		`{"a":` + strings.Repeat("[", 100000) + `}`,
		"{\"a\":1}\x00",
	} {
		if m, err := decodeObject([]byte(doc), 32); err == nil {
			t.Errorf("%q accepted: %v", doc, m)
		}
	}
}

func TestDecodeObjectDepth(t *testing.T) {
	ok := `{"a":` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + `}`
	if _, err := decodeObject([]byte(ok), 32); err != nil {
		t.Errorf("depth 32: %v", err)
	}
	_, err := decodeObject([]byte(`{"a":`+strings.Repeat(`{"b":`, 32)+`1`+strings.Repeat(`}`, 33)), 32)
	if err == nil || !strings.Contains(err.Error(), "deeper than 32") {
		t.Errorf("depth 33: %v", err)
	}
}

// FuzzDecodeObject checks the strict decoder against encoding/json: whatever
// it accepts, encoding/json accepts with the same result; whatever
// encoding/json accepts as an object with valid UTF-8, no duplicate names
// and shallow nesting, it accepts too.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":null}],"c":"\u00e9"}`, `{"a":1,"a":2}`, `{"a":-1.5e3}`, `{"a":"\ud83d\ude00"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeObject(data, 32)
		want, stdErr := stdDecode(data)
		if err == nil {
			if stdErr != nil {
				t.Fatalf("accepted what encoding/json rejects (%v): %q", stdErr, data)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("differs from encoding/json on %q:\n got %#v\nwant %#v", data, got, want)
			}
			return
		}
		if stdErr == nil && utf8.Valid(data) && !bytes.Contains(data, []byte(`\u`)) && !bytes.ContainsAny(data, "[{") {
			// A flat object without escapes: only duplicates can explain a rejection.
			if !strings.Contains(err.Error(), "duplicate") {
				t.Fatalf("rejected what encoding/json accepts: %v: %q", err, data)
			}
		}
	})
}

// TestDecodeObjectOwnsItsStrings: values slice the decoder's own copy of
// the document, so a caller reusing its buffer cannot change decoded claims.
func TestDecodeObjectOwnsItsStrings(t *testing.T) {
	data := []byte(`{"repository":"octo-org/octo-repo","run_id":"42","n":12.5,"nested":{"k":"v"},"esc":"a\u0062c"}`)
	m, err := decodeObject(data, maxJSONDepth)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'X'
	}
	nested, _ := m["nested"].(map[string]any)
	if m["repository"] != "octo-org/octo-repo" || m["run_id"] != "42" || m["n"] != json.Number("12.5") ||
		nested["k"] != "v" || m["esc"] != "abc" {
		t.Fatalf("decoded values changed with the input buffer: %v", m)
	}
}
