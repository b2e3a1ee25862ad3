package tcp

import (
	"time"

	"keepnet/servers/header"
	"keepnet/servers/transport"
)

// tsNow is our timestamp clock: milliseconds plus the connection's offset.
func (e *Endpoint) tsNow(now time.Time) uint32 {
	return uint32(now.Sub(e.t.epoch)/time.Millisecond) + e.tsOff
}

// sendSYN sends our SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED) and arms the
// retransmission timer.
func (e *Endpoint) sendSYN(now time.Time) {
	o := header.TCPOptions{MSS: uint16(e.t.mssFor(e.id.remoteAddr)), HasMSS: true, SACKPermitted: e.sackOK}
	if e.ourWS {
		o.HasWS, o.WindowScale = true, e.rcvShift
	}
	if e.tsOK {
		o.HasTimestamps, o.TSVal, o.TSEcr = true, e.tsNow(now), e.tsRecent
	}
	flags, ack := uint8(header.TCPFlagSYN), uint32(0)
	if e.state == SynReceived {
		flags |= header.TCPFlagACK | e.ecnSYNFlags()
		ack = e.rcvNxt
	}
	win := min(e.rcvWindow(), 65535) // a SYN's window is never scaled
	e.rcvAdv = e.rcvNxt + uint32(win)
	e.lastAck = e.rcvNxt
	e.t.sendRaw(e.id, e.iss, ack, flags, uint16(win), &o)
	e.sndNxt = e.iss + 1
	e.setTimer(timerRTO, now.Add(e.rto))
	e.rttTiming = e.retries == 0 // Karn: a retransmitted SYN is not timed
	e.rttSeq, e.rttStart = e.iss, now
}

// send sends one segment of snd from seq (off bytes past sndUna) with n
// data bytes and flags, always with ACK.
func (e *Endpoint) send(now time.Time, seq uint32, n int, flags uint8) {
	var o header.TCPOptions
	if e.tsOK {
		o.HasTimestamps, o.TSVal, o.TSEcr = true, e.tsNow(now), e.tsRecent
	}
	base := o.Size() // what smss already leaves room for
	if e.sackOK && (len(e.ooo) > 0 || e.rcvDSACK.size() > 0) {
		// SACK blocks lengthen the header. A segment of at most one MSS
		// takes only as many as fit beside its data on the wire; an
		// offloaded one takes them all and is cut at a smaller MSS.
		room := header.TCPMaximumOptionsSize
		if n <= e.smss {
			room = base + e.smss - n
		}
		e.sackBlocks(&o, room)
	}
	optLen := o.Size()
	// Built in place, in a buffer of the out pool that goes to IP as it
	// is: the data is copied once, from the send buffer. Aside when none
	// is free (Send then holds a copy).
	size := header.TCPMinimumSize + optLen + n
	b := e.t.out.Buffer(size)
	if len(b) < size {
		b = e.t.scratch[:size]
	}
	o.Encode(b[header.TCPMinimumSize:])
	h := header.TCP(b)
	win := e.rcvWindow() >> e.rcvShift
	win = min(win, 65535)
	flags |= header.TCPFlagACK
	ecn := e.ecnMark(seq, n, &flags)
	h.Encode(&header.TCPFields{SrcPort: e.id.localPort, DstPort: e.id.remotePort, Seq: seq, Ack: e.rcvNxt,
		Flags: flags, Window: uint16(win), Options: b[header.TCPMinimumSize : header.TCPMinimumSize+optLen]})
	if n > 0 {
		e.snd.Peek(int(seq-e.sndUna), h.Payload())
	}
	if !e.t.offload {
		h.SetChecksum(h.ComputeChecksum(e.id.localAddr, e.id.remoteAddr))
	}
	// What we advertise now: the right edge never moves left.
	if adv := e.rcvNxt + uint32(win)<<e.rcvShift; seqGT(adv, e.rcvAdv) {
		e.rcvAdv = adv
	}
	e.lastAck = e.rcvNxt
	e.ackNow = false
	e.stopTimer(timerDelack)
	e.t.c.OutSegs++
	off := transport.Offload{ECN: ecn}
	switch {
	case !e.t.offload:
	case n > e.smss:
		e.t.c.OutOffloaded++
		off.Checksum, off.MSS = true, e.smss-(optLen-base)
	default:
		off.Checksum = true
	}
	e.t.out.Send(h, e.id.localAddr, e.id.remoteAddr, off)
}

