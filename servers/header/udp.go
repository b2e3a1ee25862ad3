package header

import (
	"encoding/binary"
	"net/netip"
)

// UDP datagram (RFC 768):
//
//	 0      7 8     15 16    23 24    31
//	+--------+--------+--------+--------+
//	|     Source      |   Destination   |
//	|      Port       |      Port       |
//	+--------+--------+--------+--------+
//	|                 |                 |
//	|     Length      |    Checksum     |
//	+--------+--------+--------+--------+
//	|
//	|          data octets ...
//	+---------------- ...
//
// Length counts the header and the data. The checksum covers a
// pseudo-header (source and destination address, protocol 17, the UDP
// length; see [PseudoHeaderChecksum]), the header and the data; a
// transmitted checksum of zero means "none computed" (IPv4 only), so a
// computed zero is sent as all ones.
type UDP []byte

const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6

	// UDPMinimumSize is the length of the header.
	UDPMinimumSize = 8
	// UDPMaximumPayload is the most data one UDP datagram carries over
	// IPv4: 65535 minus the IPv4 and UDP headers.
	UDPMaximumPayload = IPv4MaximumSize - IPv4MinimumSize - UDPMinimumSize
)

// ValidateUDP checks that b, the whole IPv4 payload of a datagram from src
// to dst, holds a well-formed UDP datagram. In order, it returns
//
//   - ErrTruncated if b is shorter than UDPMinimumSize;
//   - ErrBadLength if the Length field is below UDPMinimumSize;
//   - ErrTruncated if b is shorter than Length (the IP payload is shorter
//     than the datagram claims);
//   - ErrBadChecksum if the checksum field is not zero and the checksum
//     over the pseudo-header and the first Length bytes does not verify.
//
// b may be longer than Length; the excess is not part of the datagram
// (receivers trim it, as Linux does). On nil every UDP accessor is safe,
// and [UDP.Payload] never reaches past Length.
func ValidateUDP(b []byte, src, dst netip.Addr) error {
	if err := ValidateUDPUnsummed(b); err != nil {
		return err
	}
	if u := UDP(b); u.Checksum() != 0 && !u.ChecksumValid(src, dst) {
		return ErrBadChecksum
	}
	return nil
}

// ValidateUDPUnsummed is ValidateUDP without the checksum: for a datagram
// whose checksum the device verified.
func ValidateUDPUnsummed(b []byte) error {
	if len(b) < UDPMinimumSize {
		return ErrTruncated
	}
	u := UDP(b)
	n := int(u.Length())
	if n < UDPMinimumSize {
		return ErrBadLength
	}
	if len(b) < n {
		return ErrTruncated
	}
	return nil
}

func (b UDP) SrcPort() uint16      { return binary.BigEndian.Uint16(b[udpSrcPort:]) }
func (b UDP) DstPort() uint16      { return binary.BigEndian.Uint16(b[udpDstPort:]) }
func (b UDP) Length() uint16       { return binary.BigEndian.Uint16(b[udpLength:]) }
func (b UDP) Checksum() uint16     { return binary.BigEndian.Uint16(b[udpChecksum:]) }
func (b UDP) Payload() []byte      { return b[UDPMinimumSize:b.Length()] }
func (b UDP) SetSrcPort(v uint16)  { binary.BigEndian.PutUint16(b[udpSrcPort:], v) }
func (b UDP) SetDstPort(v uint16)  { binary.BigEndian.PutUint16(b[udpDstPort:], v) }
func (b UDP) SetLength(v uint16)   { binary.BigEndian.PutUint16(b[udpLength:], v) }
func (b UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[udpChecksum:], v) }

// ChecksumValid reports whether the checksum over the pseudo-header and the
// first Length bytes verifies (a zero field, "no checksum", does not: callers
// test for it first). b must hold Length bytes.
func (b UDP) ChecksumValid(src, dst netip.Addr) bool {
	return Checksum(b[:b.Length()], b.pseudo(src, dst)) == 0xffff
}

// ComputeChecksum computes the checksum field for the datagram as it
// stands, over the pseudo-header and the first Length bytes (the current
// field value is skipped). A computed zero is returned as 0xffff (RFC 768),
// since a zero field means "no checksum".
func (b UDP) ComputeChecksum(src, dst netip.Addr) uint16 {
	c := ^ChecksumSlices(b.pseudo(src, dst), b[:udpChecksum], b[UDPMinimumSize:b.Length()])
	if c == 0 {
		return 0xffff
	}
	return c
}

// pseudo is the sum of the datagram's pseudo-header.
func (b UDP) pseudo(src, dst netip.Addr) uint16 {
	return PseudoHeaderChecksum(ProtocolUDP, src, dst, b.Length())
}

// UDPFields is the content of a UDP header; the checksum is computed
// separately, once the data is in place.
type UDPFields struct {
	SrcPort, DstPort uint16
	Length           uint16 // header and data
}

// Encode writes f into the first UDPMinimumSize bytes of b with a zero
// checksum. To checksum the datagram, put the data in place and then
// b.SetChecksum(b.ComputeChecksum(src, dst)).
func (b UDP) Encode(f *UDPFields) {
	b.SetSrcPort(f.SrcPort)
	b.SetDstPort(f.DstPort)
	b.SetLength(f.Length)
	b.SetChecksum(0)
}
