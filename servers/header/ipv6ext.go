package header

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// IPv6's extension headers (RFC 8200 §4) sit between the fixed header and
// the upper-layer message, each naming the next. Hop-by-Hop and
// Destination Options carry type-length-value options; Routing and
// Fragment have fixed fields:
//
//	Hop-by-Hop, Destination Options        Routing
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |  Hdr Ext Len  |      |  Next Header  |  Hdr Ext Len  | Routing Type  | Segments Left |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  options ...                         |  type-specific data ...
//
//	Fragment
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Identification                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Hdr Ext Len counts 8-octet units after the first 8 octets.

const (
	// IPv6FragmentHeaderSize is the Fragment header's fixed length.
	IPv6FragmentHeaderSize = 8
	// maxIPv6Extensions bounds the headers one datagram may carry: no
	// sender needs more than a handful (RFC 8504 §5.3 lets a host set
	// such limits), and each costs a pass of the walk.
	maxIPv6Extensions = 8
	// maxIPv6Padding is the most padding one header's options may hold:
	// more than 7 bytes is never needed for alignment, only to hide
	// things from filters (RFC 4942 §2.1.9.5).
	maxIPv6Padding = 7
)

// Codes of ICMPv6 Parameter Problem (RFC 4443 §3.4).
const (
	ICMPv6ErroneousField   = 0 // erroneous header field encountered
	ICMPv6UnknownNextHdr   = 1 // unrecognized Next Header type encountered
	ICMPv6UnknownOption    = 2 // unrecognized IPv6 option encountered
	ICMPv6IncompleteHeader = 3 // the first fragment lacks the header chain (RFC 7112)
)

// ErrIPv6Discard: an option's type says to drop the datagram silently
// (its two high bits 01, RFC 8200 §4.2), or the datagram carries more
// extension headers or padding than keepnet takes.
var ErrIPv6Discard = errors.New("IPv6 datagram discarded as its options ask")

// IPv6ParamProblem is an extension header the receiver must reject with
// an ICMPv6 Parameter Problem to the source (RFC 8200 §4): Code and
// Pointer, the offset of the offending byte from the fixed header's first,
// are the message's fields. An error is sent to a multicast destination's
// source only when EvenToMulticast says so (RFC 4443 §2.4 (e.3): an
// unrecognized option whose type's high bits are 10).
type IPv6ParamProblem struct {
	Code            uint8
	Pointer         uint32
	EvenToMulticast bool
}

func (e *IPv6ParamProblem) Error() string {
	return fmt.Sprintf("IPv6 parameter problem, code %d at byte %d", e.Code, e.Pointer)
}

// IPv6Extensions is what ParseIPv6Extensions found between the fixed
// header and the upper-layer message. Offsets count from the fixed
// header's first byte.
type IPv6Extensions struct {
	// Upper is the upper layer's protocol (ProtocolIPv6NoNext: none) and
	// UpperOffset where its message starts; for a fragment, the Next
	// Header and start of the fragment's data. UpperField is the offset of
	// the Next Header byte that named Upper: the pointer of a Parameter
	// Problem for a protocol the receiver does not know (code 1).
	Upper       uint8
	UpperOffset int
	UpperField  int

	// Fragment: the datagram is a fragment (RFC 8200 §4.5; an atomic
	// fragment, offset 0 and no M flag, is not: RFC 6946). Its header
	// starts at FragmentHeader, which is where the unfragmentable part
	// ends; the walk stops after it, as the rest is known only once the
	// datagram is reassembled.
	Fragment       bool
	FragmentHeader int
	FragmentOffset int // in bytes
	MoreFragments  bool
	FragmentID     uint32
}