// tso says whether the device cuts this connection's segments: over IPv4
// only. Neither of QEMU 7.2's models cuts IPv6 segments right (the e1000
// writes a payload length 40 bytes too long, the e1000e fragments;
// e1000/variant.go), so ops.Output carries no segment size to IPv6; the
// device still checksums them.
func (e *Endpoint) tso() bool { return e.t.tso && e.id.remoteAddr.Is4() }

// maxSend is the most new data one segment may carry: one MSS, or with
// segmentation offload as many whole MSS as fit MaxOffloadData, which the
// device cuts into MSS-sized segments on the wire.
func (e *Endpoint) maxSend() int {
	if !e.tso() || e.ecn.cwr { // CWR goes in one segment, not in each the device cuts
		return e.smss
	}
	return MaxOffloadData / e.smss * e.smss
}

// sackBlocks fills o with the D-SACK block if a duplicate came (RFC 2883
// §4, once), then the out-of-order ranges, the one holding the latest
// segment first (RFC 2018 §4), as many as keep o's size within room.
func (e *Endpoint) sackBlocks(o *header.TCPOptions, room int) {
	var blocks []header.TCPSACKBlock
	dsack := e.rcvDSACK.size() > 0
	if d := e.rcvDSACK; dsack {
		blocks = append(blocks, header.TCPSACKBlock{Left: d.left, Right: d.right})
	}
	first := len(blocks)
	for _, s := range e.ooo {
		blocks = append(blocks, header.TCPSACKBlock{Left: s.seq, Right: s.end()})
	}
	for i := first; i < len(blocks); i++ {
		if b := blocks[i]; seqInWindow(e.oooLast, b.Left, b.Right-b.Left) {
			blocks[first], blocks[i] = blocks[i], blocks[first]
			break
		}
	}
	o.NumSACK = copy(o.SACK[:], blocks)
	for o.NumSACK > 0 && o.Size() > room {
		o.NumSACK--
	}
	if dsack && o.NumSACK > 0 {
		e.rcvDSACK = seqRange{} // sent: once is enough
	}
}

// sendAck sends a bare ACK now.
func (e *Endpoint) sendAck(now time.Time) {
	e.send(now, e.sndNxt, 0, 0)
}

// finSeq is the sequence number of our FIN (meaningful once finQ).
func (e *Endpoint) finSeq() uint32 { return e.sndUna + uint32(e.snd.Len()) }

// canSend reports a state in which data and FIN go out.
func (e *Endpoint) canSend() bool {
	switch e.state {
	case Established, CloseWait, FinWait1, Closing, LastAck:
		return true
	}
	return false
}

// output sends what the send and congestion windows, Nagle and SWS
// avoidance allow, then an ACK if one is owed.
func (e *Endpoint) output(now time.Time) {
	if e.t.holding {
		if !e.held {
			e.held = true
			e.t.held = append(e.t.held, e)
		}
		return
	}
	if e.canSend() {
		e.transmit(now)
	}
	if e.ackNow {
		e.sendAck(now)
	}
}

