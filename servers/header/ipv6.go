package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header (RFC 8200 §3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                         Source Address                        +
//	|                          (16 octets)                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                      Destination Address                      +
//	|                          (16 octets)                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The payload (extension headers, then the upper-layer message) follows;
// Payload Length counts it, extension headers included. A Payload Length
// of zero with a Jumbo Payload option (RFC 2675) is for links whose MTU
// exceeds 65,575 bytes: no Ethernet NIC here has one, so zero means an
// empty payload.
type IPv6 []byte

const (
	ip6VersTCFlow = 0
	ip6PayloadLen = 4
	ip6NextHeader = 6
	ip6HopLimit   = 7
	ip6Src        = 8
	ip6Dst        = 24

	// IPv6MinimumSize is the length of the fixed header.
	IPv6MinimumSize = 40
	// IPv6Version is the version field of every IPv6 header.
	IPv6Version = 6
	// IPv6MinimumMTU is the smallest MTU a link may have (RFC 8200 §5):
	// every IPv6 node takes datagrams of this size without fragmenting.
	IPv6MinimumMTU = 1280
)

// EtherTypeIPv6 is IPv6 over Ethernet (RFC 2464).
const EtherTypeIPv6 EtherType = 0x86dd

// Next Header values of IPv6's extension headers and of ICMPv6 (IANA
// "Assigned Internet Protocol Numbers"; RFC 8200 §4, RFC 4443).
const (
	ProtocolIPv6HopByHop = 0
	ProtocolIPv6Routing  = 43
	ProtocolIPv6Fragment = 44
	ProtocolESP          = 50
	ProtocolAH           = 51
	ProtocolICMPv6       = 58
	ProtocolIPv6NoNext   = 59
	ProtocolIPv6DstOpts  = 60
)

// ValidateIPv6 checks that b starts with an IPv6 datagram: ErrTruncated if
// b is shorter than the fixed header or than 40 + Payload Length bytes,
// ErrBadVersion if the version is not 6. b may be longer (Ethernet pads
// short frames). On nil every IPv6 accessor is safe, [IPv6.Payload]
// included, which ends at Payload Length. The extension headers are
// walked by [ParseIPv6Extensions].
func ValidateIPv6(b []byte) error {
	if len(b) < IPv6MinimumSize {
		return ErrTruncated
	}
	h := IPv6(b)
	if h.Version() != IPv6Version {
		return ErrBadVersion
	}
	if len(b) < IPv6MinimumSize+int(h.PayloadLength()) {
		return ErrTruncated
	}
	return nil
}

func (b IPv6) Version() int { return int(b[ip6VersTCFlow] >> 4) }
func (b IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(b[ip6VersTCFlow:]) >> 4)
}
func (b IPv6) FlowLabel() uint32 {
	return binary.BigEndian.Uint32(b[ip6VersTCFlow:]) & 0xfffff
}
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[ip6PayloadLen:]) }
func (b IPv6) NextHeader() uint8     { return b[ip6NextHeader] }
func (b IPv6) HopLimit() uint8       { return b[ip6HopLimit] }
func (b IPv6) Src() netip.Addr       { return netip.AddrFrom16([16]byte(b[ip6Src : ip6Src+16])) }
func (b IPv6) Dst() netip.Addr       { return netip.AddrFrom16([16]byte(b[ip6Dst : ip6Dst+16])) }
func (b IPv6) Payload() []byte {
	return b[IPv6MinimumSize : IPv6MinimumSize+int(b.PayloadLength())]
}
func (b IPv6) SetPayloadLength(v uint16) { binary.BigEndian.PutUint16(b[ip6PayloadLen:], v) }
func (b IPv6) SetNextHeader(v uint8)     { b[ip6NextHeader] = v }
func (b IPv6) SetHopLimit(v uint8)       { b[ip6HopLimit] = v }
func (b IPv6) SetSrc(a netip.Addr)       { put16(b[ip6Src:], a) }
func (b IPv6) SetDst(a netip.Addr)       { put16(b[ip6Dst:], a) }

// IPv6Fields is the content of an IPv6 fixed header.
type IPv6Fields struct {
	TrafficClass  uint8
	FlowLabel     uint32 // 20 bits
	PayloadLength uint16
	NextHeader    uint8
	HopLimit      uint8
	Src, Dst      netip.Addr
}

// Encode writes f into b, which must hold IPv6MinimumSize bytes.
func (b IPv6) Encode(f *IPv6Fields) {
	binary.BigEndian.PutUint32(b[ip6VersTCFlow:], IPv6Version<<28|uint32(f.TrafficClass)<<20|f.FlowLabel&0xfffff)
	b.SetPayloadLength(f.PayloadLength)
	b.SetNextHeader(f.NextHeader)
	b.SetHopLimit(f.HopLimit)
	b.SetSrc(f.Src)
	b.SetDst(f.Dst)
}

// put16 writes a as 16 bytes (an IPv4 address as IPv4-mapped; the zero
// Addr as the unspecified address ::).
func put16(b []byte, a netip.Addr) {
	if !a.IsValid() {
		clear(b[:16])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// PseudoHeaderChecksum6 is the sum of the IPv6 pseudo-header that TCP, UDP
// and ICMPv6 prepend to their checksums (RFC 8200 §8.1): source,
// destination, the upper-layer length as 32 bits, three zero bytes and
// the Next Header of the upper layer. src and dst are taken as 16-byte
// addresses; length is the upper-layer message's, without extension
// headers.
func PseudoHeaderChecksum6(proto uint8, src, dst netip.Addr, length uint32) uint16 {
	s, d := src.As16(), dst.As16()
	var sum uint64
	for i := 0; i < 16; i += 2 {
		sum += uint64(binary.BigEndian.Uint16(s[i:])) + uint64(binary.BigEndian.Uint16(d[i:]))
	}
	sum += uint64(length>>16) + uint64(length&0xffff) + uint64(proto)
	return fold(sum)
}
