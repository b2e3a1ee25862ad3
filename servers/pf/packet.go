package pf

import (
	"encoding/binary"

	"keepnet/servers/header"
)

// packet is what the filter needs of a datagram, taken from its bytes once
// (parse) and never read from them again: the bytes may lie in a pool a
// neighbour can write.
type packet struct {
	v6       bool // an IPv6 datagram; else IPv4, its addresses mapped
	src, dst addr
	proto    uint8 // IPv4's protocol; IPv6's upper layer, past the extension headers
	length   int   // the IP total length (IPv6: the fixed header and its payload)
	hopLimit uint8 // IPv6's, for Neighbor Discovery
	fragID   uint32
	later    bool // a fragment past the first: no transport header
	first    bool // the first fragment of several

	// sport and dport are the TCP or UDP ports; for ICMP echo and echo
	// reply both are the echo identifier, which names the flow.
	sport, dport uint16

	// TCP.
	seq, ack uint32
	flags    uint8
	win      uint16
	dataLen  uint32 // payload bytes
	wscale   int8   // the window scale option of a SYN; -1 if none

	// ICMP, or ICMPv6 in an IPv6 datagram (icmp says which: the type
	// numbers of the two differ).
	icmpType uint8
	icmpCode uint8
	quoted   quotedFlow // for ICMP errors
}

// quotedFlow is the datagram an ICMP error quotes: its IP header (and
// IPv6 extension headers) and the first 8 bytes of what followed. It is
// of the error's own family.
type quotedFlow struct {
	valid        bool
	src, dst     addr
	proto        uint8
	sport, dport uint16 // ports, or the echo identifier in both
	seq          uint32 // TCP only
}

// Why parse refuses a datagram. A closed set: the Filter counts them.
type malformed uint8

const (
	wellFormed     malformed = iota
	badIPHeader              // version, IHL or total length impossible
	truncated                // shorter than its IP header says
	shortTransport           // too short for its TCP, UDP or ICMP header
	badExtensions            // an IPv6 extension header chain pf does not take
)

// parse fills p from the IPv4 or IPv6 datagram b. It checks what every
// later read relies on: the version, header length and total length, an
// IPv6 datagram's extension headers, and that a whole datagram or first
// fragment holds its transport header (a first fragment too short to
// hold the ports is refused, as pf does with "tiny fragments", and as
// RFC 7112 says of IPv6 first fragments that lack the header chain, so
// that no rule is decided on ports it cannot see). It does not verify
// checksums: ip verifies them on what it receives, and the packets it
// sends may carry offloaded checksums not yet computed.
func (p *packet) parse(b []byte) malformed {
	if len(b) > 0 && b[0]>>4 == header.IPv6Version {
		return p.parse6(b)
	}
	if len(b) < header.IPv4MinimumSize {
		return truncated
	}
	ip := header.IPv4(b)
	hl, tl := ip.HeaderLength(), int(ip.TotalLength())
	if ip.Version() != header.IPv4Version || hl < header.IPv4MinimumSize || tl < hl {
		return badIPHeader
	}
	if len(b) < tl {
		return truncated
	}
	p.src, p.dst = addr4(b[12:]), addr4(b[16:])
	p.proto, p.length, p.fragID = ip.Protocol(), tl, uint32(ip.ID())
	p.later = ip.FragmentOffset() != 0
	p.first = !p.later && ip.MoreFragments()
	if p.later {
		return wellFormed
	}
	return p.parseUpper(b[hl:tl])
}

// parse6 fills p from the IPv6 datagram b (RFC 8200).
func (p *packet) parse6(b []byte) malformed {
	if len(b) < header.IPv6MinimumSize {
		return truncated
	}
	ip := header.IPv6(b)
	end := header.IPv6MinimumSize + int(ip.PayloadLength())
	if len(b) < end {
		return truncated
	}
	b = b[:end]
	p.v6 = true
	p.src, p.dst = addr16(b[8:]), addr16(b[24:])
	p.length, p.hopLimit = end, ip.HopLimit()
	c, bad := walkExtensions(b)
	if bad != wellFormed {
		return bad
	}
	p.proto = c.upper
	if c.fragment {
		p.fragID = c.fragID
		p.later = c.fragOffset != 0
		p.first = !p.later
	}
	if p.later {
		return wellFormed
	}
	return p.parseUpper(b[c.upperOffset:])
}

