package pf

import (
	"encoding/binary"
	"net/netip"
)

// addr is an IPv4 or IPv6 address as two 64-bit halves, so that a flow
// key of either family compares and hashes as a few words. An IPv4
// address is held as its IPv4-mapped IPv6 form (::ffff:a.b.c.d, RFC 4291
// §2.5.5.2); the family is kept beside it (flowKey.v6, packet.v6), since
// an IPv6 datagram may carry a mapped address too.
type addr struct{ hi, lo uint64 }

// mapped is the upper 32 bits of an IPv4-mapped address's low half.
const mapped = 0xffff << 32

// addr4 reads the IPv4 address in b[:4].
func addr4(b []byte) addr { return addr{0, mapped | uint64(binary.BigEndian.Uint32(b))} }

// addr16 reads the IPv6 address in b[:16].
func addr16(b []byte) addr {
	return addr{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
}

// addrFrom is a as an addr, IPv4 mapped.
func addrFrom(a netip.Addr) addr {
	b := a.As16()
	return addr16(b[:])
}

func (a addr) less(b addr) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a addr) and(m addr) addr { return addr{a.hi & m.hi, a.lo & m.lo} }

// netip is a as a netip.Addr of its family.
func (a addr) netip(v6 bool) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	if v6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[12:]))
}

// is4 reports whether a has the IPv4-mapped form.
func (a addr) is4() bool { return a.hi == 0 && a.lo>>32 == 0xffff }

// prefixMask is the mask of the first bits of 128.
func prefixMask(bits int) addr {
	switch {
	case bits <= 0:
		return addr{}
	case bits < 64:
		return addr{^uint64(0) << (64 - bits), 0}
	case bits < 128:
		return addr{^uint64(0), ^uint64(0) << (128 - bits)}
	}
	return addr{^uint64(0), ^uint64(0)}
}
