package header

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header (RFC 791 §3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Flags are (bit 0) reserved, must be zero; (bit 1) DF, don't fragment;
// (bit 2) MF, more fragments. The fragment offset counts 8-octet units.
type IPv4 []byte

const (
	ipVersIHL   = 0
	ipTOS       = 1
	ipTotalLen  = 2
	ipID        = 4
	ipFlagsFrag = 6
	ipTTL       = 8
	ipProtocol  = 9
	ipChecksum  = 10
	ipSrc       = 12
	ipDst       = 16

	// IPv4MinimumSize is the length of a header without options (IHL 5).
	IPv4MinimumSize = 20
	// IPv4MaximumHeaderSize is the length of a header with IHL 15.
	IPv4MaximumHeaderSize = 60
	// IPv4MaximumSize is the largest total length, header included.
	IPv4MaximumSize = 65535
	// IPv4Version is the version field of every IPv4 header.
	IPv4Version = 4
)

// Flag bits in the flags/fragment-offset word.
const (
	IPv4FlagMoreFragments  = 1 << 13
	IPv4FlagDontFragment   = 1 << 14
	ipv4FragmentOffsetMask = 1<<13 - 1
)

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtocolICMP = 1
	ProtocolTCP  = 6
	ProtocolUDP  = 17
)

// ValidateIPv4 checks that b starts with a well-formed IPv4 datagram. In
// order, it returns
//
//   - ErrTruncated if b is shorter than IPv4MinimumSize;
//   - ErrBadVersion if the version is not 4;
//   - ErrBadIHL if IHL < 5;
//   - ErrBadLength if Total Length < IHL*4, or if the datagram, placed at its
//     fragment offset, would end past byte 65535 of the original datagram;
//   - ErrTruncated if b is shorter than Total Length (so also than IHL*4);
//   - ErrBadChecksum if the header checksum does not verify.
//
// b may be longer than Total Length (Ethernet pads short frames). On nil,
// every IPv4 accessor is safe, including [IPv4.Options] and [IPv4.Payload],
// which never reach past Total Length.
func ValidateIPv4(b []byte) error {
	if err := ValidateIPv4Unsummed(b); err != nil {
		return err
	}
	if Checksum(b[:IPv4(b).HeaderLength()], 0) != 0xffff {
		return ErrBadChecksum
	}
	return nil
}

// ValidateIPv4Unsummed is ValidateIPv4 without the header checksum: for a
// header whose checksum the device verified.
func ValidateIPv4Unsummed(b []byte) error {
	if len(b) < IPv4MinimumSize {
		return ErrTruncated
	}
	h := IPv4(b)
	if h.Version() != IPv4Version {
		return ErrBadVersion
	}
	hl := h.HeaderLength()
	if hl < IPv4MinimumSize {
		return ErrBadIHL
	}
	tl := int(h.TotalLength())
	if tl < hl || h.FragmentOffset()+tl-hl > IPv4MaximumSize-IPv4MinimumSize {
		return ErrBadLength
	}
	if len(b) < tl {
		return ErrTruncated
	}
	return nil
}

func (b IPv4) Version() int        { return int(b[ipVersIHL] >> 4) }
func (b IPv4) HeaderLength() int   { return int(b[ipVersIHL]&0xf) * 4 }
func (b IPv4) TOS() uint8          { return b[ipTOS] }
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[ipTotalLen:]) }
func (b IPv4) ID() uint16          { return binary.BigEndian.Uint16(b[ipID:]) }
func (b IPv4) Flags() uint16 {
	return binary.BigEndian.Uint16(b[ipFlagsFrag:]) &^ ipv4FragmentOffsetMask
}
func (b IPv4) MoreFragments() bool { return b.Flags()&IPv4FlagMoreFragments != 0 }
func (b IPv4) DontFragment() bool  { return b.Flags()&IPv4FlagDontFragment != 0 }
func (b IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(b[ipFlagsFrag:])&ipv4FragmentOffsetMask) * 8
}
func (b IPv4) IsFragment() bool        { return b.MoreFragments() || b.FragmentOffset() != 0 }
func (b IPv4) TTL() uint8              { return b[ipTTL] }
func (b IPv4) Protocol() uint8         { return b[ipProtocol] }
func (b IPv4) Checksum() uint16        { return binary.BigEndian.Uint16(b[ipChecksum:]) }
func (b IPv4) Src() netip.Addr         { return netip.AddrFrom4([4]byte(b[ipSrc : ipSrc+4])) }
func (b IPv4) Dst() netip.Addr         { return netip.AddrFrom4([4]byte(b[ipDst : ipDst+4])) }
func (b IPv4) Options() []byte         { return b[IPv4MinimumSize:b.HeaderLength()] }
func (b IPv4) Payload() []byte         { return b[b.HeaderLength():b.TotalLength()] }
func (b IPv4) SetTOS(v uint8)          { b[ipTOS] = v }
func (b IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(b[ipTotalLen:], v) }
func (b IPv4) SetID(v uint16)          { binary.BigEndian.PutUint16(b[ipID:], v) }
func (b IPv4) SetTTL(v uint8)          { b[ipTTL] = v }
func (b IPv4) SetProtocol(v uint8)     { b[ipProtocol] = v }
func (b IPv4) SetChecksum(v uint16)    { binary.BigEndian.PutUint16(b[ipChecksum:], v) }
func (b IPv4) SetSrc(a netip.Addr)     { put4(b[ipSrc:], a) }
func (b IPv4) SetDst(a netip.Addr)     { put4(b[ipDst:], a) }

// SetFlagsFragmentOffset sets the flags (IPv4Flag... bits) and the fragment
// offset, in bytes; offset must be a multiple of 8 below 65536.
func (b IPv4) SetFlagsFragmentOffset(flags uint16, offset int) {
	binary.BigEndian.PutUint16(b[ipFlagsFrag:], flags&^ipv4FragmentOffsetMask|uint16(offset/8)&ipv4FragmentOffsetMask)
}

// HeaderChecksum computes the checksum field for the header as it stands
// (the current field value is skipped).
func (b IPv4) HeaderChecksum() uint16 {
	hl := b.HeaderLength()
	return ^ChecksumSlices(0, b[:ipChecksum], b[ipChecksum+2:hl])
}

// IPv4Fields is the content of an IPv4 header. Options must be a multiple
// of 4 bytes, at most 40.
type IPv4Fields struct {
	TOS            uint8
	TotalLength    uint16
	ID             uint16
	Flags          uint16 // IPv4Flag... bits
	FragmentOffset int    // in bytes, a multiple of 8
	TTL            uint8
	Protocol       uint8
	Src, Dst       netip.Addr
	Options        []byte
}

// Encode writes f into b, which must hold IPv4MinimumSize+len(f.Options)
// bytes, and sets the header checksum.
func (b IPv4) Encode(f *IPv4Fields) {
	hl := IPv4MinimumSize + len(f.Options)
	b[ipVersIHL] = IPv4Version<<4 | uint8(hl/4)
	b.SetTOS(f.TOS)
	b.SetTotalLength(f.TotalLength)
	b.SetID(f.ID)
	b.SetFlagsFragmentOffset(f.Flags, f.FragmentOffset)
	b.SetTTL(f.TTL)
	b.SetProtocol(f.Protocol)
	b.SetSrc(f.Src)
	b.SetDst(f.Dst)
	copy(b[IPv4MinimumSize:hl], f.Options)
	b.SetChecksum(0)
	b.SetChecksum(b.HeaderChecksum())
}
