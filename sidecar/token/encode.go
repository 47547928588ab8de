package token

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendRecord appends rec's JSON to buf: byte for byte what
// json.Marshal(rec) makes (TestAppendRecordMatchesMarshal,
// FuzzAppendRecord), without reflection. A record is encoded on every
// exchange; the reflective encoder cost about as much as the rest of the
// store's client work.
func appendRecord(buf []byte, rec *Record) []byte {
	buf = slices.Grow(buf, recordSize(rec))
	buf = append(buf, `{"provider_id":`...)
	buf = appendString(buf, rec.ProviderID)
	buf = append(buf, `,"provider_name":`...)
	buf = appendString(buf, rec.ProviderName)
	buf = append(buf, `,"sub":`...)
	buf = appendString(buf, rec.Subject)
	buf = append(buf, `,"iss":`...)
	buf = appendString(buf, rec.Issuer)
	if len(rec.Claims) > 0 { // omitempty
		buf = append(buf, `,"claims":{`...)
		keys := make([]string, 0, 16) // on the stack for up to 16 claims
		for k := range rec.Claims {
			keys = append(keys, k)
		}
		slices.Sort(keys) // json.Marshal sorts map keys
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			buf = appendString(buf, rec.Claims[k])
		}
		buf = append(buf, '}')
	}
	buf = append(buf, `,"scopes":`...)
	buf = appendStrings(buf, rec.Scopes)
	buf = append(buf, `,"workspaces":`...)
	buf = appendStrings(buf, rec.Workspaces)
	if len(rec.IPRestrictions) > 0 { // omitempty
		buf = append(buf, `,"ip_restrictions":`...)
		buf = appendStrings(buf, rec.IPRestrictions)
	}
	buf = append(buf, `,"iat":`...)
	buf = strconv.AppendInt(buf, rec.IssuedAt, 10)
	buf = append(buf, `,"exp":`...)
	buf = strconv.AppendInt(buf, rec.ExpiresAt, 10)
	if rec.DecisionID != "" { // omitempty
		buf = append(buf, `,"decision_id":`...)
		buf = appendString(buf, rec.DecisionID)
	}
	if rec.Epoch != 0 { // omitempty
		buf = append(buf, `,"epoch":`...)
		buf = strconv.AppendInt(buf, rec.Epoch, 10)
	}
	return append(buf, '}')
}

// recordSize is about the length of rec's JSON when no string needs
// escaping: the member names and punctuation, the strings, 20 bytes per number.
func recordSize(rec *Record) int {
	n := 160 + len(rec.ProviderID) + len(rec.ProviderName) + len(rec.Subject) + len(rec.Issuer) + len(rec.DecisionID)
	for k, v := range rec.Claims {
		n += len(k) + len(v) + 6
	}
	for _, ss := range [][]string{rec.Scopes, rec.Workspaces, rec.IPRestrictions} {
		for _, s := range ss {
			n += len(s) + 3
		}
	}
	return n
}

// appendStrings appends ss as a JSON array; nil is null, as json.Marshal
// writes a nil slice.
func appendStrings(buf []byte, ss []string) []byte {
	if ss == nil {
		return append(buf, "null"...)
	}
	buf = append(buf, '[')
	for i, s := range ss {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, s)
	}
	return append(buf, ']')
}

// appendString appends s as a JSON string. Printable ASCII that
// json.Marshal writes unchanged is copied; any other string (escapes, HTML
// characters, control characters, non-ASCII, invalid UTF-8) is left to
// json.Marshal itself, so the two encoders cannot differ.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
