package ops

import (
	"encoding/binary"
	"net/netip"

	"keepnet/servers/header"
)

// MinPathMTU is the smallest path MTU IP believes (Linux's min_pmtu): an
// ICMP "fragmentation needed" saying less is taken as this much, so that
// a forged one cannot make a transport send tiny segments (RFC 5927 §7.1).
const MinPathMTU = 552

// ICMPError is an OpDeliverError's message as a transport needs it.
type ICMPError struct {
	Type header.ICMPv4Type // header.ICMPv4DstUnreachable, ...
	Code uint8
	// MTU is IP's path MTU estimate for Remote's address, for a
	// "fragmentation needed" (RFC 1191: the next-hop MTU, a plateau if
	// the router said none, never below MinPathMTU); 0 otherwise.
	MTU int
	// Local and Remote are the quoted datagram's source and destination,
	// with its ports (the first 4 bytes of a TCP or UDP header).
	Local, Remote netip.AddrPort
	// Quote is the quoted transport header, at least 8 bytes of it.
	Quote []byte
}

// ICMPErrorOf reads the OpDeliverError message b (the ICMP datagram, its
// ICMP header at off), which IP checked (servers/ops: OpDeliverError).
// Only its length is checked again: false if it is too short.
func ICMPErrorOf(b []byte, off int) (ICMPError, bool) {
	if off < 0 || len(b) < off+header.ICMPv4MinimumSize+header.IPv4MinimumSize {
		return ICMPError{}, false
	}
	m := header.ICMPv4(b[off:])
	q := header.IPv4(m.Payload())
	hl := q.HeaderLength()
	if hl < header.IPv4MinimumSize || len(q) < hl+header.ICMPv4ErrorDataSize {
		return ICMPError{}, false
	}
	t := q[hl:]
	e := ICMPError{
		Type:   m.Type(),
		Code:   m.Code(),
		Local:  netip.AddrPortFrom(q.Src(), binary.BigEndian.Uint16(t[0:])),
		Remote: netip.AddrPortFrom(q.Dst(), binary.BigEndian.Uint16(t[2:])),
		Quote:  t,
	}
	if e.Type == header.ICMPv4DstUnreachable && e.Code == header.ICMPv4FragNeeded {
		e.MTU = int(m.MTU())
	}
	return e, true
}
