package oidc

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"sync"
	"testing"
)

var (
	rsKeysOnce sync.Once
	rsKeys     []*rsa.PrivateKey
)

// testRSAKeys: a 2048-bit and a 3072-bit key, made once.
func testRSAKeys(tb testing.TB) []*rsa.PrivateKey {
	tb.Helper()
	rsKeysOnce.Do(func() {
		for _, bits := range []int{2048, 3072} {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			rsKeys = append(rsKeys, k)
		}
	})
	return rsKeys
}

// agree checks that rs256Key.verify and crypto/rsa.VerifyPKCS1v15 give the
// same answer for sig over msg.
func agree(t *testing.T, pub *rsa.PublicKey, msg, sig []byte) bool {
	t.Helper()
	k := newRS256Key(pub)
	if k == nil {
		t.Fatalf("key of %d bits not prepared", pub.N.BitLen())
	}
	sum := sha256.Sum256(msg)
	want := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
	got := k.verify(&sum, sig)
	if (got == nil) != (want == nil) {
		t.Fatalf("rs256 verify %v, crypto/rsa %v (sig %x)", got, want, sig)
	}
	if got != nil && !errors.Is(got, rsa.ErrVerification) {
		t.Fatalf("rs256 verify error %v, want rsa.ErrVerification", got)
	}
	return got == nil
}

// TestRS256MatchesCryptoRSA: valid signatures verify and every alteration
// is refused, exactly as crypto/rsa answers: flipped bits, other messages,
// other hashes, wrong lengths, values at or above the modulus, and forged
// blocks with a wrong padding (Bleichenbacher-style low-exponent forgeries
// are refused because the whole block is compared).
func TestRS256MatchesCryptoRSA(t *testing.T) {
	for _, priv := range testRSAKeys(t) {
		pub := &priv.PublicKey
		msg := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0")
		sum := sha256.Sum256(msg)
		sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		if !agree(t, pub, msg, sig) {
			t.Fatal("a valid signature did not verify")
		}
		if agree(t, pub, []byte("other"), sig) {
			t.Fatal("a signature verified another message")
		}
		for i := 0; i < len(sig)*8; i += 61 {
			bad := append([]byte(nil), sig...)
			bad[i/8] ^= 1 << (i % 8)
			if agree(t, pub, msg, bad) {
				t.Fatalf("bit %d flipped: verified", i)
			}
		}
		// A SHA-512 signature of the same message.
		s512 := crypto.SHA512.New()
		s512.Write(msg)
		sig512, _ := rsa.SignPKCS1v15(nil, priv, crypto.SHA512, s512.Sum(nil))
		agree(t, pub, msg, sig512)
		// Lengths.
		agree(t, pub, msg, sig[1:])
		agree(t, pub, msg, append([]byte{0}, sig...))
		agree(t, pub, msg, nil)
		// n, n+1, n-1 and all ones as signatures.
		size := (pub.N.BitLen() + 7) / 8
		for _, v := range []*big.Int{pub.N, new(big.Int).Add(pub.N, big.NewInt(1)), new(big.Int).Sub(pub.N, big.NewInt(1)), big.NewInt(0), big.NewInt(1)} {
			agree(t, pub, msg, v.FillBytes(make([]byte, size)))
		}
		ones := make([]byte, size)
		for i := range ones {
			ones[i] = 0xff
		}
		agree(t, pub, msg, ones)
		// Signatures (made with the private key) of blocks that are not the
		// valid encoding: short padding, garbage after the hash, another
		// DigestInfo.
		for _, em := range forgedBlocks(size, sum[:]) {
			m := new(big.Int).SetBytes(em)
			s := new(big.Int).Exp(m, priv.D, pub.N)
			if agree(t, pub, msg, s.FillBytes(make([]byte, size))) {
				t.Fatalf("a block that is not the PKCS #1 v1.5 encoding verified: %x", em)
			}
		}
	}
}

// forgedBlocks are near-miss encodings of hashed.
func forgedBlocks(size int, hashed []byte) [][]byte {
	valid := func() []byte {
		em := make([]byte, size)
		em[1] = 1
		t := append(append([]byte(nil), sha256DigestInfo...), hashed...)
		for i := 2; i < size-len(t)-1; i++ {
			em[i] = 0xff
		}
		copy(em[size-len(t):], t)
		return em
	}
	var out [][]byte
	e := valid()
	e[1] = 2 // block type 2
	out = append(out, e)
	e = valid()
	e[10] = 0xfe // a padding byte that is not 0xff
	out = append(out, e)
	e = valid()
	e[size-len(hashed)-len(sha256DigestInfo)+5] ^= 1 // another DigestInfo
	out = append(out, e)
	// Hash right after a short padding, garbage filling the end.
	e = make([]byte, size)
	e[1] = 1
	for i := 2; i < 10; i++ {
		e[i] = 0xff
	}
	copy(e[11:], sha256DigestInfo)
	copy(e[11+len(sha256DigestInfo):], hashed)
	for i := 11 + len(sha256DigestInfo) + len(hashed); i < size; i++ {
		e[i] = 0x42
	}
	out = append(out, e)
	return out
}

// TestRS256KeyChecks: keys crypto/rsa refuses are not prepared (they keep
// the general path, which refuses them).
func TestRS256KeyChecks(t *testing.T) {
	pub := testRSAKeys(t)[0].PublicKey
	if newRS256Key(&pub) == nil {
		t.Fatal("a 2048-bit key with e=65537 was not prepared")
	}
	for name, k := range map[string]rsa.PublicKey{
		"even e":       {N: pub.N, E: 65536},
		"e=1":          {N: pub.N, E: 1},
		"e too large":  {N: pub.N, E: 1 << 31},
		"even n":       {N: new(big.Int).Add(pub.N, big.NewInt(1)), E: 65537},
		"short n":      {N: big.NewInt(0).SetBytes(pub.N.Bytes()[:100]), E: 65537},
		"no n":         {E: 65537},
		"negative n":   {N: new(big.Int).Neg(pub.N), E: 65537},
		"negative e":   {N: pub.N, E: -3},
		"zero modulus": {N: big.NewInt(0), E: 65537},
	} {
		if newRS256Key(&k) != nil {
			t.Errorf("%s: prepared", name)
		}
	}
}

// FuzzRS256MatchesCryptoRSA: for any signature bytes and message, the
// prepared key answers as crypto/rsa does.
func FuzzRS256MatchesCryptoRSA(f *testing.F) {
	priv := testRSAKeys(f)[0]
	sum := sha256.Sum256([]byte("m"))
	sig, _ := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, sum[:])
	f.Add([]byte("m"), sig)
	f.Add([]byte("m"), sig[:10])
	f.Add([]byte(""), make([]byte, len(sig)))
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		agree(t, &priv.PublicKey, msg, sig)
	})
}
