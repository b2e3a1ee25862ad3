package pf

import "keepnet/servers/header"

// # TCP window tracking
//
// A state follows each side's sequence space, in the manner of pf's
// stateful tracking (G. van Rooij, "Real Stateful TCP Packet Filtering in
// IP Filter", 2001) and netfilter's tcp conntrack. For each side the state
// knows end (how far it has sent), limit (how far the other side lets it
// send: the highest acknowledgment plus window seen from the other side)
// and maxWin (the largest window it advertised). A segment from side S to
// side D, covering sequence numbers [seq, seq+len) where len counts data,
// SYN and FIN, is in the window when
//
//	seq+len <= S.limit                  it sends nothing D did not allow;
//	seq     >= S.end - max(D.maxWin, 64K)  it is no older than a window
//	                                    (a retransmission, a keepalive);
//	and, if it carries an ACK,
//	D.end - ackSkew<<S.scale <= ack <= D.end + ackSkew
//	                                    it acknowledges about what D sent.
//
// The bounds are deliberately loose (pf's): the filter sees segments in
// an order the endpoints may not, and a state adopted after a crash may be
// one segment behind. They still refuse what is plainly forged or stale:
// an RST or data from far outside the window, an ACK for data never sent.
// A segment outside is dropped and counted (Counters.BadWindow); it does
// not update the state.

// maxWindowScale is RFC 7323's largest shift.
const maxWindowScale = 14

// ackSkew is how far an acknowledgment may stray from what its receiver
// has sent (pf's MAXACKWINDOW: a maximum window and a segment).
const ackSkew = 65535 + 1500

// minWindowSlack is how far back a retransmission may start while the
// receiver's window is unknown or small.
const minWindowSlack = 65535

// seqLE, seqGE compare sequence numbers modulo 2^32 (RFC 9293 §3.4).
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGE(a, b uint32) bool { return int32(a-b) >= 0 }
func seqMax(a, b uint32) uint32 {
	if seqGE(a, b) {
		return a
	}
	return b
}

// segEnd is the sequence number just past segment p.
func (p *packet) segEnd() uint32 {
	end := p.seq + p.dataLen
	if p.flags&header.TCPFlagSYN != 0 {
		end++
	}
	if p.flags&header.TCPFlagFIN != 0 {
		end++
	}
	return end
}

// startTCP sets up the initiator of a new state from its SYN p.
func (st *state) startTCP(p *packet) {
	in := &st.peers[initiator]
	in.state = tcpSynSent
	in.end = p.segEnd()
	in.limit = in.end
	in.maxWin = max(uint32(p.win), 1)
	in.offered = p.wscale
	st.peers[responder].offered = -1
}

// trackTCP checks segment p from side from against the state's windows
// and, if it fits, updates the state. It reports whether it fit.
func (st *state) trackTCP(p *packet, from int) bool {
	src, dst := &st.peers[from], &st.peers[1-from]
	if src.state == peerNone {
		st.firstFromResponder(p, src, dst)
	}
	if !st.inWindow(p, src, dst) {
		return false
	}
	win := uint32(p.win)
	if p.flags&header.TCPFlagSYN == 0 {
		win <<= src.scale
	}
	src.end = seqMax(src.end, p.segEnd())
	src.maxWin = max(src.maxWin, win, 1)
	if p.flags&header.TCPFlagACK != 0 {
		dst.limit = seqMax(dst.limit, p.ack+max(win, 1))
	}
	st.advance(p, src, dst)
	return true
}

// firstFromResponder sets up the responder from its first segment
// (normally the SYN-ACK), and settles window scaling: a side's windows
// are scaled only if both SYNs carried the option (RFC 7323 §2.2).
func (st *state) firstFromResponder(p *packet, src, dst *peer) {
	src.end = p.segEnd()
	src.limit = src.end
	src.maxWin = max(uint32(p.win), 1)
	src.offered = p.wscale
	if p.flags&header.TCPFlagSYN != 0 && src.offered >= 0 && dst.offered >= 0 {
		src.scale, dst.scale = uint8(src.offered), uint8(dst.offered)
	} else {
		src.scale, dst.scale = 0, 0
	}
}

// inWindow applies the bounds of the package doc's TCP section.
func (st *state) inWindow(p *packet, src, dst *peer) bool {
	end := p.segEnd()
	if !seqLE(end, src.limit) {
		return false
	}
	if !seqGE(p.seq, src.end-max(dst.maxWin, minWindowSlack)) {
		return false
	}
	if p.flags&header.TCPFlagACK == 0 || dst.state == peerNone {
		return true
	}
	return seqLE(p.ack, dst.end+ackSkew) && seqGE(p.ack, dst.end-ackSkew<<src.scale)
}

// advance moves the sides' states on by p's flags.
func (st *state) advance(p *packet, src, dst *peer) {
	f := p.flags
	if f&header.TCPFlagRST != 0 {
		src.state, dst.state = tcpClosed, tcpClosed
		return
	}
	if f&header.TCPFlagSYN != 0 && src.state < tcpSynSent {
		src.state = tcpSynSent
	}
	if f&header.TCPFlagFIN != 0 && src.state < tcpFinSent {
		src.state = tcpFinSent
	}
	if f&header.TCPFlagACK == 0 {
		return
	}
	switch {
	case dst.state == tcpSynSent:
		dst.state = tcpEstablished
	case dst.state == tcpFinSent && seqGE(p.ack, dst.end):
		dst.state = tcpFinAcked
	}
}

// reusable reports whether a new SYN may replace st: both sides are done
// (pf lets a SYN reopen a closed flow's 4-tuple instead of blocking it for
// tcp.closed).
func (st *state) reusable() bool {
	a, b := st.peers[initiator].state, st.peers[responder].state
	return a == tcpClosed || b == tcpClosed || a >= tcpFinAcked && b >= tcpFinAcked
}
