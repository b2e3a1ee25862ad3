package pf

import (
	"time"

	"keepnet/servers/header"
)

// flowKey names a tracked flow whichever way its packets go: its two
// endpoints in a fixed order (lo is the smaller address, then port), the
// family, the protocol, and the direction packets from lo cross the
// interface. A
// packet and its reply thus compute the same key, so one lookup finds the
// state either way; and since the direction is in the key, a forwarded
// flow has a state for the way in and one for the way out, each created by
// a rule of its own direction, as in pf. States are not bound to an
// interface (pf's default "state-policy floating").
type flowKey struct {
	lo, hi         addr
	loPort, hiPort uint16
	proto          uint8
	loDir          Dir
	v6             bool
}

// keyOf is the key of a packet of family v6 from src to dst going dir,
// and whether its sender is the lo endpoint.
func keyOf(v6 bool, proto uint8, src, dst addr, sport, dport uint16, dir Dir) (k flowKey, fromLo bool) {
	if src.less(dst) || src == dst && sport <= dport {
		return flowKey{src, dst, sport, dport, proto, dir, v6}, true
	}
	return flowKey{dst, src, dport, sport, proto, dir.reverse(), v6}, false
}

// peerState is how far one side of a flow has got. The TCP states follow
// the side's own SYN and FIN and whether the other side acknowledged them;
// the others count the side's packets.
type peerState uint8

const (
	peerNone     peerState = iota // has sent nothing yet
	peerSingle                    // UDP, ICMP, other: has sent one packet
	peerMultiple                  // has sent more than one

	tcpSynSent     // sent its SYN
	tcpEstablished // its SYN was acknowledged
	tcpFinSent     // sent its FIN
	tcpFinAcked    // its FIN was acknowledged
	tcpClosed      // an RST went either way

	peerStateEnd // one past the last valid value, for checking records
)

// peer is one side of a tracked flow. For TCP it holds the side's
// sequence space as pf tracks it (tcptrack.go).
type peer struct {
	state peerState
	// end is the highest sequence number the side has sent, plus one:
	// the end of its data, SYN and FIN.
	end uint32
	// limit is the highest end the side may send: the most the other side
	// has acknowledged plus the window it advertised with it.
	limit uint32
	// maxWin is the largest window the side has advertised, scaled.
	maxWin uint32
	// scale is the window scale shift of the side's windows once both
	// SYNs agreed to scaling; offered is what its SYN offered (-1: none).
	scale   uint8
	offered int8
}

// Sides of a state, as indexes of state.peers.
const (
	initiator = 0 // the side whose packet created the state
	responder = 1
)

// state is a tracked flow.
type state struct {
	key    flowKey
	initLo bool // the initiator is the key's lo endpoint
	peers  [2]peer
	// created and last are when the state was made and last matched, in
	// Unix nanoseconds; the state expires its class's timeout after last.
	created, last int64
	// icmpError: an ICMP error quoted this ICMP or ICMPv6 flow
	// (icmp.error applies).
	icmpError bool
	// rule is the index of the rule that created the state, in the rule
	// set of its time (a later rule set may number rules differently).
	rule    int32
	packets [2]uint64 // by side
	bytes   [2]uint64
}

// side is which side of st sent a packet whose key said fromLo.
func (st *state) side(fromLo bool) int {
	if fromLo == st.initLo {
		return initiator
	}
	return responder
}

// timeout is how long st may stay idle under tm.
func (st *state) timeout(tm *Timeouts) time.Duration {
	a, b := st.peers[initiator].state, st.peers[responder].state
	switch st.key.proto {
	case header.ProtocolTCP:
		return tcpTimeout(a, b, tm)
	case header.ProtocolUDP:
		return countTimeout(a, b, tm.UDPFirst, tm.UDPSingle, tm.UDPMultiple)
	case header.ProtocolICMP, header.ProtocolICMPv6:
		if st.icmpError {
			return tm.ICMPError
		}
		return tm.ICMPFirst
	}
	return countTimeout(a, b, tm.OtherFirst, tm.OtherSingle, tm.OtherMultiple)
}

// tcpTimeout follows pf: the flow's least advanced side decides while it
// opens, its most advanced one once it closes.
func tcpTimeout(a, b peerState, tm *Timeouts) time.Duration {
	lo, hi := min(a, b), max(a, b)
	switch {
	case hi == tcpClosed || lo >= tcpFinAcked:
		return tm.TCPClosed
	case lo >= tcpFinSent:
		return tm.TCPFinWait
	case hi >= tcpFinSent:
		return tm.TCPClosing
	case b == peerNone:
		return tm.TCPFirst
	case lo < tcpEstablished:
		return tm.TCPOpening
	}
	return tm.TCPEstablished
}

// countTimeout is the UDP (and other protocols') rule: first after one
// packet, single while only the initiator sends, multiple once both have.
func countTimeout(init, resp peerState, first, single, multiple time.Duration) time.Duration {
	switch {
	case resp != peerNone:
		return multiple
	case init == peerMultiple:
		return single
	}
	return first
}

// count records a packet from a side in the UDP/ICMP/other way.
func (pe *peer) count() {
	if pe.state < peerMultiple {
		pe.state++
	}
}

// expired reports whether st, idle since st.last, has timed out at now.
func (st *state) expired(now int64, tm *Timeouts) bool {
	return now-st.last >= int64(st.timeout(tm))
}