// parseUpper reads the transport header b of the family's protocols that
// have flows or quote them.
func (p *packet) parseUpper(b []byte) malformed {
	switch {
	case p.proto == header.ProtocolTCP:
		return p.parseTCP(b)
	case p.proto == header.ProtocolUDP:
		return p.parseUDP(b)
	case p.icmp():
		return p.parseICMP(b)
	}
	return wellFormed
}

// # IPv6 extension headers
//
// pf walks the chain as far as the upper layer (RFC 8200 §4): Hop-by-Hop
// (first only), Routing, Destination Options, and one Fragment header.
// It reads their lengths, not their options: what an option asks of the
// destination is ip's business. It refuses a chain longer than
// maxExtensions, a header that runs past the datagram, a Hop-by-Hop
// header that is not first, a second Fragment header, and a Routing
// header of type 0 (deprecated by RFC 5095, as pf blocks it). An atomic
// fragment (offset 0, no more fragments: RFC 6946) is a whole datagram.
// A later fragment's chain ends at its Fragment header; a first
// fragment's must go on to the upper layer's header (RFC 7112).

// maxExtensions bounds the extension headers of a datagram pf takes, as
// ip's own walk does (header.ParseIPv6Extensions): no sender needs more
// than a handful, and a long chain is how filters are evaded (RFC 7112).
const maxExtensions = 8

// chain is where a datagram's extension headers lead.
type chain struct {
	upper       uint8 // the upper layer's protocol (a fragment's Next Header)
	upperOffset int   // where its header starts, from the fixed header's first byte
	fragment    bool  // a fragment (not an atomic one)
	fragOffset  int   // in bytes
	fragID      uint32
}

// walkExtensions follows the extension headers of the IPv6 datagram b,
// which holds at least the fixed header and ends where the datagram (or,
// for a quote, the bytes quoted) ends.
func walkExtensions(b []byte) (chain, malformed) {
	var c chain
	next, off := b[6], header.IPv6MinimumSize
	for n := 0; ; n++ {
		switch next {
		case header.ProtocolIPv6HopByHop, header.ProtocolIPv6Routing, header.ProtocolIPv6DstOpts, header.ProtocolIPv6Fragment:
		default:
			c.upper, c.upperOffset = next, off
			return c, wellFormed
		}
		if n == maxExtensions || next == header.ProtocolIPv6HopByHop && n != 0 {
			return chain{}, badExtensions
		}
		if off+8 > len(b) {
			return chain{}, truncated
		}
		h := b[off:]
		if next == header.ProtocolIPv6Fragment {
			word := binary.BigEndian.Uint16(h[2:])
			offset, more := int(word>>3)*8, word&1 != 0
			if offset == 0 && !more {
				next, off = h[0], off+header.IPv6FragmentHeaderSize // atomic
				continue
			}
			if c.fragment {
				return chain{}, badExtensions
			}
			c.fragment, c.fragOffset, c.fragID = true, offset, binary.BigEndian.Uint32(h[4:])
			next, off = h[0], off+header.IPv6FragmentHeaderSize
			if offset != 0 {
				c.upper, c.upperOffset = next, off
				return c, wellFormed // the rest is in the first fragment
			}
			continue
		}
		if next == header.ProtocolIPv6Routing && h[2] == 0 {
			return chain{}, badExtensions
		}
		size := (int(h[1]) + 1) * 8
		if off+size > len(b) {
			return chain{}, truncated
		}
		next, off = h[0], off+size
	}
}

