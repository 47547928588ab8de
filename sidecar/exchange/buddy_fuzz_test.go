package exchange

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeBuddy: the one-pass decoder of an exchange body never accepts
// what the full path (duplicate check, then encoding/json) would refuse or
// read differently.
//
//	go test -run '^$' -fuzz FuzzDecodeBuddy -fuzztime 2m ./sidecar/exchange
func FuzzDecodeBuddy(f *testing.F) {
	for _, s := range []string{
		`{"provider_id":"550e8400-e29b-41d4-a716-446655440000","web_identity_token":"a.b.c"}`,
		`{"PROVIDER_ID":"550E8400-E29B-41D4-A716-446655440000","Web_Identity_Token":"x","other":[1,{"a":null}]}`,
		`{"provider_id":"550e8400-e29b-41d4-a716-446655440000","web_identity_token":"a","provider_id":"550e8400-e29b-41d4-a716-446655440001"}`,
		`{"provider_id":null,"web_identity_token":"a"}`,
		`{"provider_id":"550e8400-e29b-41d4-a716-446655440000","web_identity_token":""}`,
		`{"provider_id":"550e8400-e29b-41d4-a716-446655440000","web_identity_token":"a"} {}`,
		`{"provider_id":"550e8400-e29b-41d4-a716-446655440000","web_identity_token":"a"}  `,
		`{"provider_id":1,"web_identity_token":"a"}`,
		`{"provider_id":"550e8400-e29b-41d4-a716-446655440000","web_identity_token":"\u00e9\ud800"}`,
		`[]`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, jwt, ok := decodeBuddy(body)
		if !ok || id == "" {
			return
		}
		if k := duplicateMember(body, "provider_id", "web_identity_token"); k != "" {
			t.Fatalf("fast path accepted a body with %s twice: %q", k, body)
		}
		var in struct {
			ProviderID       *string `json:"provider_id"`
			WebIdentityToken *string `json:"web_identity_token"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("fast path accepted a body encoding/json refuses (%v): %q", err, body)
		}
		if in.ProviderID == nil || in.WebIdentityToken == nil || parseProviderID(*in.ProviderID) != id || *in.WebIdentityToken != jwt {
			t.Fatalf("fast path read %q/%q, encoding/json %v/%v: %q", id, jwt, in.ProviderID, in.WebIdentityToken, body)
		}
	})
}