// transmit sends what cwnd - pipe allows (RFC 6675 §5 (C); for NewReno,
// cwnd - FlightSize) in NextSeg's order: lost data first, then new data as
// the peer's window, Nagle and SWS avoidance allow, then, in SACK
// recovery, holes not yet lost and the rescue retransmission.
func (e *Endpoint) transmit(now time.Time) {
	pipe := e.pipe()
	for {
		room := e.cwnd - pipe
		r, kind := e.nextSeg(false)
		if kind == segNone {
			if sent := e.transmitNew(now, room); sent > 0 {
				pipe += sent
				continue
			}
			r, kind = e.nextSeg(true)
		}
		if kind == segNone || room < min(r.size(), e.smss) {
			break
		}
		sent := e.retransmit(now, r)
		if sent == 0 {
			break
		}
		e.retransmitted(seqRange{r.left, r.left + sent}, kind)
		pipe += int(sent)
		if !e.armed(timerRTO) {
			e.setTimer(timerRTO, now.Add(e.rto))
		}
	}
	// Zero window with something to send and nothing in flight: probe.
	pending := e.snd.Len() > int(e.sndNxt-e.sndUna) || e.finQ && !e.finAckd && !seqGT(e.sndNxt, e.finSeq())
	if e.sndWnd == 0 && pending && e.sndNxt == e.sndUna && !e.armed(timerPersist) {
		e.setTimer(timerPersist, now.Add(e.persistTimeout()))
		e.stopTimer(timerRTO)
	}
}

// transmitNew sends one segment of new data (NextSeg rule (2)), or our
// FIN, within room bytes of congestion window and the peer's window, and
// returns the sequence space it sent.
func (e *Endpoint) transmitNew(now time.Time, room int) int {
	flight := int(e.sndNxt - e.sndUna)
	avail := e.snd.Len() - flight
	finPending := e.finQ && !e.finAckd && !seqGT(e.sndNxt, e.finSeq())
	if avail <= 0 && !finPending {
		return 0
	}
	avail = max(avail, 0)
	usable := max(min(int(e.sndWnd)-flight, room), 0)
	n := min(avail, e.maxSend(), usable)
	fin := finPending && n == avail
	if n == 0 && !fin {
		return 0
	}
	if n == 0 && fin && flight > 0 && usable == 0 && avail == 0 && e.sndWnd == 0 {
		return 0 // the FIN waits for the window like data would
	}
	// Sender SWS avoidance and Nagle (RFC 9293 §3.8.6.2.1, RFC 896):
	// with data in flight, hold a short segment back, whether the
	// window or the data is what makes it short (NoDelay lifts the
	// latter).
	if n > 0 && n < e.smss && !fin && flight > 0 && (n < avail || !e.noDelay) {
		return 0
	}
	// Segmentation offload deferral (the idea of Linux's
	// tcp_tso_should_defer): each ACK opens the window by an MSS or two,
	// and sending that at once would hand the device segments it need not
	// cut. While data is in flight, whose ACKs will open the window
	// further, wait until a third of the congestion window (or a whole
	// offload segment, or all that is left) can go in one.
	if e.tso() && n > 0 && n < avail && n < e.maxSend() && flight > 0 && n < e.cwnd/3 {
		return 0
	}
	flags := uint8(0)
	if n > 0 && n == avail {
		flags |= header.TCPFlagPSH
	}
	if fin {
		flags |= header.TCPFlagFIN
	}
	seq := e.sndNxt
	e.send(now, seq, n, flags)
	if !e.tsOK && !e.rttTiming && n > 0 {
		e.rttTiming, e.rttSeq, e.rttStart = true, seq, now
	}
	sent := n
	if fin {
		sent++
	}
	e.rackSent(now, seqRange{seq, seq + uint32(sent)}, false)
	e.sndNxt += uint32(sent)
	if !e.armed(timerRTO) {
		e.setTimer(timerRTO, now.Add(e.rto))
	}
	e.tlpArm(now)
	e.stopTimer(timerPersist)
	e.persistN = 0
	return sent
}

func (e *Endpoint) persistTimeout() time.Duration {
	d := max(e.rto, MinRTO)
	for range e.persistN {
		d *= 2
		if d >= maxPersist {
			return maxPersist
		}
	}
	return d
}

