package header

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP segment header (RFC 9293 §3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	|       |       |R|E|G|K|H|T|N|N|                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           [Options]                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               :
//	:                             Data                              :
//	:                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The data offset counts 32-bit words of header, options included. The
// checksum covers a pseudo-header (source and destination address, protocol
// 6, the TCP length; see [PseudoHeaderChecksum]), the header and the data.
// Unlike UDP, TCP has no length field: the segment is the whole IP payload.
type TCP []byte

const (
	tcpSrcPort  = 0
	tcpDstPort  = 2
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	tcpUrgent   = 18

	// TCPMinimumSize is the length of a header without options.
	TCPMinimumSize = 20
	// TCPMaximumHeaderSize is the length of a header with data offset 15.
	TCPMaximumHeaderSize = 60
	// TCPMaximumOptionsSize is the most option bytes a header holds.
	TCPMaximumOptionsSize = TCPMaximumHeaderSize - TCPMinimumSize
)

// TCP control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168).
const (
	TCPFlagFIN = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
)

// Errors of TCP validation and option parsing, beyond the package's
// common set.
var (
	ErrBadDataOffset = errors.New("bad TCP data offset")  // data offset below 5 words or past the segment
	ErrBadOption     = errors.New("malformed TCP option") // an option's length is impossible or wrong for its kind
)

// ValidateTCP checks that b, the whole IPv4 payload of a datagram from src
// to dst, holds a well-formed TCP segment. In order, it returns
//
//   - ErrTruncated if b is shorter than TCPMinimumSize;
//   - ErrBadLength if b is longer than an IPv4 payload can be;
//   - ErrBadDataOffset if the data offset is below 5 words or the header
//     it describes is longer than b;
//   - ErrBadChecksum if the checksum over the pseudo-header and b does not
//     verify.
//
// Options are not parsed here (see [ParseTCPOptions]). On nil every TCP
// accessor is safe, including [TCP.Options] and [TCP.Payload].
func ValidateTCP(b []byte, src, dst netip.Addr) error {
	if err := ValidateTCPUnsummed(b); err != nil {
		return err
	}
	if !TCP(b).ChecksumValid(src, dst) {
		return ErrBadChecksum
	}
	return nil
}

// ValidateTCPUnsummed is ValidateTCP without the checksum: for a segment
// whose checksum the device verified.
func ValidateTCPUnsummed(b []byte) error {
	if len(b) < TCPMinimumSize {
		return ErrTruncated
	}
	if len(b) > IPv4MaximumSize-IPv4MinimumSize {
		return ErrBadLength
	}
	h := TCP(b)
	if off := h.DataOffset(); off < TCPMinimumSize || off > len(b) {
		return ErrBadDataOffset
	}
	return nil
}

func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }
func (b TCP) Seq() uint32     { return binary.BigEndian.Uint32(b[tcpSeq:]) }
func (b TCP) Ack() uint32     { return binary.BigEndian.Uint32(b[tcpAck:]) }

// DataOffset is the header length in bytes (the field times 4).
func (b TCP) DataOffset() int      { return int(b[tcpDataOff]>>4) * 4 }
func (b TCP) Flags() uint8         { return b[tcpFlags] }
func (b TCP) Window() uint16       { return binary.BigEndian.Uint16(b[tcpWindow:]) }
func (b TCP) Checksum() uint16     { return binary.BigEndian.Uint16(b[tcpChecksum:]) }
func (b TCP) Urgent() uint16       { return binary.BigEndian.Uint16(b[tcpUrgent:]) }
func (b TCP) Options() []byte      { return b[TCPMinimumSize:b.DataOffset()] }
func (b TCP) Payload() []byte      { return b[b.DataOffset():] }
func (b TCP) SetSrcPort(v uint16)  { binary.BigEndian.PutUint16(b[tcpSrcPort:], v) }
func (b TCP) SetDstPort(v uint16)  { binary.BigEndian.PutUint16(b[tcpDstPort:], v) }
func (b TCP) SetSeq(v uint32)      { binary.BigEndian.PutUint32(b[tcpSeq:], v) }
func (b TCP) SetAck(v uint32)      { binary.BigEndian.PutUint32(b[tcpAck:], v) }
func (b TCP) SetFlags(v uint8)     { b[tcpFlags] = v }
func (b TCP) SetWindow(v uint16)   { binary.BigEndian.PutUint16(b[tcpWindow:], v) }
func (b TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[tcpChecksum:], v) }
func (b TCP) SetUrgent(v uint16)   { binary.BigEndian.PutUint16(b[tcpUrgent:], v) }

