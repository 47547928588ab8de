package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// keyFamily is what an algorithm needs from a key.
type keyFamily uint8

const (
	famNone keyFamily = iota
	famRSA
	famP256
	famP384
	famP521
)

func (f keyFamily) String() string {
	switch f {
	case famRSA:
		return "RSA"
	case famP256:
		return "EC P-256"
	case famP384:
		return "EC P-384"
	case famP521:
		return "EC P-521"
	}
	return "unsupported"
}

// algFamilies lists every algorithm this package can verify and the key
// family each one needs. HMAC and "none" are deliberately absent.
var algFamilies = map[string]keyFamily{
	"RS256": famRSA, "RS384": famRSA, "RS512": famRSA,
	"PS256": famRSA, "PS384": famRSA, "PS512": famRSA,
	"ES256": famP256, "ES384": famP384, "ES512": famP521,
}

// DefaultAlgorithms returns the default algorithm allow-list: RS256, RS384,
// RS512, ES256, ES384, PS256.
func DefaultAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}
}

// minRSABits is the smallest RSA modulus accepted from a JWKS.
const minRSABits = 2048

// pubKey is one usable verification key of an issuer.
type pubKey struct {
	kid string
	alg string // the JWK's "alg", or "" (usable with every alg of its family)
	fam keyFamily
	key any // *rsa.PublicKey or *ecdsa.PublicKey
}

func (k *pubKey) fits(alg string) bool {
	if algFamilies[alg] != k.fam {
		return false
	}
	return k.alg == "" || k.alg == alg
}

func (k *pubKey) describe() string {
	if k.alg != "" {
		return fmt.Sprintf("%s, alg %s", k.fam, k.alg)
	}
	return k.fam.String()
}

// keySet is an immutable snapshot of an issuer's usable keys.
type keySet struct {
	fetchedAt time.Time
	jwksURI   string
	byKID     map[string][]*pubKey
	all       []*pubKey
	skipped   int // JWKs that were present but not usable
}

// parseJWKS turns a JWKS document into a keySet. Keys whose "use" is present
// and not "sig", keys of other types (oct, OKP, ...), RSA keys under 2048
// bits, unparseable entries and private keys are skipped. An empty result is
// an error, so that a refetch that returns no usable key never replaces a
// good set.
func parseJWKS(body []byte, fetchedAt time.Time, uri string) (*keySet, error) {
	// The strict decoder first: duplicate names or absurd nesting reject the
	// whole document before jwx sees it.
	if _, err := decodeObject(body, maxJSONDepth); err != nil {
		return nil, fmt.Errorf("JWKS is not valid JSON: %w", err)
	}
	set, err := jwk.Parse(body, jwk.WithStrictKeySetParsing(false), jwk.WithMaxKeys(100))
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	ks := &keySet{fetchedAt: fetchedAt, jwksURI: uri, byKID: make(map[string][]*pubKey, set.Len())}
	for i := 0; i < set.Len(); i++ {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		pk := usableKey(k)
		if pk == nil {
			ks.skipped++
			continue
		}
		ks.all = append(ks.all, pk)
		ks.byKID[pk.kid] = append(ks.byKID[pk.kid], pk)
	}
	if len(ks.all) == 0 {
		return nil, fmt.Errorf("JWKS has no usable signing key (%d skipped)", ks.skipped)
	}
	return ks, nil
}

func usableKey(k jwk.Key) *pubKey {
	if jwk.IsUnsupportedKey(k) {
		return nil
	}
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return nil
	}
	if priv, err := jwk.IsPrivateKey(k); err != nil || priv {
		// A JWKS that publishes private keys is broken; do not use it.
		return nil
	}
	if err := k.Validate(); err != nil {
		return nil
	}
	pk := &pubKey{}
	if kid, ok := k.KeyID(); ok {
		pk.kid = kid
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return nil
	}
	switch key := raw.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return nil
		}
		pk.fam, pk.key = famRSA, key
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256():
			pk.fam = famP256
		case elliptic.P384():
			pk.fam = famP384
		case elliptic.P521():
			pk.fam = famP521
		default:
			return nil
		}
		pk.key = key
	default:
		return nil
	}
	if a, ok := k.Algorithm(); ok {
		alg := a.String()
		if algFamilies[alg] != pk.fam {
			// An alg that does not fit the key (or HS256 on an RSA key).
			return nil
		}
		pk.alg = alg
	}
	return pk
}
