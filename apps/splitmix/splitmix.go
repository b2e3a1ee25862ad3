// Package splitmix is the verifiable byte stream served by the demo apps: the
// little-endian 64-bit outputs of Steele, Lea and Flood's splitmix64 generator
// ("Fast splittable pseudorandom number generators", OOPSLA 2014), starting
// from a seed. Anyone can regenerate the stream from (seed, length), so a
// download through the appliance is checked byte for byte without shipping
// the expected data alongside it.
package splitmix

import (
	"encoding/binary"
	"io"
)

// Constants of splitmix64: the golden-ratio increment and the two multipliers
// of its finaliser (MurmurHash3's fmix64 variant "Mix13").
const (
	gamma = 0x9E3779B97F4A7C15
	mulA  = 0xBF58476D1CE4E5B9
	mulB  = 0x94D049BB133111EB
)

// Next advances state and returns the next splitmix64 output.
func Next(state *uint64) uint64 {
	*state += gamma
	z := *state
	z = (z ^ (z >> 30)) * mulA
	z = (z ^ (z >> 27)) * mulB
	return z ^ (z >> 31)
}

// Reader is an endless io.Reader of the stream. Its zero value is the stream
// of seed 0. A Reader is not safe for concurrent use.
type Reader struct {
	state uint64
	// word holds the last output; its final left bytes are not read yet.
	word [8]byte
	left int
}

var _ io.Reader = (*Reader)(nil)

// New returns the stream starting from state seed.
func New(seed uint64) *Reader {
	return &Reader{state: seed}
}

// Read fills p entirely and never fails. A word split across two calls is
// finished by the second one, so the stream does not depend on how it is read.
func (r *Reader) Read(p []byte) (int, error) {
	n := 0
	if r.left > 0 {
		k := copy(p, r.word[len(r.word)-r.left:])
		r.left -= k
		n += k
		p = p[k:]
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, Next(&r.state))
		n += 8
		p = p[8:]
	}
	if len(p) > 0 {
		binary.LittleEndian.PutUint64(r.word[:], Next(&r.state))
		k := copy(p, r.word[:])
		r.left = len(r.word) - k
		n += k
	}
	return n, nil
}
