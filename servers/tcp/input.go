package tcp

import (
	"slices"
	"time"

	"keepnet/servers/header"
)

const (
	flagFIN = header.TCPFlagFIN
	flagSYN = header.TCPFlagSYN
	flagRST = header.TCPFlagRST
	flagPSH = header.TCPFlagPSH
	flagACK = header.TCPFlagACK
)

// pawsIdle is how long TS.Recent stays valid without updates (RFC 7323
// §5.5: 24 days).
const pawsIdle = 24 * 24 * time.Hour

// input processes one segment for the connection, in the order of RFC 9293
// §3.10.7.3 (SYN-SENT) and §3.10.7.4 (the other states).
func (e *Endpoint) input(s *segment, now time.Time) {
	defer e.wake()
	switch e.state {
	case Closed:
		return
	case SynSent:
		e.inputSynSent(s, now)
		return
	}
	if e.kaOn && e.synchronized() {
		e.kaProbes = 0
		e.setTimer(timerKeepalive, now.Add(e.kaIdle))
	}

	if e.state == SynReceived && s.has(flagSYN) {
		switch {
		case !s.has(flagACK) && s.seq == e.irs:
			// The peer's SYN again: our SYN-ACK was lost.
			e.t.c.Retransmits++
			e.sendSYN(now)
			return
		case e.listener == nil && s.has(flagACK) && s.seq+1 == e.rcvNxt && s.ack == e.sndNxt:
			// Simultaneous open: the peer's SYN-ACK acknowledges our SYN;
			// its SYN we have already. Keep the ACK (as Linux does).
			s.flags &^= flagSYN
			s.seq++
		}
	}

	// PAWS (RFC 7323 §5.3 R1-R2).
	if e.tsOK && s.opts.HasTimestamps && !s.has(flagRST) && seqLT(s.opts.TSVal, e.tsRecent) {
		switch {
		case now.Sub(e.tsRecentAt) > pawsIdle:
			e.tsRecent, e.tsRecentAt = s.opts.TSVal, now // TS.Recent too old to judge by
		case e.disorderedAck(s):
			// Overtaken by a later segment, harmless: processed, but
			// TS.Recent stays (its TSval is older).
		default:
			e.t.c.InPAWSDrops++
			if s.length() > 0 {
				// R1's ACK. A segment without data or flags is not
				// answered: an ACK for an ACK would reach the peer as a
				// duplicate ACK, and feed loops.
				e.sendAck(now)
			}
			return
		}
	}

	// 1. Is the segment acceptable?
	wnd := uint32(0)
	if seqGT(e.rcvAdv, e.rcvNxt) {
		wnd = e.rcvAdv - e.rcvNxt
	}
	if !acceptable(s, e.rcvNxt, wnd) {
		if wnd == 0 && s.seq == e.rcvNxt && s.has(flagACK) && !s.has(flagRST|flagSYN) {
			// A closed window accepts no data but still takes ACKs.
			if len(s.data) > 0 {
				s.data = nil
				s.flags &^= flagFIN
			}
			e.ackNow = true
		} else {
			if !s.has(flagRST) {
				if end := s.seq + uint32(len(s.data)); seqLEQ(end, e.rcvNxt) {
					e.dsackFor(s.seq, end) // data we have: a D-SACK says so
				}
				e.sendAck(now)
			}
			return
		}
	}

	// 2. RST (RFC 5961 §3.2): exactly RCV.NXT resets, elsewhere in the
	// window it is challenged.
	if s.has(flagRST) {
		if s.seq != e.rcvNxt {
			if e.t.challengeAllowed(now) {
				e.sendAck(now)
			}
			return
		}
		switch e.state {
		case SynReceived:
			if e.listener != nil {
				e.terminate(nil) // back to LISTEN: the listener forgets it
			} else {
				e.terminate(ErrRefused)
			}
		case Closing, LastAck:
			e.terminate(nil)
		default:
			e.terminate(ErrReset)
		}
		return
	}

	// 4. SYN in a synchronized state (RFC 5961 §4.2): challenge ACK.
	if s.has(flagSYN) {
		if e.t.challengeAllowed(now) {
			e.sendAck(now)
		}
		return
	}

	e.trim(s, wnd)
	e.ecnInput(s, now)

	// TS.Recent (RFC 7323 §4.3).
	if e.tsOK && s.opts.HasTimestamps && seqGEQ(s.opts.TSVal, e.tsRecent) && seqLEQ(s.seq, e.lastAck) {
		e.tsRecent, e.tsRecentAt = s.opts.TSVal, now
	}

	// 5. ACK.
	if !s.has(flagACK) {
		return
	}
	if e.state == SynReceived {
		if !seqGT(s.ack, e.sndUna) || seqGT(s.ack, e.sndNxt) {
			e.t.sendRaw(e.id, s.ack, 0, flagRST, 0, nil)
			return
		}
		e.establish(s, now)
	}
	if !e.processAck(s, now) {
		return
	}
	e.ecnAck(s, now)

	// 7-8. Data and FIN.
	switch e.state {
	case Established, FinWait1, FinWait2:
		e.receive(s, now)
		if e.state == Closed {
			return
		}
	}
	e.output(now)
}

