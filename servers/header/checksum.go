package header

import (
	"encoding/binary"
	"net/netip"
)

// The Internet checksum (RFC 1071) is the 16-bit one's complement of the
// one's complement sum of the data taken as big-endian 16-bit words. The
// helpers below work on the sum, not its complement, so that partial sums of
// separate pieces (a pseudo-header, a header, a payload) can be combined
// before the final complement:
//
//	field = ^Checksum(payload, Checksum(hdr, PseudoHeaderChecksum(...)))
//
// A region is correct when the sum over it, checksum field included, is
// 0xffff.

// Checksum adds b to the one's complement sum initial and returns the folded
// sum. b is taken to start on a 16-bit boundary; an odd final byte is padded
// with a zero on the right. To sum data split at an odd offset use
// [ChecksumSlices].
func Checksum(b []byte, initial uint16) uint16 {
	sum := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		// Add the four 16-bit words of v; 32-bit halves keep carries in range.
		sum += v>>48 + (v>>32)&0xffff + (v>>16)&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return fold(sum)
}

// ChecksumSlices is Checksum over the concatenation of bufs, which may have
// any lengths (odd ones included), starting from initial.
func ChecksumSlices(initial uint16, bufs ...[]byte) uint16 {
	sum := initial
	odd := false // the running data length so far is odd
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if odd {
			// b[0] is the low byte of a word whose high byte was already added.
			sum = ChecksumCombine(sum, uint16(b[0]))
			b = b[1:]
			odd = false
		}
		sum = Checksum(b, sum)
		odd = len(b)%2 == 1
	}
	return sum
}

// ChecksumCombine adds two one's complement sums.
func ChecksumCombine(a, b uint16) uint16 {
	return fold(uint64(a) + uint64(b))
}

// ChecksumUpdate returns the checksum field that results from changing one
// 16-bit word of the covered data from old to new, given the field's current
// value xsum (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func ChecksumUpdate(xsum, old, new uint16) uint16 {
	return ^ChecksumCombine(ChecksumCombine(^xsum, ^old), new)
}

// PseudoHeaderChecksum is the sum of the IPv4 pseudo-header that TCP
// (RFC 793 §3.1) and UDP (RFC 768) prepend to their checksums: source,
// destination, zero, protocol, and the transport length. With an IPv6 src
// (not IPv4-mapped) it is IPv6's (PseudoHeaderChecksum6), so that TCP and
// UDP checksum both families with the same calls.
func PseudoHeaderChecksum(proto uint8, src, dst netip.Addr, length uint16) uint16 {
	if src.Is6() && !src.Is4In6() {
		return PseudoHeaderChecksum6(proto, src, dst, uint32(length))
	}
	s, d := src.As4(), dst.As4()
	sum := uint64(binary.BigEndian.Uint16(s[0:])) + uint64(binary.BigEndian.Uint16(s[2:])) +
		uint64(binary.BigEndian.Uint16(d[0:])) + uint64(binary.BigEndian.Uint16(d[2:])) +
		uint64(proto) + uint64(length)
	return fold(sum)
}

// fold reduces a 64-bit sum of 16-bit words to 16 bits with end-around carry.
func fold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
