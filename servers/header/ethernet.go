package header

import (
	"encoding/binary"
	"fmt"
)

// Ethernet II frame header (IEEE 802.3 clause 3.2, RFC 894), without the
// preamble and the FCS, which the NIC adds and strips:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Destination MAC (6 octets) ...                |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |   Source MAC (6 octets) ...   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           EtherType           |          Payload ...          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Ethernet []byte

const (
	ethDst  = 0
	ethSrc  = 6
	ethType = 12

	// EthernetMinimumSize is the length of the Ethernet II header.
	EthernetMinimumSize = 14
	// EthernetMinimumFrame is the shortest frame on the wire without FCS;
	// shorter frames are padded (by the NIC, e1000 TCTL.PSP).
	EthernetMinimumFrame = 60
)

// EtherType values (IANA "IEEE 802 Numbers").
type EtherType uint16

const (
	EtherTypeIPv4 EtherType = 0x0800
	EtherTypeARP  EtherType = 0x0806
)

// MAC is an IEEE 802 48-bit address.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// String formats m as six colon-separated hex octets.
func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// IsMulticast reports whether m is a group address (broadcast included):
// the I/G bit, the least significant bit of the first octet.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// ValidateEthernet checks that b holds a whole Ethernet II header, which
// makes every Ethernet accessor safe. It returns nil or ErrTruncated.
func ValidateEthernet(b []byte) error {
	if len(b) < EthernetMinimumSize {
		return ErrTruncated
	}
	return nil
}

func (b Ethernet) Dst() MAC            { return MAC(b[ethDst : ethDst+6]) }
func (b Ethernet) Src() MAC            { return MAC(b[ethSrc : ethSrc+6]) }
func (b Ethernet) Type() EtherType     { return EtherType(binary.BigEndian.Uint16(b[ethType:])) }
func (b Ethernet) Payload() []byte     { return b[EthernetMinimumSize:] }
func (b Ethernet) SetDst(m MAC)        { copy(b[ethDst:], m[:]) }
func (b Ethernet) SetSrc(m MAC)        { copy(b[ethSrc:], m[:]) }
func (b Ethernet) SetType(t EtherType) { binary.BigEndian.PutUint16(b[ethType:], uint16(t)) }

// EthernetFields is the content of an Ethernet II header.
type EthernetFields struct {
	Dst, Src MAC
	Type     EtherType
}

// Encode writes f into the first EthernetMinimumSize bytes of b.
func (b Ethernet) Encode(f *EthernetFields) {
	b.SetDst(f.Dst)
	b.SetSrc(f.Src)
	b.SetType(f.Type)
}
