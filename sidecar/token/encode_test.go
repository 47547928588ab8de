package token

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// recordCases are records whose JSON the hand-written encoder must write
// exactly as json.Marshal does: every omitempty field empty and set, nil
// and empty slices, sorted claims, and strings that need escaping.
func recordCases() []*Record {
	full := &Record{
		ProviderID: "00000000-0000-4000-8000-000000000001", ProviderName: "GHA - deploy",
		Subject: "repo:octo-org/octo-repo:ref:refs/heads/main", Issuer: "https://token.actions.githubusercontent.com",
		Claims: map[string]string{"repository": "octo-org/octo-repo", "ref": "refs/heads/main", "actor": "octocat",
			"workflow": "CI", "sha": "a1b2", "oidc.circleci.com/vcs-origin": "github.com/x/y", "event_name": "push"},
		Scopes: []string{"WORKSPACE", "EXECUTION_RUN"}, Workspaces: []string{"my-company"},
		IPRestrictions: []string{"10.0.0.0/8", "2001:db8::/32"},
		IssuedAt:       1795000000, ExpiresAt: 1795005400, DecisionID: "01JEXAMPLE0000000000000000", Epoch: 7,
	}
	return []*Record{
		{},
		full,
		{Scopes: []string{}, Workspaces: []string{}, IPRestrictions: []string{}, Claims: map[string]string{}},
		{Scopes: nil, Workspaces: nil, IssuedAt: -1, ExpiresAt: -9223372036854775808, Epoch: -3},
		{
			ProviderName: `a "quoted" \ name <b>&amp;</b>`, Subject: "tab\there\nnewline\r\x00\x1f\x7f",
			Issuer: "unicode é ☃ 😀 \u2028 \u2029", DecisionID: "bad utf-8 \xff\xfe end",
			Claims: map[string]string{"<k>": "&v", "ü": "\\", "": "", "z": "\"", "a\u2028": "x"},
			Scopes: []string{"", "<script>", "\xc3"}, Workspaces: []string{"ws"},
		},
	}
}

func TestAppendRecordMatchesMarshal(t *testing.T) {
	for i, rec := range recordCases() {
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
		var back Record
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("record %d: encoded record does not decode: %v", i, err)
		}
	}
}

// FuzzAppendRecord: for any strings and numbers, the encoder writes what
// json.Marshal writes.
func FuzzAppendRecord(f *testing.F) {
	f.Add("p", "n", "s", "i", "k", "v", "scope", "ws", "ip", "d", int64(1), int64(2), int64(0), true)
	f.Add("<&>", "\u2028", "\x00", "\xff", "", "", "", "", "", "", int64(-1), int64(0), int64(5), false)
	f.Fuzz(func(t *testing.T, pid, name, sub, iss, ck, cv, scope, ws, ip, did string, iat, exp, epoch int64, nilWS bool) {
		rec := &Record{ProviderID: pid, ProviderName: name, Subject: sub, Issuer: iss,
			Claims: map[string]string{ck: cv, "repository": cv + ck}, Scopes: []string{scope, ws},
			Workspaces: []string{ws}, IPRestrictions: []string{ip}, IssuedAt: iat, ExpiresAt: exp, DecisionID: did, Epoch: epoch}
		if nilWS {
			rec.Workspaces, rec.IPRestrictions, rec.Claims = nil, nil, nil
		}
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := encodeRecord(rec); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkEncodeRecord: a record as an exchange stores it.
//
//	go test -run '^$' -bench EncodeRecord -benchmem ./sidecar/token/
func BenchmarkEncodeRecord(b *testing.B) {
	rec := recordCases()[1]
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeRecord(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAppendRecordCoversEveryField: a record with every field set (by
// reflection, so a field added to Record later is set too) encodes as
// json.Marshal encodes it: the hand-written encoder cannot silently drop a
// new field.
func TestAppendRecordCoversEveryField(t *testing.T) {
	var rec Record
	v := reflect.ValueOf(&rec).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanSet() {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("x-" + v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64, reflect.Int32:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"x-" + v.Type().Field(i).Name}))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"k": "x-" + v.Type().Field(i).Name}))
		default:
			t.Fatalf("Record.%s has kind %s, which this test cannot fill: extend it and appendRecord", v.Type().Field(i).Name, f.Kind())
		}
	}
	want, err := json.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodeRecord(&rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("a record with every field set:\n got %s\nwant %s\n(a field of Record that appendRecord does not write?)", got, want)
	}
}
