package pf

import (
	"encoding/binary"

	"keepnet/servers/header"
)

// packet is what the filter needs of a datagram, taken from its bytes once
// (parse) and never read from them again: the bytes may lie in a pool a
// neighbour can write.
type packet struct {
	src, dst uint32
	proto    uint8
	length   int    // the IP total length
	ipID     uint16 // for fragments
	later    bool   // a fragment past the first: no transport header
	first    bool   // the first fragment of several

	// sport and dport are the TCP or UDP ports; for ICMP echo and echo
	// reply both are the echo identifier, which names the flow.
	sport, dport uint16

	// TCP.
	seq, ack uint32
	flags    uint8
	win      uint16
	dataLen  uint32 // payload bytes
	wscale   int8   // the window scale option of a SYN; -1 if none

	// ICMP.
	icmpType header.ICMPv4Type
	icmpCode uint8
	quoted   quotedFlow // for ICMP errors
}

// quotedFlow is the datagram an ICMP error quotes: its IP header and the
// first 8 bytes of what followed.
type quotedFlow struct {
	valid        bool
	src, dst     uint32
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
)

// parse fills p from the IPv4 datagram b. It checks what every later read
// relies on: the version, header length and total length, and that a
// whole datagram or first fragment holds its transport header (a first
// fragment too short to hold the ports is refused, as pf does with
// "tiny fragments", so that no rule is decided on ports it cannot see).
// It does not verify checksums: ip verifies them on what it receives, and
// the packets it sends may carry offloaded checksums not yet computed.
func (p *packet) parse(b []byte) malformed {
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
	p.src, p.dst = binary.BigEndian.Uint32(b[12:]), binary.BigEndian.Uint32(b[16:])
	p.proto, p.length, p.ipID = ip.Protocol(), tl, ip.ID()
	p.later = ip.FragmentOffset() != 0
	p.first = !p.later && ip.MoreFragments()
	if p.later {
		return wellFormed
	}
	payload := b[hl:tl]
	switch p.proto {
	case header.ProtocolTCP:
		return p.parseTCP(payload)
	case header.ProtocolUDP:
		return p.parseUDP(payload)
	case header.ProtocolICMP:
		return p.parseICMP(payload)
	}
	return wellFormed
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

func (p *packet) parseICMP(b []byte) malformed {
	if len(b) < header.ICMPv4MinimumSize {
		return shortTransport
	}
	h := header.ICMPv4(b)
	p.icmpType, p.icmpCode = h.Type(), h.Code()
	switch {
	case isEcho(p.icmpType):
		p.sport, p.dport = h.Ident(), h.Ident()
	case isICMPError(p.icmpType):
		p.quoted.parse(h.Payload())
	}
	return wellFormed
}

func isEcho(t header.ICMPv4Type) bool {
	return t == header.ICMPv4Echo || t == header.ICMPv4EchoReply
}

// icmpParamProblem is RFC 792's parameter problem message, an error that
// quotes its datagram like the others.
const icmpParamProblem header.ICMPv4Type = 12

func isICMPError(t header.ICMPv4Type) bool {
	return t == header.ICMPv4DstUnreachable || t == header.ICMPv4TimeExceeded || t == icmpParamProblem
}

// parse reads the quoted datagram b: an IPv4 header and at least 8 bytes
// after it. A quote that is not that leaves q invalid: the error is then
// decided by the rules alone.
func (q *quotedFlow) parse(b []byte) {
	if len(b) < header.IPv4MinimumSize {
		return
	}
	ip := header.IPv4(b)
	hl := ip.HeaderLength()
	if ip.Version() != header.IPv4Version || hl < header.IPv4MinimumSize || len(b) < hl+8 || ip.FragmentOffset() != 0 {
		return
	}
	q.src, q.dst = binary.BigEndian.Uint32(b[12:]), binary.BigEndian.Uint32(b[16:])
	q.proto = ip.Protocol()
	t := b[hl : hl+8]
	switch q.proto {
	case header.ProtocolTCP:
		q.seq = binary.BigEndian.Uint32(t[4:])
		fallthrough
	case header.ProtocolUDP:
		q.sport, q.dport = binary.BigEndian.Uint16(t), binary.BigEndian.Uint16(t[2:])
	case header.ProtocolICMP:
		if header.ICMPv4(t).Type() != header.ICMPv4Echo {
			return // only echo requests make ICMP states
		}
		id := header.ICMPv4(t).Ident()
		q.sport, q.dport = id, id
	}
	q.valid = true
}
