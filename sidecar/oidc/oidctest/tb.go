package oidctest

// TB is the part of testing.TB the helpers below use. It is an interface
// of its own so that oidctest does not import "testing" (the product's demo
// command links this package); any *testing.T or *testing.B satisfies it.
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// Start starts an issuer for the test and closes it when the test ends.
// An error fails the test.
func Start(t TB, opts ...Option) *Issuer {
	t.Helper()
	iss, err := NewIssuer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	return iss
}

// MustSign is iss.Sign; an error fails the test.
func MustSign(t TB, iss *Issuer, claims map[string]any, opts ...SignOption) string {
	t.Helper()
	s, err := iss.Sign(claims, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// MustSignRaw is iss.SignRaw; an error fails the test.
func MustSignRaw(t TB, iss *Issuer, payload []byte, opts ...SignOption) string {
	t.Helper()
	s, err := iss.SignRaw(payload, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// MustHandSign is HandSign; an error fails the test.
func MustHandSign(t TB, alg string, key any, header, payload []byte) string {
	t.Helper()
	s, err := HandSign(alg, key, header, payload)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
