package tcp

import (
	"encoding/binary"
	"net/netip"
	"time"

	"keepnet/servers/header"
)

// ICMP errors about our segments (ip hands them over: servers/ops
// OpDeliverError). What each means for the connection:
//
//   - Every one is first checked as RFC 5927 §4.1 asks against blind
//     attacks: the quoted segment's sequence number must lie in
//     [SND.UNA, SND.NXT), data we sent and have not seen acknowledged;
//     any other is ignored (ICMPOutOfWindow).
//   - "Fragmentation needed" (RFC 1191 §6.4): the segment size drops to
//     fit the path MTU ip says (its estimate, never below 552); what is
//     in flight was dropped by the narrow hop, so it is all sent again at
//     the new size at once, as after a timeout but without its window
//     reduction and back-off (the idea of Linux's tcp_simple_retransmit):
//     a router's MTU is no congestion signal. The segments the device cuts
//     (TSO) follow, their MSS being the connection's.
//   - Port and protocol unreachable are hard errors during the connection
//     attempt: a SYN-SENT connection ends with ErrRefused (RFC 1122
//     §4.2.3.9; RFC 5461 §4).
//   - Everything else (host and network unreachable, administratively
//     prohibited, time exceeded, parameter problem; port and protocol
//     unreachable once synchronized, RFC 5461 §4.1) is a soft error: it is
//     remembered and is what the connection dies with if it times out
//     (ErrUnreachable instead of ErrTimedOut, as Linux reports
//     EHOSTUNREACH); a segment from the peer forgets it.
//
// A path that drops ICMP as well as the large segments (a PMTU black hole,
// RFC 2923 §2.1) never says its MTU. The retransmission timer does: after
// blackHoleRetries timeouts in a row of more than blackHoleMSS bytes of
// data, the segment size halves, down to blackHoleMSS (what fits the
// 552-byte floor), as Linux does with tcp_mtu_probing=1 (which is off by
// default there). It does not come back up: no RFC 4821 probing.
//
// The soft error is not kept across a restart of tcp: a restarted server
// reports a plain timeout.

// ICMPError is an ICMP error about a segment we sent, as ip delivers it
// (servers/ops.ICMPError).
type ICMPError struct {
	Type header.ICMPv4Type
	Code uint8
	// MTU is the path MTU to Remote, for "fragmentation needed".
	MTU int
	// Local and Remote are the quoted segment's ends; Quote its first
	// bytes (at least 8: ports and sequence number).
	Local, Remote netip.AddrPort
	Quote         []byte
}

// minPathMTU is the least path MTU taken: servers/ops.MinPathMTU, which
// ip applies already; again here so that the Table stands on its own.
const minPathMTU = 552

// HandleICMP takes an ICMP error about one of our segments.
func (t *Table) HandleICMP(m ICMPError) {
	t.c.ICMPIn++
	if len(m.Quote) < 8 {
		t.c.ICMPOutOfWindow++
		return
	}
	id := tuple{localAddr: m.Local.Addr(), localPort: m.Local.Port(), remoteAddr: m.Remote.Addr(), remotePort: m.Remote.Port()}
	e := t.conns[id]
	seq := binary.BigEndian.Uint32(m.Quote[4:])
	if e == nil || !seqInWindow(seq, e.sndUna, e.sndNxt-e.sndUna) {
		t.c.ICMPOutOfWindow++ // RFC 5927 §4.1
		return
	}
	t.touch(e)
	now := t.clock.Now()
	switch {
	case m.Type == header.ICMPv4DstUnreachable && m.Code == header.ICMPv4FragNeeded:
		e.pathMTU(max(m.MTU, minPathMTU), now)
	case m.Type == header.ICMPv4DstUnreachable && e.state == SynSent &&
		(m.Code == header.ICMPv4PortUnreachable || m.Code == header.ICMPv4ProtoUnreachable):
		t.c.ICMPRefused++
		e.terminate(ErrRefused)
	default:
		t.c.ICMPSoftErrors++
		e.softErr = ErrUnreachable
	}
}

// pathMTU lowers the segment size to fit a path MTU of mtu and sends what
// is in flight again at the new size.
func (e *Endpoint) pathMTU(mtu int, now time.Time) {
	mss := mtu - header.IPv4MinimumSize - header.TCPMinimumSize
	if e.tsOK {
		mss -= 12 // what peerOptions leaves for the timestamps
	}
	if mss >= e.smss || e.state == SynSent {
		return // RFC 5927 §7.2: an MTU that would not lower ours changes nothing
	}
	e.t.c.PathMTUReductions++
	e.smss = mss
	if e.sndUna == e.sndNxt || !e.canSend() {
		return
	}
	// Everything unSACKed in flight is lost: resent hole by hole as the
	// window allows, the window itself untouched.
	e.inRecovery, e.inLoss = false, true
	e.recover = e.sndNxt
	e.highRxt = e.sndUna
	e.rxt, e.relost = nil, nil
	e.dupAcks = 0
	e.rttTiming = false
	e.output(now)
}

// timedOut ends the connection because the peer did not answer: with the
// soft error an ICMP message left (RFC 1122 §4.2.3.9), or ErrTimedOut.
func (e *Endpoint) timedOut() {
	if e.softErr != nil {
		e.terminate(e.softErr)
		return
	}
	e.terminate(ErrTimedOut)
}

// Black hole detection (above).
const (
	blackHoleRetries = 3
	blackHoleMSS     = minPathMTU - header.IPv4MinimumSize - header.TCPMinimumSize
)

// blackHole halves the segment size on the blackHoleRetries-th timeout in
// a row, if what is outstanding is larger than blackHoleMSS.
func (e *Endpoint) blackHole() {
	if e.retries != blackHoleRetries || e.smss <= blackHoleMSS || int(e.sndNxt-e.sndUna) <= blackHoleMSS {
		return
	}
	e.smss = max(e.smss/2, blackHoleMSS)
	e.t.c.BlackHoleReductions++
}