func (p *packet) parseTCP(b []byte) malformed {
	if len(b) < header.TCPMinimumSize {
		return shortTransport
	}
	h := header.TCP(b)
	off := h.DataOffset()
	if off < header.TCPMinimumSize || off > len(b) {
		return shortTransport
	}
	p.sport, p.dport = h.SrcPort(), h.DstPort()
	p.seq, p.ack, p.flags, p.win = h.Seq(), h.Ack(), h.Flags(), h.Window()
	p.dataLen = uint32(len(b) - off)
	p.wscale = -1
	if p.flags&header.TCPFlagSYN != 0 {
		p.wscale = windowScale(h.Options())
	}
	return wellFormed
}

// windowScale is the shift a SYN's window scale option offers (at most 14,
// RFC 7323 §2.3), or -1 if it has none or its options do not parse.
func windowScale(opts []byte) int8 {
	it := header.TCPOptionIterator{Options: opts}
	for it.Next() {
		if it.Kind == header.TCPOptionWindowScale && len(it.Data) == 1 {
			return int8(min(it.Data[0], maxWindowScale))
		}
	}
	return -1
}

func (p *packet) parseUDP(b []byte) malformed {
	if len(b) < header.UDPMinimumSize {
		return shortTransport
	}
	h := header.UDP(b)
	p.sport, p.dport = h.SrcPort(), h.DstPort()
	return wellFormed
}

// parseICMP reads an ICMP message, or an ICMPv6 one: the two share the
// fixed part (type, code, checksum, and the echo identifier where IPv4's
// is), and an error's quote starts after it in both.
func (p *packet) parseICMP(b []byte) malformed {
	if len(b) < header.ICMPv4MinimumSize {
		return shortTransport
	}
	h := header.ICMPv4(b)
	p.icmpType, p.icmpCode = uint8(h.Type()), h.Code()
	switch {
	case p.isEcho():
		p.sport, p.dport = h.Ident(), h.Ident()
	case p.isICMPError() && p.v6:
		p.quoted.parse6(h.Payload())
	case p.isICMPError():
		p.quoted.parse(h.Payload())
	}
	return wellFormed
}

// The ICMP of each family, and the numbers of its messages pf knows.
type icmpNumbers struct {
	proto                  uint8
	echoRequest, echoReply uint8
	errors                 [4]uint8 // those that quote a datagram
}

var icmpOf = [2]icmpNumbers{
	{proto: header.ProtocolICMP, echoRequest: uint8(header.ICMPv4Echo), echoReply: uint8(header.ICMPv4EchoReply),
		// RFC 792's parameter problem (12) quotes its datagram like the others.
		errors: [4]uint8{uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4TimeExceeded), 12, 12}},
	{proto: header.ProtocolICMPv6, echoRequest: uint8(header.ICMPv6EchoRequest), echoReply: uint8(header.ICMPv6EchoReply),
		errors: [4]uint8{uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6PacketTooBig),
			uint8(header.ICMPv6TimeExceeded), uint8(header.ICMPv6ParamProblem)}},
}

// numbers are the ICMP numbers of p's family.
func (p *packet) numbers() *icmpNumbers {
	if p.v6 {
		return &icmpOf[1]
	}
	return &icmpOf[0]
}

// icmp reports whether p is an ICMP message of its family (ICMP in IPv4,
// ICMPv6 in IPv6).
func (p *packet) icmp() bool { return p.proto == p.numbers().proto }

func (p *packet) isEcho() bool {
	n := p.numbers()
	return p.icmp() && (p.icmpType == n.echoRequest || p.icmpType == n.echoReply)
}

func (p *packet) isEchoRequest() bool { return p.icmp() && p.icmpType == p.numbers().echoRequest }

func (p *packet) isICMPError() bool {
	for _, t := range p.numbers().errors {
		if p.icmp() && p.icmpType == t {
			return true
		}
	}
	return false
}

