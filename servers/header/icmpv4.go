package header

import "encoding/binary"

// ICMPv4 message (RFC 792). Every message starts with type, code and a
// checksum over the whole message; the next four bytes depend on the type:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Identifier          |        Sequence Number        |  echo, echo reply
//	|             unused            |         Next-Hop MTU          |  destination unreachable (RFC 1191)
//	|                             unused                            |  time exceeded
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Data: echo payload, or the offending IP header + 64 bits  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type ICMPv4 []byte

const (
	icmpType     = 0
	icmpCode     = 1
	icmpChecksum = 2
	icmpIdent    = 4
	icmpSequence = 6
	icmpMTU      = 6

	// ICMPv4MinimumSize is the length of the fixed part of every message.
	ICMPv4MinimumSize = 8
	// ICMPv4ErrorDataSize is how much of the offending datagram past its
	// IP header an error message quotes (RFC 792: "64 bits of data").
	ICMPv4ErrorDataSize = 8
)

// ICMPv4Type is the type field.
type ICMPv4Type uint8

const (
	ICMPv4EchoReply      ICMPv4Type = 0
	ICMPv4DstUnreachable ICMPv4Type = 3
	ICMPv4Echo           ICMPv4Type = 8
	ICMPv4TimeExceeded   ICMPv4Type = 11
	ICMPv4ParamProblem   ICMPv4Type = 12
)

// Codes of ICMPv4DstUnreachable (RFC 792, RFC 1191).
const (
	ICMPv4NetUnreachable    = 0
	ICMPv4HostUnreachable   = 1
	ICMPv4ProtoUnreachable  = 2
	ICMPv4PortUnreachable   = 3
	ICMPv4FragNeeded        = 4
	ICMPv4SourceRouteFailed = 5
	// RFC 1122 §3.2.2.1's codes 6-12, 13 (RFC 1812: prohibited by
	// filtering) included, are unreachables of the host or network kind.
	ICMPv4AdminProhibited = 13
)

// Codes of ICMPv4TimeExceeded.
const (
	ICMPv4TTLExceeded       = 0
	ICMPv4ReassemblyTimeout = 1
)

// ValidateICMPv4 checks that b, the whole ICMP message (the IPv4 payload),
// holds the fixed part (else ErrTruncated) and that its checksum verifies
// (else ErrBadChecksum). Every ICMPv4 accessor is then safe.
func ValidateICMPv4(b []byte) error {
	if len(b) < ICMPv4MinimumSize {
		return ErrTruncated
	}
	if Checksum(b, 0) != 0xffff {
		return ErrBadChecksum
	}
	return nil
}

func (b ICMPv4) Type() ICMPv4Type     { return ICMPv4Type(b[icmpType]) }
func (b ICMPv4) Code() uint8          { return b[icmpCode] }
func (b ICMPv4) Checksum() uint16     { return binary.BigEndian.Uint16(b[icmpChecksum:]) }
func (b ICMPv4) Ident() uint16        { return binary.BigEndian.Uint16(b[icmpIdent:]) }
func (b ICMPv4) Sequence() uint16     { return binary.BigEndian.Uint16(b[icmpSequence:]) }
func (b ICMPv4) MTU() uint16          { return binary.BigEndian.Uint16(b[icmpMTU:]) }
func (b ICMPv4) Payload() []byte      { return b[ICMPv4MinimumSize:] }
func (b ICMPv4) SetType(t ICMPv4Type) { b[icmpType] = uint8(t) }
func (b ICMPv4) SetCode(c uint8)      { b[icmpCode] = c }
func (b ICMPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[icmpChecksum:], v) }
func (b ICMPv4) SetIdent(v uint16)    { binary.BigEndian.PutUint16(b[icmpIdent:], v) }
func (b ICMPv4) SetSequence(v uint16) { binary.BigEndian.PutUint16(b[icmpSequence:], v) }
func (b ICMPv4) SetMTU(v uint16)      { binary.BigEndian.PutUint16(b[icmpMTU:], v) }

// ComputeChecksum computes the checksum field for the whole message b as it
// stands (the current field value is skipped).
func (b ICMPv4) ComputeChecksum() uint16 {
	return ^ChecksumSlices(0, b[:icmpChecksum], b[icmpChecksum+2:])
}

// ICMPv4Fields is the fixed part of an ICMP message. Rest is the second
// 32-bit word: identifier<<16|sequence for echo, the next-hop MTU for
// "fragmentation needed", zero otherwise.
type ICMPv4Fields struct {
	Type ICMPv4Type
	Code uint8
	Rest uint32
}

// Encode writes f into the first ICMPv4MinimumSize bytes of b and sets the
// checksum over all of b, so the data must be in place first.
func (b ICMPv4) Encode(f *ICMPv4Fields) {
	b.SetType(f.Type)
	b.SetCode(f.Code)
	binary.BigEndian.PutUint32(b[icmpIdent:], f.Rest)
	b.SetChecksum(0)
	b.SetChecksum(b.ComputeChecksum())
}
