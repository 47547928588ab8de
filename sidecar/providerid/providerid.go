// Package providerid is the provider ID: its type and its one parse rule.
// It imports nothing of the project so that every layer can use it —
// provider (the files and the metadata), trust (module paths), exchange
// (provider_id and client_id) — and is re-exported as provider.ID and
// provider.ParseID.
package providerid

import (
	"fmt"

	"github.com/google/uuid"
)

// ID is a provider ID: a UUID other than the nil UUID, in canonical form
// (36 characters, lower-case hex, 8-4-4-4-12). Only Parse makes one from
// text; the zero ID means "none".
type ID string

// String returns the ID's text.
func (id ID) String() string { return string(id) }

// Example is a well-formed ID for messages and documentation.
const Example = "550e8400-e29b-41d4-a716-446655440000"

// Error says why a text is not a provider ID.
type Error struct {
	Input string
	// Canonical is the canonical form of Input when Input is a UUID
	// written another way (upper case, braces, urn:uuid:), else "".
	Canonical string
	// Nil is true for the nil UUID.
	Nil bool
}

func (e *Error) Error() string {
	switch {
	case e.Nil:
		return "the nil UUID is a placeholder; generate a real one (e.g. with uuidgen, or let `oidc-sidecar provider new` do it)"
	case e.Canonical != "":
		return fmt.Sprintf("%q is not in canonical form; write %s", e.Input, e.Canonical)
	}
	return fmt.Sprintf("%q is not a UUID; write it as 8-4-4-4-12 hex digits, e.g. %s", e.Input, Example)
}

// Parse returns s as an ID if it is one, or an *Error. It is the only rule:
// files and bundles must spell IDs canonically; an edge that accepts other
// spellings (the exchange accepts upper-case hex, which some CI systems
// send) canonicalises first, e.g. Parse(strings.ToLower(s)), so that the
// rule stays this one.
func Parse(s string) (ID, error) {
	if len(s) == 36 && canonical(s) {
		if s == "00000000-0000-0000-0000-000000000000" {
			return "", &Error{Input: s, Nil: true}
		}
		return ID(s), nil
	}
	e := &Error{Input: s}
	if u, err := uuid.Parse(s); err == nil {
		if u == uuid.Nil {
			e.Nil = true
		} else {
			e.Canonical = u.String()
		}
	}
	return "", e
}

func canonical(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