// ParseIPv6Extensions walks the extension headers of h, which
// ValidateIPv6 accepted, as RFC 8200 §4 says a destination does: Hop-by-Hop
// only first; options skipped or rejected by their type's high bits;
// a Routing header with Segments Left above zero rejected (keepnet
// recognizes no routing type: type 0 is deprecated, RFC 5095); a
// fragment's length and offset checked (§4.5). It returns ErrTruncated if
// a header runs past the payload, ErrBadLength for a malformed option,
// ErrIPv6Discard, or an *IPv6ParamProblem to answer.
func ParseIPv6Extensions(h IPv6) (IPv6Extensions, error) {
	end := IPv6MinimumSize + int(h.PayloadLength())
	next, field, off := h.NextHeader(), ip6NextHeader, IPv6MinimumSize
	for n := 0; ; n++ {
		switch next {
		case ProtocolIPv6HopByHop, ProtocolIPv6DstOpts, ProtocolIPv6Routing, ProtocolIPv6Fragment:
		default:
			return IPv6Extensions{Upper: next, UpperOffset: off, UpperField: field}, nil
		}
		if n == maxIPv6Extensions {
			return IPv6Extensions{}, ErrIPv6Discard
		}
		if next == ProtocolIPv6HopByHop && off != IPv6MinimumSize {
			return IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6UnknownNextHdr, Pointer: uint32(field)}
		}
		if off+8 > end {
			return IPv6Extensions{}, ErrTruncated
		}
		if next == ProtocolIPv6Fragment {
			x, err := parseFragment(h, off, end)
			if err != nil || x.Fragment {
				return x, err
			}
			// An atomic fragment: on as if it were not there.
			next, field, off = h[off], off, off+IPv6FragmentHeaderSize
			continue
		}
		size := (int(h[off+1]) + 1) * 8
		if off+size > end {
			return IPv6Extensions{}, ErrTruncated
		}
		var err error
		if next == ProtocolIPv6Routing {
			err = checkRouting(h, off)
		} else {
			err = checkOptions(h, off, size)
		}
		if err != nil {
			return IPv6Extensions{}, err
		}
		next, field, off = h[off], off, off+size
	}
}

// parseFragment reads the Fragment header at off (RFC 8200 §4.5).
func parseFragment(h IPv6, off, end int) (IPv6Extensions, error) {
	word := binary.BigEndian.Uint16(h[off+2:])
	x := IPv6Extensions{
		Upper: h[off], UpperOffset: off + IPv6FragmentHeaderSize, UpperField: off,
		FragmentHeader: off, FragmentOffset: int(word>>3) * 8, MoreFragments: word&1 != 0,
		FragmentID: binary.BigEndian.Uint32(h[off+4:]),
	}
	x.Fragment = x.FragmentOffset != 0 || x.MoreFragments
	data := end - x.UpperOffset
	if x.MoreFragments && data%8 != 0 {
		// "...discarded and an ICMP Parameter Problem, Code 0, ...
		// pointing to the Payload Length field".
		return IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6ErroneousField, Pointer: ip6PayloadLen}
	}
	if x.FragmentOffset+data > 65535 {
		return IPv6Extensions{}, &IPv6ParamProblem{Code: ICMPv6ErroneousField, Pointer: uint32(off + 2)}
	}
	return x, nil
}

// checkRouting: a Routing header with segments left names a next hop,
// which keepnet, a host, takes for a routing type it does not recognize.
func checkRouting(h IPv6, off int) error {
	if h[off+3] == 0 { // Segments Left: ignore the header
		return nil
	}
	return &IPv6ParamProblem{Code: ICMPv6ErroneousField, Pointer: uint32(off + 2)}
}

// Option types every node knows (RFC 8200 §4.2).
const (
	ipv6OptPad1 = 0
	ipv6OptPadN = 1
)

// checkOptions walks the options of the Hop-by-Hop or Destination Options
// header of size bytes at off. keepnet acts on none but padding (a router
// alert is for routers; the Jumbo Payload is for other links), so every
// other option is unrecognized and its type's two high bits decide
// (RFC 8200 §4.2): 00 skip it, 01 discard the datagram, 10 discard and
// report, 11 discard and report unless the destination was multicast.
func checkOptions(h IPv6, off, size int) error {
	padding := 0
	for i := off + 2; i < off+size; {
		typ := h[i]
		if typ == ipv6OptPad1 {
			i++
			padding++
		} else {
			if i+2 > off+size || i+2+int(h[i+1]) > off+size {
				return ErrBadLength
			}
			length := int(h[i+1])
			switch {
			case typ == ipv6OptPadN:
				padding += 2 + length
			case typ>>6 == 0:
			case typ>>6 == 1:
				return ErrIPv6Discard
			default:
				return &IPv6ParamProblem{Code: ICMPv6UnknownOption, Pointer: uint32(i), EvenToMulticast: typ>>6 == 2}
			}
			i += 2 + length
		}
		if padding > maxIPv6Padding {
			return ErrIPv6Discard
		}
		if typ != ipv6OptPad1 && typ != ipv6OptPadN {
			padding = 0 // a run of padding ends
		}
	}
	return nil
}
