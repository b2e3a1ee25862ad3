package tcp

import (
	"time"

	"keepnet/servers/header"
	"keepnet/servers/ops"
)

// Explicit Congestion Notification (RFC 3168 §6.1), as Linux does it by
// default (net.ipv4.tcp_ecn=2): negotiated when the peer asks, never
// asked for.
//
//   - Setup: a SYN to a listener with ECE and CWR (an "ECN-setup SYN"),
//     itself Not-ECT, is answered by a SYN-ACK with ECE alone (§6.1.1),
//     unless Config.NoECN. A connection made from a SYN cookie does not
//     use ECN: the cookie has no room to remember the request. Our own
//     SYNs ask for nothing, and a SYN-ACK's ECE is ignored.
//   - Sending: on an ECN connection a segment of new data goes ECT(0);
//     retransmissions, pure ACKs, window probes and a FIN without data go
//     Not-ECT (§6.1.4-6.1.5).
//   - Receiving: a segment that arrives marked CE (its IP header's
//     codepoint, servers/ops.DeliveredECN) sets ECE on every segment we
//     send from then on, until a segment with CWR arrives (§6.1.3); a CE
//     after that CWR sets it again. The first CE is acknowledged at once.
//   - Reacting: an ACK with ECE reduces the congestion window as a loss
//     does (the Congestion's OnLoss; cwnd = ssthresh), at most once per
//     window of data — not again until SND.UNA passes what was sent when
//     it did, and not while loss recovery has reduced it already — and
//     the next segment of new data carries CWR (§6.1.2). Such a reduction
//     is never undone.
//
// The state is kept with the connection across a restart (keep_record.go,
// version 3).

// ecnState is a connection's ECN state.
type ecnState struct {
	on   bool   // negotiated
	echo bool   // a CE arrived and no CWR since: ECE on what we send
	cwr  bool   // reduced (or in recovery) on an ECE: CWR on the next new data
	cut  bool   // reduced on an ECE, for the window up to recover
	end  uint32 // SND.NXT when it reduced: ECE is ignored until SND.UNA passes it
}

const (
	flagECE = header.TCPFlagECE
	flagCWR = header.TCPFlagCWR
)

// bits packs the state's flags for the kept record; fromBits is the
// reverse.
func (s ecnState) bits() uint8 {
	var b uint8
	for i, f := range []bool{s.on, s.echo, s.cwr, s.cut} {
		if f {
			b |= 1 << i
		}
	}
	return b
}

func (s *ecnState) fromBits(b uint8) bool {
	s.on, s.echo, s.cwr, s.cut = b&1 != 0, b&2 != 0, b&4 != 0, b&8 != 0
	return b < 16 && (s.on || b == 0)
}

// ecnSetup decides, for a SYN a listener takes, whether the connection
// uses ECN (§6.1.1): the peer asked with ECE and CWR, the SYN is itself
// Not-ECT (an ECT SYN says something on the path or at the peer is
// broken), and we are allowed to.
func (e *Endpoint) ecnSetup(s *segment) {
	if e.t.cfg.NoECN || !s.has(flagECE) || !s.has(flagCWR) || s.ecn != ops.ECNNotECT {
		return
	}
	e.ecn.on = true
	e.t.c.ECNConnections++
}

// ecnSYNFlags is what our SYN-ACK adds: ECE if we agreed to ECN.
func (e *Endpoint) ecnSYNFlags() uint8 {
	if e.ecn.on && e.state == SynReceived {
		return flagECE
	}
	return 0
}

// ecnInput takes the ECN signals of an acceptable segment in a
// synchronized state: CWR ends the echo, then CE starts it (again), and
// an ECE in an ACK reduces the window (ecnReduce). It runs before the
// ACK is processed.
func (e *Endpoint) ecnInput(s *segment, now time.Time) {
	if !e.ecn.on {
		return
	}
	if s.has(flagCWR) {
		e.t.c.ECNCWRIn++
		e.ecn.echo = false
	}
	if s.ecn == ops.ECNCE {
		e.t.c.ECNCEIn++
		if !e.ecn.echo {
			e.ackNow = true // tell the sender now, not a delayed ACK later
		}
		e.ecn.echo = true
	}
}

// ecnAck reacts to an ACK's ECE once the ACK is processed (SND.UNA
// advanced): one reduction per window of data.
func (e *Endpoint) ecnAck(s *segment, now time.Time) {
	if !e.ecn.on || !s.has(flagECE) || s.has(flagSYN) {
		return
	}
	e.t.c.ECNECEIn++
	if e.ecn.cut && seqLEQ(e.sndUna, e.ecn.end) {
		return // reduced for this window already
	}
	e.ecn.cut, e.ecn.end = true, e.sndNxt
	e.ecn.cwr = true
	if e.inRecovery || e.inLoss {
		return // the loss reduced it in this window
	}
	e.t.c.ECNReductions++
	e.ssthresh = e.cc.OnLoss(e.cwnd, int(e.sndNxt-e.sndUna), e.smss, now)
	e.cwnd = e.ssthresh
	e.undoArmed = false // congestion the network reported: nothing to undo
}

// ecnMark adds ECE and CWR to the flags of a segment send is about to
// send from seq with n bytes of data, and returns its codepoint: ECT(0)
// for new data on an ECN connection, Not-ECT for anything else.
func (e *Endpoint) ecnMark(seq uint32, n int, flags *uint8) uint8 {
	if !e.ecn.on {
		return ops.ECNNotECT
	}
	if e.ecn.echo {
		*flags |= flagECE
	}
	if n == 0 || seq != e.sndNxt {
		return ops.ECNNotECT // pure ACK, probe, FIN alone, or a retransmission
	}
	if e.ecn.cwr {
		*flags |= flagCWR
		e.ecn.cwr = false
		e.t.c.ECNCWROut++
	}
	return ops.ECNECT0
}
