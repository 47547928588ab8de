package provider

import (
	"strings"
	"testing"
)

// TestNumberOutOfRangeRefusedAtLoad: a literal beyond float64's range
// (compared as a number, it makes every evaluation fail) is refused with
// file:line:col (issue 11 #3).
func TestNumberOutOfRangeRefusedAtLoad(t *testing.T) {
	for _, c := range []struct{ cond, want string }{
		{`'a is 1e400'`, `p.yaml:7:29: providers[0].trust_conditions: number 1e400 is beyond the range`},
		{`'a is "1e400"'`, `p.yaml:7:29: providers[0].trust_conditions: value "1e400" reads as a number that is beyond the range`},
	} {
		src := `providers:
  - id: 550e8400-e29b-41d4-a716-446655440000
    name: x
    type: other
    issuer: https://issuer.example.com
    scopes: [WORKSPACE]
    trust_conditions: ` + c.cond + "\n"
		_, err := Parse("p.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.cond, err, c.want)
		}
	}
}

// TestWeakOwnerPinsRefused: repository_owner is "", "*" or true does not
// pin an owner and is refused, as is a non-numeric repository_owner_id; a
// literal owner name is accepted (issue 11 #10).
func TestWeakOwnerPinsRefused(t *testing.T) {
	file := func(cond string) []byte {
		return []byte(`providers:
  - id: 550e8400-e29b-41d4-a716-446655440000
    name: x
    type: github_actions
    scopes: [WORKSPACE]
    trust_conditions: '` + cond + "'\n")
	}
	for _, c := range []struct{ cond, want string }{
		{`repository_owner is ""`, `p.yaml:6:23: providers[0].trust_conditions: repository_owner is "" does not pin an owner: a pin must be the owner's literal name`},
		{`repository_owner is "*"`, `repository_owner is "*" does not pin an owner: a pin must be the owner's literal name (letters, digits, "-" and "_"; "is" takes no wildcards)`},
		{`repository_owner is "octo-*"`, `repository_owner is "octo-*" does not pin an owner`},
		{`repository_owner is true`, `repository_owner is true does not pin an owner: a boolean is not an owner name`},
		{`repository_owner is false and ref is "refs/heads/main"`, `repository_owner is false does not pin an owner`},
		{`repository_owner_id is "octo-org"`, `repository_owner_id is "octo-org" does not pin an owner: repository_owner_id is GitHub's numeric id of the owner`},
		{`repository_owner_id is ""`, `repository_owner_id is "" does not pin an owner`},
		// A weak pin beside a good one is still refused: it is a mistake.
		{`repository_owner_id is "123" and repository_owner is ""`, `repository_owner is "" does not pin an owner`},
	} {
		_, err := Parse("p.yaml", file(c.cond))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v\nwant it to contain %q", c.cond, err, c.want)
		}
	}
	for _, cond := range []string{`repository_owner is "octo-org"`, `repository_owner is "Octo_Org-2"`, `repository_owner_id is 123456`, `repository_owner_id is "42"`} {
		if _, err := Parse("p.yaml", file(cond)); err != nil {
			t.Errorf("%s: %v", cond, err)
		}
	}
}