// disorderedAck reports a segment that fails PAWS only because the network
// reordered it behind a later one from the same peer (the idea of Linux's
// tcp_disordered_ack): a pure ACK, in sequence, that acknowledges nothing
// new and changes no window, not older than an RTO. Such an ACK may carry
// SACK blocks loss recovery wants, and cannot be an old duplicate from an
// earlier incarnation that harms: it changes no state but the dup-ACK count.
func (e *Endpoint) disorderedAck(s *segment) bool {
	return s.has(flagACK) && s.length() == 0 && s.seq == e.rcvNxt && s.ack == e.sndUna &&
		uint32(s.wnd)<<e.sndShift == e.sndWnd &&
		int64(e.tsRecent-s.opts.TSVal) <= int64(e.rto/time.Millisecond)
}

// acceptable is the test of RFC 9293 §3.10.7.4 step 1, for a receive
// window of wnd bytes from rcvNxt.
func acceptable(s *segment, rcvNxt, wnd uint32) bool {
	n := s.length()
	switch {
	case n == 0 && wnd == 0:
		return s.seq == rcvNxt
	case n == 0:
		return seqInWindow(s.seq, rcvNxt, wnd)
	case wnd == 0:
		return false
	}
	return seqInWindow(s.seq, rcvNxt, wnd) || seqInWindow(s.seq+n-1, rcvNxt, wnd)
}

// trim cuts an acceptable segment to the receive window: bytes before
// RCV.NXT (already received) and past the right edge.
func (e *Endpoint) trim(s *segment, wnd uint32) {
	if seqLT(s.seq, e.rcvNxt) {
		d := e.rcvNxt - s.seq
		if d > uint32(len(s.data)) {
			s.flags &^= flagFIN // an old FIN
			d = uint32(len(s.data))
		}
		e.dsackFor(s.seq, s.seq+d)
		s.data = s.data[d:]
		s.seq = e.rcvNxt
	}
	if right := e.rcvNxt + wnd; seqGT(s.seq+uint32(len(s.data)), right) {
		s.data = s.data[:right-s.seq]
		s.flags &^= flagFIN
	}
}

// inputSynSent is RFC 9293 §3.10.7.3.
func (e *Endpoint) inputSynSent(s *segment, now time.Time) {
	if s.has(flagACK) && (seqLEQ(s.ack, e.iss) || seqGT(s.ack, e.sndNxt)) {
		if !s.has(flagRST) {
			e.t.sendRaw(e.id, s.ack, 0, flagRST, 0, nil)
		}
		return
	}
	if s.has(flagRST) {
		if s.has(flagACK) {
			e.terminate(ErrRefused)
		}
		return
	}
	if !s.has(flagSYN) {
		return
	}
	e.irs, e.rcvNxt = s.seq, s.seq+1
	e.peerOptions(&s.opts, false)
	if e.tsOK && s.opts.HasTimestamps {
		e.tsRecent, e.tsRecentAt = s.opts.TSVal, now
	}
	e.sndWnd = uint32(s.wnd) // a SYN's window is never scaled
	e.maxWnd = e.sndWnd
	e.sndWl1, e.sndWl2 = s.seq, s.ack
	if !s.has(flagACK) {
		// Simultaneous open (RFC 9293 Figure 7).
		e.state = SynReceived
		e.sendSYN(now)
		return
	}
	e.sndUna = s.ack
	e.state = Established
	e.rttFromAck(s, now)
	e.retries = 0
	e.softErr = nil
	e.stopTimer(timerRTO)
	if e.kaOn {
		e.setTimer(timerKeepalive, now.Add(e.kaIdle))
	}
	e.ackNow = true
	e.rcvAdv = e.rcvNxt + uint32(min(e.rcvWindow(), 65535)) // what our SYN offered
	s.flags &^= flagSYN
	s.seq++ // data on a SYN-ACK is legal, if rare
	if len(s.data) > 0 || s.has(flagFIN) {
		e.trim(s, e.rcvAdv-e.rcvNxt)
		e.receive(s, now)
	}
	e.output(now)
}

