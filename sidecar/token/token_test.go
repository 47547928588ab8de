package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
)

func TestNewFormat(t *testing.T) {
	tok, hash, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != Len || Len != 53 {
		t.Fatalf("len(%q) = %d, Len = %d, want 53", tok, len(tok), Len)
	}
	if !strings.HasPrefix(tok, "ocs_") {
		t.Fatalf("%q lacks prefix", tok)
	}
	for _, c := range tok[len(Prefix):] {
		if !strings.ContainsRune(base62Alphabet, c) {
			t.Fatalf("%q: %q is not base62", tok, c)
		}
	}
	if !WellFormed(tok) {
		t.Fatalf("WellFormed(%q) = false", tok)
	}
	if hash != Hash(tok) || len(hash) != HashLen || !validHash(hash) {
		t.Fatalf("hash %q, Hash(tok) %q", hash, Hash(tok))
	}
	// The checksum is CRC32 (IEEE) of the 43-char random part, 6 base62 digits.
	body, sum := tok[4:47], tok[47:]
	if got := base62Big(big.NewInt(int64(crc32.ChecksumIEEE([]byte(body)))), 6); got != sum {
		t.Fatalf("checksum %q, want %q", sum, got)
	}
}

// base62Big is the slow reference encoding.
func base62Big(n *big.Int, width int) string {
	out := make([]byte, width)
	n = new(big.Int).Set(n)
	b62 := big.NewInt(62)
	m := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, b62, m)
		out[i] = base62Alphabet[m.Int64()]
	}
	if n.Sign() != 0 {
		panic("does not fit")
	}
	return string(out)
}

func TestBase62MatchesMathBig(t *testing.T) {
	cases := [][RandomBytes]byte{{}, {31: 1}, {0: 1}}
	var ff [RandomBytes]byte
	for i := range ff {
		ff[i] = 0xFF
	}
	cases = append(cases, ff)
	for range 2000 {
		var r [RandomBytes]byte
		rand.Read(r[:])
		cases = append(cases, r)
	}
	for _, raw := range cases {
		var got [randomLen]byte
		encodeBase62_256(&raw, got[:])
		want := base62Big(new(big.Int).SetBytes(raw[:]), randomLen)
		if string(got[:]) != want {
			t.Fatalf("encode(%x) = %s, want %s", raw, got, want)
		}
		if tok := format(&raw); !WellFormed(tok) {
			t.Fatalf("format(%x) = %q not WellFormed", raw, tok)
		}
	}
}

func TestWellFormedRejects(t *testing.T) {
	tok, _, err := New()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":               "",
		"prefix only":         Prefix,
		"wrong prefix":        "ghp_" + tok[4:],
		"upper prefix":        "OCS_" + tok[4:],
		"no prefix":           tok[4:],
		"too short":           tok[:Len-1],
		"too long":            tok + "0",
		"bad char body":       tok[:10] + "-" + tok[11:],
		"bad char checksum":   tok[:Len-1] + "_",
		"non-ascii":           tok[:10] + "é" + tok[12:],
		"space":               tok[:Len-1] + " ",
		"body changed":        flip(tok, 10),
		"checksum changed":    flip(tok, Len-1),
		"first body char":     flip(tok, 4),
		"whitespace around":   " " + tok[:Len-1],
		"bearer scheme":       "Bearer " + tok,
		"hash instead of tok": Hash(tok),
	}
	for name, s := range cases {
		if WellFormed(s) {
			t.Errorf("%s: WellFormed(%q) = true", name, s)
		}
	}
	// Every single-character substitution in the random part is caught by CRC32.
	for i := len(Prefix); i < len(Prefix)+randomLen; i++ {
		if WellFormed(flip(tok, i)) {
			t.Errorf("substitution at %d not detected", i)
		}
	}
}

func TestNewUnique(t *testing.T) {
	const n = 100_000
	seen := make(map[string]struct{}, n)
	hashes := make(map[string]struct{}, n)
	for range n {
		tok, h, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := seen[tok]; dup {
			t.Fatalf("duplicate token %q", tok)
		}
		if _, dup := hashes[h]; dup {
			t.Fatalf("duplicate hash %q", h)
		}
		seen[tok], hashes[h] = struct{}{}, struct{}{}
	}
}

func TestHashStable(t *testing.T) {
	// Known SHA-256 test vector.
	if got := Hash("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("Hash(abc) = %s", got)
	}
	tok, h, _ := New()
	sum := sha256.Sum256([]byte(tok))
	if h != hex.EncodeToString(sum[:]) || Hash(tok) != h || Hash(tok) != Hash(tok) {
		t.Fatal("hash is not the hex SHA-256 of the whole token")
	}
	if strings.ToLower(h) != h {
		t.Fatal("hash is not lowercase")
	}
}

func TestValidHash(t *testing.T) {
	good := Hash("x")
	for _, h := range []string{"", good[:63], good + "0", strings.ToUpper(good), "g" + good[1:]} {
		if validHash(h) {
			t.Errorf("validHash(%q) = true", h)
		}
	}
	if !validHash(good) {
		t.Error("validHash(Hash(x)) = false")
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := New(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := New(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkWellFormed(b *testing.B) {
	tok, _, _ := New()
	b.ReportAllocs()
	for b.Loop() {
		if !WellFormed(tok) {
			b.Fatal("not well formed")
		}
	}
}

func BenchmarkHash(b *testing.B) {
	tok, _, _ := New()
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash(tok)
	}
}