// SetDataOffset sets the header length, in bytes (a multiple of 4, 20..60).
func (b TCP) SetDataOffset(n int) { b[tcpDataOff] = uint8(n/4) << 4 }

// ChecksumValid reports whether the checksum over the pseudo-header and all
// of b verifies.
func (b TCP) ChecksumValid(src, dst netip.Addr) bool {
	return Checksum(b, b.pseudo(src, dst)) == 0xffff
}

// ComputeChecksum computes the checksum field for the segment as it stands,
// all of b (the current field value is skipped).
func (b TCP) ComputeChecksum(src, dst netip.Addr) uint16 {
	return ^ChecksumSlices(b.pseudo(src, dst), b[:tcpChecksum], b[tcpChecksum+2:])
}

func (b TCP) pseudo(src, dst netip.Addr) uint16 {
	return PseudoHeaderChecksum(ProtocolTCP, src, dst, uint16(len(b)))
}

// TCPFields is the content of a TCP header; the checksum is computed
// separately, once the data is in place. Options must be a multiple of 4
// bytes, at most 40 (see [TCPOptions.Encode]).
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Urgent           uint16
	Options          []byte
}

// Encode writes f into the first TCPMinimumSize+len(f.Options) bytes of b
// with a zero checksum. To checksum the segment, put the data in place and
// then b.SetChecksum(b.ComputeChecksum(src, dst)).
func (b TCP) Encode(f *TCPFields) {
	hl := TCPMinimumSize + len(f.Options)
	b.SetSrcPort(f.SrcPort)
	b.SetDstPort(f.DstPort)
	b.SetSeq(f.Seq)
	b.SetAck(f.Ack)
	b.SetDataOffset(hl)
	b.SetFlags(f.Flags)
	b.SetWindow(f.Window)
	b.SetChecksum(0)
	b.SetUrgent(f.Urgent)
	copy(b[TCPMinimumSize:hl], f.Options)
}

// TCP option kinds (IANA "TCP Option Kind Numbers").
const (
	TCPOptionEOL           = 0 // RFC 9293
	TCPOptionNOP           = 1 // RFC 9293
	TCPOptionMSS           = 2 // RFC 9293, length 4
	TCPOptionWindowScale   = 3 // RFC 7323, length 3
	TCPOptionSACKPermitted = 4 // RFC 2018, length 2
	TCPOptionSACK          = 5 // RFC 2018, length 2+8n
	TCPOptionTimestamps    = 8 // RFC 7323, length 10
)

// TCPOptionIterator walks an options area one option at a time. It never
// reads past the area; an option whose length byte is missing, below 2 or
// past the end stops the walk with ErrBadOption.
//
//	it := TCPOptionIterator{Options: h.Options()}
//	for it.Next() { use(it.Kind, it.Data) }
//	if it.Err != nil { ... }
type TCPOptionIterator struct {
	Options []byte // what is left to walk
	Kind    uint8  // the current option
	Data    []byte // its bytes after kind and length (empty for NOP)
	Err     error  // why the walk stopped early; nil at EOL or the end
}

// Next moves to the next option other than NOP and reports whether there is
// one.
func (it *TCPOptionIterator) Next() bool {
	for len(it.Options) > 0 {
		kind := it.Options[0]
		switch kind {
		case TCPOptionEOL:
			it.Options = nil
			return false
		case TCPOptionNOP:
			it.Options = it.Options[1:]
			continue
		}
		if len(it.Options) < 2 {
			it.Err, it.Options = ErrBadOption, nil
			return false
		}
		n := int(it.Options[1])
		if n < 2 || n > len(it.Options) {
			it.Err, it.Options = ErrBadOption, nil
			return false
		}
		it.Kind, it.Data, it.Options = kind, it.Options[2:n], it.Options[n:]
		return true
	}
	return false
}

// TCPSACKBlock is one block of a SACK option: the received bytes
// [Left, Right) in sequence space.
type TCPSACKBlock struct{ Left, Right uint32 }

// TCPMaxSACKBlocks is the most blocks one option can carry (40 bytes).
const TCPMaxSACKBlocks = 4

// TCPOptions are the options keepnet understands, parsed or to be encoded.
type TCPOptions struct {
	MSS           uint16 // HasMSS: the maximum segment size (SYN only)
	HasMSS        bool
	WindowScale   uint8 // HasWindowScale: the shift count (SYN only)
	HasWS         bool
	SACKPermitted bool // SYN only
	HasTimestamps bool
	TSVal, TSEcr  uint32
	SACK          [TCPMaxSACKBlocks]TCPSACKBlock
	NumSACK       int // blocks in SACK
}