// establish completes a passive open or a simultaneous one: the ACK of our
// SYN has come.
func (e *Endpoint) establish(s *segment, now time.Time) {
	e.sndUna = s.ack
	e.state = Established
	e.sndWnd = uint32(s.wnd) << e.sndShift
	e.maxWnd = max(e.maxWnd, e.sndWnd)
	e.sndWl1, e.sndWl2 = s.seq, s.ack
	e.rttFromAck(s, now)
	e.retries = 0
	e.stopTimer(timerRTO)
	if e.kaOn {
		e.setTimer(timerKeepalive, now.Add(e.kaIdle))
	}
	if e.finQ {
		e.state = FinWait1 // CloseWrite in SYN-RECEIVED
	}
	if e.listener != nil {
		e.listener.established(e)
	}
}

// rttFromAck takes an RTT sample from an ACK of new data: the timestamp
// echo (RFC 7323 §4.1), or else the timed segment (Karn's algorithm).
func (e *Endpoint) rttFromAck(s *segment, now time.Time) {
	if e.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 {
		if d := int32(e.tsNow(now) - s.opts.TSEcr); d >= 0 {
			e.rttSample(time.Duration(d) * time.Millisecond)
		}
		e.rttTiming = false
		return
	}
	if e.rttTiming && seqGT(s.ack, e.rttSeq) {
		e.rttSample(now.Sub(e.rttStart))
		e.rttTiming = false
	}
}

// processAck is step 5 for synchronized states. It reports whether
// processing goes on.
func (e *Endpoint) processAck(s *segment, now time.Time) bool {
	if seqGT(s.ack, e.sndNxt) {
		e.sendAck(now) // acknowledges what we never sent
		return false
	}
	if seqLT(s.ack, e.sndUna-e.maxWnd) {
		e.sendAck(now) // RFC 5961 §5.2: too old to be plausible
		return false
	}
	newWnd := uint32(s.wnd) << e.sndShift
	newly := e.sackUpdate(s)
	switch {
	case seqGT(s.ack, e.sndUna):
		e.ackNew(s, now)
	case s.ack == e.sndUna && e.sndNxt != e.sndUna && e.isDupAck(s, newly, newWnd):
		e.dupAck(now)
	}
	e.sackLoss(now)
	e.rackAck(s, now)
	if seqLT(e.sndWl1, s.seq) || e.sndWl1 == s.seq && seqLEQ(e.sndWl2, s.ack) {
		e.sndWnd, e.sndWl1, e.sndWl2 = newWnd, s.seq, s.ack
		e.maxWnd = max(e.maxWnd, e.sndWnd)
		if e.sndWnd > 0 {
			e.stopTimer(timerPersist)
			e.persistN = 0
		}
	}
	if e.finAckd {
		switch e.state {
		case FinWait1:
			e.state = FinWait2
			if e.userClosed {
				e.setTimer(timerClose, now.Add(FinWait2Time))
			}
		case Closing:
			e.enterTimeWait(now)
		case LastAck:
			e.terminate(nil)
			return false
		}
	}
	return true
}

// isDupAck reports whether s, which acknowledges SND.UNA again, is a
// duplicate ACK: with SACK blocks, one that SACKs new data (RFC 6675 §2),
// so that ACKs for duplicated segments (D-SACKs) and window updates do not
// count; without, RFC 5681 §2's: no data, no FIN, the same window.
func (e *Endpoint) isDupAck(s *segment, newly int, newWnd uint32) bool {
	if e.sackOK && s.opts.NumSACK > 0 {
		return newly > 0
	}
	return len(s.data) == 0 && !s.has(flagFIN) && newWnd == e.sndWnd
}

// ackNew handles an ACK that advances SND.UNA: buffer, RTT, congestion
// window, recovery, timer.
func (e *Endpoint) ackNew(s *segment, now time.Time) {
	acked := int(s.ack - e.sndUna)
	data := min(acked, e.snd.Len())
	e.snd.Discard(data)
	if acked > data && e.finQ {
		e.finAckd = true
	}
	e.sndUna = s.ack
	e.rttFromAck(s, now)
	e.retries = 0
	e.softErr = nil // the path works (icmp.go)
	if e.hasRTT {
		e.rto = clampRTO(e.srtt + max(time.Millisecond, 4*e.rttvar))
	}
	restart := e.ackRecovery(s, acked, now)
	e.dupAcks = 0
	switch {
	case e.sndUna == e.sndNxt:
		e.stopTimer(timerRTO)
	case restart:
		e.setTimer(timerRTO, now.Add(e.rto))
	}
}