// parse reads the quoted IPv4 datagram b: an IPv4 header and at least 8
// bytes after it. A quote that is not that leaves q invalid: the error is
// then decided by the rules alone.
func (q *quotedFlow) parse(b []byte) {
	if len(b) < header.IPv4MinimumSize {
		return
	}
	ip := header.IPv4(b)
	hl := ip.HeaderLength()
	if ip.Version() != header.IPv4Version || hl < header.IPv4MinimumSize || len(b) < hl+8 || ip.FragmentOffset() != 0 {
		return
	}
	q.src, q.dst = addr4(b[12:]), addr4(b[16:])
	q.ports(ip.Protocol(), b[hl:hl+8], &icmpOf[0])
}

// parse6 reads the quoted IPv6 datagram b: as much of it as the error
// could carry (RFC 4443 §2.4 (c)), which must reach 8 bytes past its
// extension headers.
func (q *quotedFlow) parse6(b []byte) {
	if len(b) < header.IPv6MinimumSize || b[0]>>4 != header.IPv6Version {
		return
	}
	b = b[:min(len(b), header.IPv6MinimumSize+int(header.IPv6(b).PayloadLength()))]
	c, bad := walkExtensions(b)
	if bad != wellFormed || c.fragOffset != 0 || len(b) < c.upperOffset+8 {
		return
	}
	q.src, q.dst = addr16(b[8:]), addr16(b[24:])
	q.ports(c.upper, b[c.upperOffset:c.upperOffset+8], &icmpOf[1])
}

// ports reads the first 8 bytes t of the quoted datagram's proto message.
func (q *quotedFlow) ports(proto uint8, t []byte, icmp *icmpNumbers) {
	q.proto = proto
	switch proto {
	case header.ProtocolTCP:
		q.seq = binary.BigEndian.Uint32(t[4:])
		fallthrough
	case header.ProtocolUDP:
		q.sport, q.dport = binary.BigEndian.Uint16(t), binary.BigEndian.Uint16(t[2:])
	case icmp.proto:
		if t[0] != icmp.echoRequest {
			return // only echo requests make ICMP states
		}
		id := binary.BigEndian.Uint16(t[4:])
		q.sport, q.dport = id, id
	}
	q.valid = true
}

// # Neighbor Discovery
//
// A rule set that says "set default block" and nothing of ICMPv6 would
// cut the appliance off IPv6: without Neighbor Solicitations and
// Advertisements it cannot find its neighbours or defend its addresses,
// without Router Advertisements it takes no SLAAC address or default
// route, and without MLD reports the switch may stop forwarding it its
// solicited-node multicast. So pf passes these without rules
// (ReasonND, Counters.NDPassed), where OpenBSD's pf wants rules
// for them: Router and Neighbor Solicitations and Advertisements with a
// hop limit of 255, and MLD queries and reports (RFC 2710, RFC 3810)
// from a link-local or unspecified source with a hop limit of 1. RFC
// 4861 §6.1, §7.1 has every node drop an ND message whose hop limit is
// not 255, which proves it was not forwarded by a router: these never
// leave the link, so passing them opens nothing beyond it. ip validates
// them further (header.ValidateNDP). Redirects and everything else of
// ICMPv6 stay with the rules.

// linkLocalControl reports whether p is one of the ICMPv6 messages above.
// A fragment never is: RFC 6980 forbids fragmented ND.
func (p *packet) linkLocalControl() bool {
	if !p.v6 || !p.icmp() || p.first || p.later || p.icmpCode != 0 {
		return false
	}
	switch header.ICMPv6Type(p.icmpType) {
	case header.ICMPv6RouterSolicit, header.ICMPv6RouterAdvert, header.ICMPv6NeighborSolic, header.ICMPv6NeighborAdvert:
		return p.hopLimit == header.NDPHopLimit
	case header.ICMPv6MLDQuery, header.ICMPv6MLDReport, header.ICMPv6MLDDone, header.ICMPv6MLDv2Report:
		return p.hopLimit == 1 && (p.src == addr{} || p.src.hi>>54 == 0xfe80>>6) // fe80::/10
	}
	return false
}