// rttSample updates SRTT, RTTVAR and RTO (RFC 6298 §2).
func (e *Endpoint) rttSample(r time.Duration) {
	if r < 0 {
		return
	}
	if !e.hasRTT {
		e.srtt, e.rttvar, e.hasRTT = r, r/2, true
	} else {
		d := e.srtt - r
		if d < 0 {
			d = -d
		}
		e.rttvar = (3*e.rttvar + d) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.rto = clampRTO(e.srtt + max(time.Millisecond, 4*e.rttvar))
}

func clampRTO(d time.Duration) time.Duration { return min(max(d, MinRTO), MaxRTO) }

// tick fires the timers due at now.
func (e *Endpoint) tick(now time.Time) {
	due := func(k timerKind) bool { return e.armed(k) && !e.timers[k].After(now) }
	if due(timerClose) {
		e.terminate(nil)
		return
	}
	if due(timerRTO) {
		e.stopTimer(timerRTO)
		e.timeout(now)
		if e.state == Closed {
			return
		}
	}
	if due(timerRACK) {
		e.stopTimer(timerRACK)
		e.rackTimeout(now)
	}
	if due(timerTLP) {
		e.stopTimer(timerTLP)
		e.tlpProbe(now)
	}
	if due(timerPersist) {
		e.stopTimer(timerPersist)
		// A zero-window probe, as Linux sends it: an old sequence number
		// and no data, which the peer must answer with an ACK carrying its
		// window (RFC 9293 §3.10.7.4), without using sequence space.
		if e.sndWnd == 0 && e.sndNxt == e.sndUna {
			e.send(now, e.sndUna-1, 0, 0)
		}
		e.persistN++
		if e.sndWnd == 0 {
			e.setTimer(timerPersist, now.Add(e.persistTimeout()))
		}
	}
	if due(timerKeepalive) {
		e.keepalive(now)
		if e.state == Closed {
			return
		}
	}
	if due(timerDelack) {
		e.stopTimer(timerDelack)
		e.sendAck(now)
	}
	e.wake()
}

// timeout is the retransmission timer's expiry (RFC 6298 §5.4-5.7).
func (e *Endpoint) timeout(now time.Time) {
	e.t.c.Timeouts++
	e.retries++
	e.rto = min(2*e.rto, MaxRTO)
	switch e.state {
	case SynSent, SynReceived:
		if e.retries > maxSynRetries {
			e.timedOut()
			return
		}
		e.t.c.Retransmits++
		if e.rto < InitialRTO && !e.hasRTT {
			e.rto = InitialRTO
		}
		e.sendSYN(now)
		return
	}
	if e.retries > maxRetries {
		e.timedOut()
		return
	}
	if e.sndUna == e.sndNxt {
		return // nothing outstanding any more
	}
	e.blackHole()
	// RFC 6298 §5.4-5.6 with RFC 6675 §5.1: one segment of window, and
	// the unSACKed data outstanding goes again, hole by hole, as it
	// opens.
	e.enterLoss(now)
	if e.canSend() {
		e.transmit(now)
	}
	e.setTimer(timerRTO, now.Add(e.rto))
}

// keepalive sends a probe (RFC 9293 §3.8.4: SEG.SEQ = SND.NXT-1, no data)
// or gives up.
func (e *Endpoint) keepalive(now time.Time) {
	if !e.kaOn || !e.synchronized() {
		e.stopTimer(timerKeepalive)
		return
	}
	if e.sndNxt != e.sndUna || e.snd.Len() > 0 {
		// Data outstanding or waiting: the retransmission and persist
		// timers watch the peer (as Linux's keepalive does, it waits).
		e.kaProbes = 0
		e.setTimer(timerKeepalive, now.Add(e.kaIdle))
		return
	}
	if e.kaProbes >= e.kaCount {
		e.t.c.KeepAliveTimeouts++
		e.timedOut()
		return
	}
	e.kaProbes++
	e.t.c.KeepAliveProbes++
	e.send(now, e.sndUna-1, 0, 0)
	e.setTimer(timerKeepalive, now.Add(e.kaInterval))
}