// receive is steps 7 and 8: queue the data, in order or for reassembly,
// and the FIN.
func (e *Endpoint) receive(s *segment, now time.Time) {
	if len(s.data) == 0 && !s.has(flagFIN) {
		return
	}
	if e.userClosed && len(s.data) > 0 {
		// Nobody will read it: reset (RFC 9293 §3.10.4, as Linux does).
		e.t.sendRaw(e.id, e.sndNxt, 0, flagRST, 0, nil)
		e.terminate(nil)
		return
	}
	if s.seq != e.rcvNxt {
		e.queueOOO(s)
		e.ackNow = true // a duplicate ACK, with SACK blocks (RFC 5681 §4.2)
		return
	}
	n := e.rcv.Write(s.data)
	e.rcvNxt += uint32(n)
	e.rcvMSS = max(e.rcvMSS, len(s.data))
	fin := s.has(flagFIN) && n == len(s.data)
	if len(e.ooo) > 0 {
		fin = e.drainOOO() || fin
		e.ackNow = true // a hole filled: ACK at once
	}
	if fin {
		e.finIn(now)
		return
	}
	if n > 0 && !e.ackNow {
		if int(e.rcvNxt-e.lastAck) >= 2*e.rcvMSS {
			e.ackNow = true // every second full segment
		} else if !e.armed(timerDelack) {
			e.setTimer(timerDelack, now.Add(DelayedACK))
		}
	}
}

// queueOOO keeps an out-of-order segment for reassembly. Contiguous data
// is held as one range, so the queue's bound (Config.MaxOutOfOrder) counts
// the islands between holes, not segments; its bytes are bounded by the
// receive buffer.
func (e *Endpoint) queueOOO(s *segment) {
	seq, end := s.seq, s.seq+uint32(len(s.data))
	fin := s.has(flagFIN)
	e.oooLast = seq
	// Ranges i..j-1 touch [seq, end]: the segment merges with them.
	i := 0
	for i < len(e.ooo) && seqLT(e.ooo[i].end(), seq) {
		i++
	}
	j := i
	for j < len(e.ooo) && seqLEQ(e.ooo[j].seq, end) {
		j++
	}
	if j == i+1 && seqLEQ(e.ooo[i].seq, seq) && seqGEQ(e.ooo[i].end(), end) && (e.ooo[i].fin || !fin) {
		e.dsackFor(seq, end) // all here already
		return
	}
	left, right, had := seq, end, 0
	for _, o := range e.ooo[i:j] {
		left, right, had = seqMin(left, o.seq), seqMax(right, o.end()), had+len(o.data)
	}
	n := e.oooLen - had + int(right-left)
	if j == i && len(e.ooo) >= e.t.cfg.MaxOutOfOrder || n > e.rcv.limit || n-e.oooLen > e.t.budget.free() {
		e.t.c.InOOODrops++
		return
	}
	// A FIN stays only where the merged range ends: no data may follow it.
	m := oooSeg{seq: left, fin: fin && end == right || j > i && e.ooo[j-1].fin && e.ooo[j-1].end() == right}
	switch {
	case j == i:
		m.data = append([]byte(nil), s.data...)
	case j == i+1 && seqLEQ(e.ooo[i].seq, seq) && seqGEQ(end, e.ooo[i].end()):
		// The common case, a run growing to the right: append.
		m.data = append(e.ooo[i].data, s.data[e.ooo[i].end()-seq:]...)
	default:
		m.data = make([]byte, right-left)
		for _, o := range e.ooo[i:j] {
			copy(m.data[o.seq-left:], o.data)
		}
		copy(m.data[seq-left:], s.data)
	}
	e.setOOO(slices.Replace(e.ooo, i, j, m), n) // it fits: checked above
}

// dsackFor reports the duplicate data [seq, end) in the next ACK's first
// SACK block (RFC 2883 §4), so that the peer learns its retransmission was
// needless.
func (e *Endpoint) dsackFor(seq, end uint32) {
	if e.sackOK && seqLT(seq, end) {
		e.rcvDSACK = seqRange{seq, end}
	}
}

// drainOOO moves what has become in order into the receive buffer and
// reports whether the FIN came with it.
func (e *Endpoint) drainOOO() bool {
	for len(e.ooo) > 0 && seqLEQ(e.ooo[0].seq, e.rcvNxt) {
		o := e.ooo[0]
		e.setOOO(e.ooo[1:], e.oooLen-len(o.data))
		end := o.seq + uint32(len(o.data))
		if seqGT(end, e.rcvNxt) {
			e.rcvNxt += uint32(e.rcv.Write(o.data[e.rcvNxt-o.seq:]))
		}
		if o.fin && end == e.rcvNxt {
			e.setOOO(nil, 0)
			return true
		}
	}
	if len(e.ooo) == 0 {
		e.ooo = nil
	}
	return false
}

// finIn takes the peer's FIN, in order.
func (e *Endpoint) finIn(now time.Time) {
	e.rcvNxt++
	e.rcvFin = true
	e.ackNow = true
	e.setOOO(nil, 0)
	switch e.state {
	case Established:
		e.state = CloseWait
	case FinWait1:
		if e.finAckd {
			e.enterTimeWait(now)
		} else {
			e.state = Closing
		}
	case FinWait2:
		e.enterTimeWait(now)
	}
}
