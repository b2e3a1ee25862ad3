package header

import (
	"encoding/binary"
	"net/netip"
)

// ICMPv6 message (RFC 4443 §2.1). Type, code, a checksum over the IPv6
// pseudo-header and the whole message, then four bytes that depend on the
// type, then the body:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Identifier          |        Sequence Number        |  echo request, echo reply
//	|                              MTU                              |  packet too big
//	|                            Pointer                            |  parameter problem
//	|                            unused                             |  destination unreachable, time exceeded
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Body: echo data; an error's invoking packet, as much as fits   |
//	|  in the minimum MTU; Neighbor Discovery's fields and options    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type ICMPv6 []byte

const (
	icmp6Word = 4 // the type-specific word

	// ICMPv6MinimumSize is the length of the fixed part of every message.
	ICMPv6MinimumSize = 8
	// ICMPv6ErrorMaxSize is the most an error message may carry with its
	// IPv6 header: "as much of invoking packet as possible without the
	// ICMPv6 packet exceeding the minimum IPv6 MTU" (RFC 4443 §2.4 (c)).
	ICMPv6ErrorMaxSize = IPv6MinimumMTU - IPv6MinimumSize
)

// ICMPv6Type is the type field: errors below 128, informational messages
// from 128 (RFC 4443 §2.1).
type ICMPv6Type uint8

const (
	ICMPv6DstUnreachable ICMPv6Type = 1
	ICMPv6PacketTooBig   ICMPv6Type = 2
	ICMPv6TimeExceeded   ICMPv6Type = 3
	ICMPv6ParamProblem   ICMPv6Type = 4
	ICMPv6EchoRequest    ICMPv6Type = 128
	ICMPv6EchoReply      ICMPv6Type = 129
	ICMPv6MLDQuery       ICMPv6Type = 130 // RFC 2710, RFC 3810
	ICMPv6MLDReport      ICMPv6Type = 131
	ICMPv6MLDDone        ICMPv6Type = 132
	ICMPv6RouterSolicit  ICMPv6Type = 133 // RFC 4861
	ICMPv6RouterAdvert   ICMPv6Type = 134
	ICMPv6NeighborSolic  ICMPv6Type = 135
	ICMPv6NeighborAdvert ICMPv6Type = 136
	ICMPv6Redirect       ICMPv6Type = 137
	ICMPv6MLDv2Report    ICMPv6Type = 143 // RFC 3810
)

// IsError says whether t is an error message (RFC 4443 §2.1): no error is
// ever sent about one (§2.4 (e.1)).
func (t ICMPv6Type) IsError() bool { return t < 128 }

// Codes of ICMPv6DstUnreachable (RFC 4443 §3.1).
const (
	ICMPv6NoRoute          = 0
	ICMPv6AdminProhibited  = 1
	ICMPv6BeyondScope      = 2
	ICMPv6AddrUnreachable  = 3
	ICMPv6PortUnreachable  = 4
	ICMPv6PolicyFailed     = 5
	ICMPv6RejectRoute      = 6
	ICMPv6HopLimitExceeded = 0 // of ICMPv6TimeExceeded
	ICMPv6ReassemblyTime   = 1 // of ICMPv6TimeExceeded
)

// ValidateICMPv6 checks that b, the whole ICMPv6 message of a datagram
// from src to dst, holds the fixed part (else ErrTruncated) and that its
// checksum verifies (else ErrBadChecksum). Every ICMPv6 accessor is then
// safe; Neighbor Discovery messages are checked further by ValidateNDP.
func ValidateICMPv6(b []byte, src, dst netip.Addr) error {
	if len(b) < ICMPv6MinimumSize {
		return ErrTruncated
	}
	if Checksum(b, PseudoHeaderChecksum6(ProtocolICMPv6, src, dst, uint32(len(b)))) != 0xffff {
		return ErrBadChecksum
	}
	return nil
}

func (b ICMPv6) Type() ICMPv6Type { return ICMPv6Type(b[icmpType]) }
func (b ICMPv6) Code() uint8      { return b[icmpCode] }
func (b ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(b[icmpChecksum:]) }
func (b ICMPv6) Ident() uint16    { return binary.BigEndian.Uint16(b[icmp6Word:]) }
func (b ICMPv6) Sequence() uint16 { return binary.BigEndian.Uint16(b[icmp6Word+2:]) }
func (b ICMPv6) MTU() uint32      { return binary.BigEndian.Uint32(b[icmp6Word:]) }
func (b ICMPv6) Pointer() uint32  { return binary.BigEndian.Uint32(b[icmp6Word:]) }
func (b ICMPv6) Body() []byte     { return b[ICMPv6MinimumSize:] }

func (b ICMPv6) SetType(t ICMPv6Type) { b[icmpType] = uint8(t) }
func (b ICMPv6) SetCode(c uint8)      { b[icmpCode] = c }
func (b ICMPv6) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[icmpChecksum:], v) }
func (b ICMPv6) SetIdent(v uint16)    { binary.BigEndian.PutUint16(b[icmp6Word:], v) }
func (b ICMPv6) SetSequence(v uint16) { binary.BigEndian.PutUint16(b[icmp6Word+2:], v) }
func (b ICMPv6) SetWord(v uint32)     { binary.BigEndian.PutUint32(b[icmp6Word:], v) }

// SetChecksumFor computes and sets the checksum of the whole message b,
// sent from src to dst.
func (b ICMPv6) SetChecksumFor(src, dst netip.Addr) {
	b.SetChecksum(0)
	b.SetChecksum(^Checksum(b, PseudoHeaderChecksum6(ProtocolICMPv6, src, dst, uint32(len(b)))))
}
