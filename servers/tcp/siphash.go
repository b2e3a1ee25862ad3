package tcp

import (
	"encoding/binary"
	"math/bits"
)

// sipHash is SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast
// short-input PRF", 2012) of msg under the 128-bit key k: the keyed hash F
// of RFC 6528 for ISNs, timestamp offsets and SYN cookies, as in Linux.
// It allocates nothing and costs a few dozen additions per 8 bytes, so a
// SYN flood, which makes tcp hash every SYN, neither churns the heap nor
// spends its time in the hash (HMAC-SHA256, used before, did both: four
// SHA-256 blocks and five allocations a SYN).
func sipHash(k [16]byte, msg []byte) uint64 {
	k0, k1 := binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])
	s := sipState{k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573}
	n := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		s.compress(binary.LittleEndian.Uint64(msg))
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(n)
	s.compress(binary.LittleEndian.Uint64(last[:]))
	s[2] ^= 0xff
	for range 4 {
		s.round()
	}
	return s[0] ^ s[1] ^ s[2] ^ s[3]
}

// sipState is SipHash's v0..v3.
type sipState [4]uint64

// compress takes one message word: two rounds.
func (s *sipState) compress(m uint64) {
	s[3] ^= m
	s.round()
	s.round()
	s[0] ^= m
}

// round is a SipRound.
func (s *sipState) round() {
	s[0] += s[1]
	s[1] = bits.RotateLeft64(s[1], 13) ^ s[0]
	s[0] = bits.RotateLeft64(s[0], 32)
	s[2] += s[3]
	s[3] = bits.RotateLeft64(s[3], 16) ^ s[2]
	s[0] += s[3]
	s[3] = bits.RotateLeft64(s[3], 21) ^ s[0]
	s[2] += s[1]
	s[1] = bits.RotateLeft64(s[1], 17) ^ s[2]
	s[2] = bits.RotateLeft64(s[2], 32)
}
