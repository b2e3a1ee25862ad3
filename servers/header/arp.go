package header

import (
	"encoding/binary"
	"net/netip"
)

// ARP packet for Ethernet and IPv4 (RFC 826), the only combination keepnet
// speaks, so the variable-length addresses have fixed places:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Hardware Type (1)         |    Protocol Type (0x0800)     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| HW Len (6)    | Proto Len (4) |          Operation            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Sender Hardware Address ...                  |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |  Sender Protocol Address ...  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   ... Sender Protocol Addr    |  Target Hardware Address ...  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Target Protocol Address                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type ARP []byte

const (
	arpHType = 0
	arpPType = 2
	arpHLen  = 4
	arpPLen  = 5
	arpOp    = 6
	arpSHA   = 8
	arpSPA   = 14
	arpTHA   = 18
	arpTPA   = 24

	// ARPSize is the length of an Ethernet/IPv4 ARP packet.
	ARPSize = 28

	arpHardwareEthernet = 1 // RFC 826 ar$hrd, "Ethernet (10Mb)"
)

// ARPOp is an ARP operation code (ar$op).
type ARPOp uint16

const (
	ARPRequest ARPOp = 1
	ARPReply   ARPOp = 2
)

// ValidateARP checks that b is a whole ARP packet for Ethernet and IPv4:
// at least ARPSize bytes (else ErrTruncated), hardware type 1 with 6-byte
// addresses and protocol type 0x0800 with 4-byte addresses (else ErrBadARP).
// Every ARP accessor is then safe. The operation is not checked.
func ValidateARP(b []byte) error {
	if len(b) < ARPSize {
		return ErrTruncated
	}
	a := ARP(b)
	if a.HardwareType() != arpHardwareEthernet || a.ProtocolType() != EtherTypeIPv4 ||
		a.HardwareAddressLen() != 6 || a.ProtocolAddressLen() != 4 {
		return ErrBadARP
	}
	return nil
}

func (b ARP) HardwareType() uint16      { return binary.BigEndian.Uint16(b[arpHType:]) }
func (b ARP) ProtocolType() EtherType   { return EtherType(binary.BigEndian.Uint16(b[arpPType:])) }
func (b ARP) HardwareAddressLen() uint8 { return b[arpHLen] }
func (b ARP) ProtocolAddressLen() uint8 { return b[arpPLen] }
func (b ARP) Op() ARPOp                 { return ARPOp(binary.BigEndian.Uint16(b[arpOp:])) }
func (b ARP) SenderMAC() MAC            { return MAC(b[arpSHA : arpSHA+6]) }
func (b ARP) SenderIP() netip.Addr      { return netip.AddrFrom4([4]byte(b[arpSPA : arpSPA+4])) }
func (b ARP) TargetMAC() MAC            { return MAC(b[arpTHA : arpTHA+6]) }
func (b ARP) TargetIP() netip.Addr      { return netip.AddrFrom4([4]byte(b[arpTPA : arpTPA+4])) }
func (b ARP) SetOp(op ARPOp)            { binary.BigEndian.PutUint16(b[arpOp:], uint16(op)) }
func (b ARP) SetSenderMAC(m MAC)        { copy(b[arpSHA:], m[:]) }
func (b ARP) SetSenderIP(a netip.Addr)  { put4(b[arpSPA:], a) }
func (b ARP) SetTargetMAC(m MAC)        { copy(b[arpTHA:], m[:]) }
func (b ARP) SetTargetIP(a netip.Addr)  { put4(b[arpTPA:], a) }

// ARPFields is the content of an Ethernet/IPv4 ARP packet. Addresses must be
// IPv4.
type ARPFields struct {
	Op                   ARPOp
	SenderMAC, TargetMAC MAC
	SenderIP, TargetIP   netip.Addr
}

// Encode writes f, with the fixed Ethernet/IPv4 type and length fields, into
// the first ARPSize bytes of b.
func (b ARP) Encode(f *ARPFields) {
	binary.BigEndian.PutUint16(b[arpHType:], arpHardwareEthernet)
	binary.BigEndian.PutUint16(b[arpPType:], uint16(EtherTypeIPv4))
	b[arpHLen] = 6
	b[arpPLen] = 4
	b.SetOp(f.Op)
	b.SetSenderMAC(f.SenderMAC)
	b.SetSenderIP(f.SenderIP)
	b.SetTargetMAC(f.TargetMAC)
	b.SetTargetIP(f.TargetIP)
}

// put4 writes the IPv4 address a into b[:4]; the zero Addr writes 0.0.0.0.
func put4(b []byte, a netip.Addr) {
	if !a.IsValid() {
		copy(b, []byte{0, 0, 0, 0})
		return
	}
	v := a.As4()
	copy(b, v[:])
}