// ParseTCPOptions parses the options area of a header. Unknown kinds with a
// sane length are skipped. A known kind with the wrong length, or an
// impossible length, returns ErrBadOption, with what was parsed before it.
func ParseTCPOptions(b []byte) (TCPOptions, error) {
	var o TCPOptions
	it := TCPOptionIterator{Options: b}
	for it.Next() {
		d := it.Data
		switch it.Kind {
		case TCPOptionMSS:
			if len(d) != 2 {
				return o, ErrBadOption
			}
			o.MSS, o.HasMSS = binary.BigEndian.Uint16(d), true
		case TCPOptionWindowScale:
			if len(d) != 1 {
				return o, ErrBadOption
			}
			o.WindowScale, o.HasWS = d[0], true
		case TCPOptionSACKPermitted:
			if len(d) != 0 {
				return o, ErrBadOption
			}
			o.SACKPermitted = true
		case TCPOptionTimestamps:
			if len(d) != 8 {
				return o, ErrBadOption
			}
			o.HasTimestamps = true
			o.TSVal, o.TSEcr = binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:])
		case TCPOptionSACK:
			if len(d) == 0 || len(d)%8 != 0 || len(d)/8 > TCPMaxSACKBlocks {
				return o, ErrBadOption
			}
			o.NumSACK = len(d) / 8
			for i := range o.NumSACK {
				o.SACK[i] = TCPSACKBlock{binary.BigEndian.Uint32(d[8*i:]), binary.BigEndian.Uint32(d[8*i+4:])}
			}
		}
	}
	return o, it.Err
}

// Size is the length Encode writes: a multiple of 4, at most 40.
func (o *TCPOptions) Size() int {
	n := 0
	if o.HasMSS {
		n += 4
	}
	if o.HasTimestamps || o.SACKPermitted {
		n += 4 // SACK-permitted with two NOPs, or shares the word before TS
	}
	if o.HasTimestamps {
		n += 8 // TS is 10 bytes: 8 here, 2 counted above
	}
	if o.HasWS {
		n += 4
	}
	if nb := o.sackBlocks(n); nb > 0 {
		n += 4 + 8*nb
	}
	return n
}

// sackBlocks is how many of the SACK blocks fit after used bytes.
func (o *TCPOptions) sackBlocks(used int) int {
	nb := min(o.NumSACK, (TCPMaximumOptionsSize-used-4)/8)
	return max(nb, 0)
}

// Encode writes the options into b, which must hold Size() bytes, padded
// with NOPs to 32-bit words in the layout Linux uses (MSS; SACK-permitted
// and timestamps; NOP, window scale; NOP, NOP, SACK). SACK blocks that do
// not fit the 40 bytes are left out, last first. It returns the length
// written.
func (o *TCPOptions) Encode(b []byte) int {
	n := 0
	if o.HasMSS {
		b[0], b[1] = TCPOptionMSS, 4
		binary.BigEndian.PutUint16(b[2:], o.MSS)
		n = 4
	}
	switch {
	case o.HasTimestamps:
		if o.SACKPermitted {
			b[n], b[n+1] = TCPOptionSACKPermitted, 2
		} else {
			b[n], b[n+1] = TCPOptionNOP, TCPOptionNOP
		}
		b[n+2], b[n+3] = TCPOptionTimestamps, 10
		binary.BigEndian.PutUint32(b[n+4:], o.TSVal)
		binary.BigEndian.PutUint32(b[n+8:], o.TSEcr)
		n += 12
	case o.SACKPermitted:
		b[n], b[n+1], b[n+2], b[n+3] = TCPOptionNOP, TCPOptionNOP, TCPOptionSACKPermitted, 2
		n += 4
	}
	if o.HasWS {
		b[n], b[n+1], b[n+2], b[n+3] = TCPOptionNOP, TCPOptionWindowScale, 3, o.WindowScale
		n += 4
	}
	if nb := o.sackBlocks(n); nb > 0 {
		b[n], b[n+1], b[n+2], b[n+3] = TCPOptionNOP, TCPOptionNOP, TCPOptionSACK, uint8(2+8*nb)
		n += 4
		for i := range nb {
			binary.BigEndian.PutUint32(b[n:], o.SACK[i].Left)
			binary.BigEndian.PutUint32(b[n+4:], o.SACK[i].Right)
			n += 8
		}
	}
	return n
}
