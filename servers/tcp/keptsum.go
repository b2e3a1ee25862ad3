package tcp

import (
	"encoding/binary"
	"math/bits"
)

// keptSum is the checksum of what tcp keeps across its restarts (keep.go:
// the header, each slot's identity and each copy of a record): a keyed
// hash of parts under seed, one 64×64→128-bit multiply per eight bytes
// folded to 64 bits, and at the end to 32.
//
// It replaced CRC-32C. Go computes that with SSE4.2's crc32 instruction,
// which TCG has no host instruction for: it runs a helper that works bit
// by bit, and a commit, which sums every record a pass touched, spent a
// tenth of tcp's CPU in it under `ab` (keepnet profile tcp). A multiply
// TCG turns into the host's own. For a 400-byte record under qemu-x86_64
// (TCG): CRC-32C 3.7–4.9 µs, keptSum about 0.2 µs (BenchmarkKeptSum);
// natively both take tens of nanoseconds.
//
// What the sums catch — a copy torn by a crash in the middle of a commit,
// a slot scribbled on, a record left by another boot (the nonce is the
// seed) — they catch with the odds of any 32-bit check. No one chooses
// these bytes against it: the memory is tcp's alone.
func keptSum(seed uint64, parts ...[]byte) uint32 {
	h := seed ^ sumK0
	for _, p := range parts {
		n := len(p)
		for ; len(p) >= 8; p = p[8:] {
			h = sumMix(binary.LittleEndian.Uint64(p)^sumK1, h^sumK2)
		}
		// The tail, and the part's length: parts that split the same
		// bytes differently sum differently.
		var last [8]byte
		copy(last[:], p)
		last[7] = byte(n)
		h = sumMix(binary.LittleEndian.Uint64(last[:])^sumK1, h^sumK2^uint64(n))
	}
	h = sumMix(h^sumK2, sumK0)
	return uint32(h) ^ uint32(h>>32)
}

// sumMix multiplies a by b and folds the 128-bit product.
func sumMix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// Odd constants with their bits well spread (the golden ratio's, and two
// primes common in such hashes).
const (
	sumK0 = 0x9e3779b97f4a7c15
	sumK1 = 0xc2b2ae3d27d4eb4f
	sumK2 = 0x165667b19e3779f9
)
