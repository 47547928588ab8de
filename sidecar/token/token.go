package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// Token format.
//
//	ocs_ <43 base62 chars: 32 random bytes> <6 base62 chars: CRC32 of the 43 chars>
//
// The fixed prefix lets secret scanners recognise leaked tokens; the checksum lets
// them (and WellFormed) reject look-alikes without a store round trip. The random
// part carries the full 256 bits of entropy (62^43 > 2^256).
const (
	// Prefix starts every token minted by New.
	Prefix = "ocs_"

	// RandomBytes is the number of crypto/rand bytes in a token.
	RandomBytes = 32
	// randomLen is the length of the base62 encoding of RandomBytes (fixed, zero-padded).
	randomLen = 43
	// checksumLen is the length of the base62 CRC32 checksum (fixed, zero-padded).
	checksumLen = 6

	// Len is the total length of a token string.
	Len = len(Prefix) + randomLen + checksumLen

	// HashLen is the length of Hash's result (hex SHA-256).
	HashLen = 2 * sha256.Size
)

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Value maps an ASCII byte to its base62 digit value, or 0xFF.
var base62Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = byte(i)
	}
	return t
}()

// New mints a token from 32 bytes of crypto/rand and returns it with its Hash.
// Only the hash may be stored; the token itself is handed to the client once.
func New() (tok string, hash string, err error) {
	var raw [RandomBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("token: reading random bytes: %w", err)
	}
	tok = format(&raw)
	return tok, Hash(tok), nil
}

// format builds the token string for the given random bytes.
func format(raw *[RandomBytes]byte) string {
	var buf [Len]byte
	copy(buf[:], Prefix)
	body := buf[len(Prefix) : len(Prefix)+randomLen]
	encodeBase62_256(raw, body)
	putChecksum(buf[len(Prefix)+randomLen:], checksum(body))
	return string(buf[:])
}

// Hash returns the lowercase hex SHA-256 of the whole token string. This is the
// only form in which a token is stored or logged.
func Hash(tok string) string {
	var sum [sha256.Size]byte
	if len(tok) <= Len {
		var buf [Len]byte // token-sized input: hash from the stack, no copy on the heap
		n := copy(buf[:], tok)
		sum = sha256.Sum256(buf[:n])
	} else {
		sum = sha256.Sum256([]byte(tok))
	}
	var out [HashLen]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// WellFormed reports whether tok has the shape of a token minted by New: prefix,
// length, base62 alphabet and a matching checksum. It does not say whether the
// token was ever issued or is still valid; it only lets callers reject garbage
// cheaply, without a store round trip.
func WellFormed(tok string) bool {
	if len(tok) != Len || tok[:len(Prefix)] != Prefix {
		return false
	}
	rest := tok[len(Prefix):]
	for i := 0; i < len(rest); i++ {
		if base62Value[rest[i]] == 0xFF {
			return false
		}
	}
	var want [checksumLen]byte
	putChecksum(want[:], checksum([]byte(rest[:randomLen])))
	return string(want[:]) == rest[randomLen:]
}

// validHash reports whether h looks like a Hash result (64 lowercase hex chars).
func validHash(h string) bool {
	if len(h) != HashLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checksum is the CRC-32 (IEEE) of the random part.
func checksum(p []byte) uint32 { return crc32.ChecksumIEEE(p) }

// putChecksum writes c as exactly len(dst) base62 digits, most significant first.
func putChecksum(dst []byte, c uint32) {
	v := uint64(c)
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62Alphabet[v%62]
		v /= 62
	}
}

// pow62_10 is 62^10, the largest power of 62 below 2^64 that keeps the
// digit-chunk loop simple (62^10 ≈ 8.39e17).
const pow62_10 = 839299365868340224

// encodeBase62_256 writes the 256-bit big-endian number in raw as exactly
// randomLen base62 digits into dst (most significant first, zero-padded).
// It divides by 62^10 per pass (4 word divisions) instead of using math/big.
func encodeBase62_256(raw *[RandomBytes]byte, dst []byte) {
	var n [4]uint64 // big-endian limbs
	for i := range n {
		n[i] = binary.BigEndian.Uint64(raw[i*8:])
	}
	pos := len(dst)
	for pos > 0 {
		// n, r = n / 62^10, n % 62^10
		var r uint64
		for i := range n {
			n[i], r = bits.Div64(r, n[i], pow62_10)
		}
		digits := min(10, pos)
		for range digits {
			pos--
			dst[pos] = base62Alphabet[r%62]
			r /= 62
		}
	}
}
