package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"
)

// HandSign builds a compact JWS by hand, with only the standard library, so
// that adversarial tokens do not depend on what a JOSE library is willing
// to produce. alg selects the signature: RS*/PS* need an *rsa.PrivateKey,
// ES* an *ecdsa.PrivateKey, HS* a []byte secret, "none" nothing (an empty
// signature). header is used exactly as given (its "alg" is not checked or
// added).
func HandSign(alg string, key any, header, payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	var h crypto.Hash
	if len(alg) >= 3 {
		switch alg[len(alg)-3:] {
		case "256":
			h = crypto.SHA256
		case "384":
			h = crypto.SHA384
		case "512":
			h = crypto.SHA512
		}
	}
	digest := func() []byte {
		w := h.New()
		w.Write([]byte(input))
		return w.Sum(nil)
	}
	var sig []byte
	var err error
	switch {
	case strings.EqualFold(alg, "none"):
	case h == 0:
		return "", fmt.Errorf("oidctest.HandSign: unsupported alg %q", alg)
	case strings.HasPrefix(alg, "HS"):
		secret, ok := key.([]byte)
		if !ok {
			return "", fmt.Errorf("oidctest.HandSign: %s needs a []byte secret, got %T", alg, key)
		}
		m := hmac.New(h.New, secret)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return "", fmt.Errorf("oidctest.HandSign: %s needs an *rsa.PrivateKey, got %T", alg, key)
		}
		if alg[0] == 'R' {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, digest())
		} else {
			sig, err = rsa.SignPSS(rand.Reader, k, h, digest(), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
	case strings.HasPrefix(alg, "ES"):
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return "", fmt.Errorf("oidctest.HandSign: %s needs an *ecdsa.PrivateKey, got %T", alg, key)
		}
		r, s, e := ecdsa.Sign(rand.Reader, k, digest())
		if err = e; err == nil {
			size := (k.Curve.Params().BitSize + 7) / 8
			sig = make([]byte, 2*size)
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
		}
	default:
		return "", fmt.Errorf("oidctest.HandSign: unsupported alg %q", alg)
	}
	if err != nil {
		return "", err
	}
	return input + "." + enc.EncodeToString(sig), nil
}
