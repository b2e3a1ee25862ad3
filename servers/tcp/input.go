package tcp

import (
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
		e.kaProbes, e.kaAt = 0, now.Add(e.kaIdle)
	}

	if e.state == SynReceived && s.has(flagSYN) {
		switch {
		case !s.has(flagACK) && s.seq == e.irs:
			// The peer's SYN again: our SYN-ACK was lost.
			e.t.c.Retransmits++
			e.sendSYN(now)
			return
		case e.listener == nil && s.has(flagACK) && s.seq+1 == e.rcvNxt && s.ack == e.sndMax:
			// Simultaneous open: the peer's SYN-ACK acknowledges our SYN;
			// its SYN we have already. Keep the ACK (as Linux does).
			s.flags &^= flagSYN
			s.seq++
		}
	}

	// PAWS (RFC 7323 §5.3 R1-R2).
	if e.tsOK && s.opts.HasTimestamps && !s.has(flagRST) && seqLT(s.opts.TSVal, e.tsRecent) {
		if now.Sub(e.tsRecentAt) <= pawsIdle {
			e.t.c.InPAWSDrops++
			e.sendAck(now)
			return
		}
		e.tsRecent, e.tsRecentAt = s.opts.TSVal, now // TS.Recent too old to judge by
	}

	// 1. Is the segment acceptable?
	wnd := uint32(0)
	if seqGT(e.rcvAdv, e.rcvNxt) {
		wnd = e.rcvAdv - e.rcvNxt
	}
	if !e.acceptable(s, wnd) {
		if wnd == 0 && s.seq == e.rcvNxt && s.has(flagACK) && !s.has(flagRST|flagSYN) {
			// A closed window accepts no data but still takes ACKs.
			if len(s.data) > 0 {
				s.data = nil
				s.flags &^= flagFIN
			}
			e.ackNow = true
		} else {
			if !s.has(flagRST) {
				if e.state == TimeWait && s.has(flagFIN) {
					e.closeAt = now.Add(2 * MSL) // the peer's FIN again
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
		case Closing, LastAck, TimeWait:
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

	// TS.Recent (RFC 7323 §4.3).
	if e.tsOK && s.opts.HasTimestamps && seqGEQ(s.opts.TSVal, e.tsRecent) && seqLEQ(s.seq, e.lastAck) {
		e.tsRecent, e.tsRecentAt = s.opts.TSVal, now
	}

	// 5. ACK.
	if !s.has(flagACK) {
		return
	}
	if e.state == SynReceived {
		if !seqGT(s.ack, e.sndUna) || seqGT(s.ack, e.sndMax) {
			e.t.sendRaw(e.id, s.ack, 0, flagRST, 0, nil)
			return
		}
		e.establish(s, now)
	}
	if !e.processAck(s, now) {
		return
	}

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

// acceptable is the test of RFC 9293 §3.10.7.4 step 1.
func (e *Endpoint) acceptable(s *segment, wnd uint32) bool {
	n := s.length()
	switch {
	case n == 0 && wnd == 0:
		return s.seq == e.rcvNxt
	case n == 0:
		return seqInWindow(s.seq, e.rcvNxt, wnd)
	case wnd == 0:
		return false
	}
	return seqInWindow(s.seq, e.rcvNxt, wnd) || seqInWindow(s.seq+n-1, e.rcvNxt, wnd)
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
	if s.has(flagACK) && (seqLEQ(s.ack, e.iss) || seqGT(s.ack, e.sndMax)) {
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
	e.retries, e.rtoAt = 0, time.Time{}
	if e.kaOn {
		e.kaAt = now.Add(e.kaIdle)
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
	e.retries, e.rtoAt = 0, time.Time{}
	if e.kaOn {
		e.kaAt = now.Add(e.kaIdle)
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
	if seqGT(s.ack, e.sndMax) {
		e.sendAck(now) // acknowledges what we never sent
		return false
	}
	if seqLT(s.ack, e.sndUna-e.maxWnd) {
		e.sendAck(now) // RFC 5961 §5.2: too old to be plausible
		return false
	}
	newWnd := uint32(s.wnd) << e.sndShift
	switch {
	case seqGT(s.ack, e.sndUna):
		e.ackNew(s, now)
	case s.ack == e.sndUna && len(s.data) == 0 && !s.has(flagFIN) && newWnd == e.sndWnd && e.sndMax != e.sndUna:
		e.dupAck(now)
	}
	if seqLT(e.sndWl1, s.seq) || e.sndWl1 == s.seq && seqLEQ(e.sndWl2, s.ack) {
		e.sndWnd, e.sndWl1, e.sndWl2 = newWnd, s.seq, s.ack
		e.maxWnd = max(e.maxWnd, e.sndWnd)
		if e.sndWnd > 0 {
			e.persistAt, e.persistN = time.Time{}, 0
		}
	}
	if e.finAckd {
		switch e.state {
		case FinWait1:
			e.state = FinWait2
			if e.userClosed {
				e.closeAt = now.Add(FinWait2Time)
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
	if seqLT(e.sndNxt, e.sndUna) {
		e.sndNxt = e.sndUna
	}
	e.rttFromAck(s, now)
	e.retries = 0
	if e.hasRTT {
		e.rto = clampRTO(e.srtt + max(time.Millisecond, 4*e.rttvar))
	}
	restart := true
	if e.inRecovery {
		if seqGEQ(s.ack, e.recover) {
			// Full acknowledgment (RFC 6582 §3.2 step 3, option 1).
			e.inRecovery = false
			e.cwnd = min(e.ssthresh, max(int(e.sndMax-e.sndUna), e.smss)+e.smss)
		} else {
			// Partial acknowledgment (step 4): the next hole goes out now.
			e.retransmitFirst(now)
			e.cwnd = max(e.cwnd-acked, 0)
			if acked >= e.smss {
				e.cwnd += e.smss
			}
			e.cwnd = max(e.cwnd, e.smss)
			restart = !e.partialSeen
			e.partialSeen = true
		}
	} else {
		e.cwnd = min(e.cc.OnAck(e.cwnd, e.ssthresh, acked, e.smss, now, e.srtt), 1<<30)
	}
	e.dupAcks = 0
	switch {
	case e.sndUna == e.sndMax:
		e.rtoAt = time.Time{}
	case restart:
		e.rtoAt = now.Add(e.rto)
	}
}

// dupAck counts a duplicate ACK (RFC 5681 §2) and runs fast retransmit on
// the third (RFC 6582 §3.2 step 2), inflating the window after.
func (e *Endpoint) dupAck(now time.Time) {
	e.dupAcks++
	if e.inRecovery {
		e.cwnd += e.smss
		return
	}
	if e.dupAcks != 3 || !seqGT(e.sndUna, e.recover) && e.recover != e.iss {
		return
	}
	flight := int(e.sndMax - e.sndUna)
	e.ssthresh = e.cc.OnLoss(e.cwnd, flight, e.smss, now)
	e.recover = e.sndMax
	e.inRecovery, e.partialSeen = true, false
	e.t.c.FastRetransmits++
	e.retransmitFirst(now)
	e.cwnd = e.ssthresh + 3*e.smss
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
		} else if e.delackAt.IsZero() {
			e.delackAt = now.Add(DelayedACK)
		}
	}
}

// queueOOO keeps an out-of-order segment for reassembly, within the
// queue's bounds.
func (e *Endpoint) queueOOO(s *segment) {
	end := s.seq + uint32(len(s.data))
	i := 0
	for ; i < len(e.ooo); i++ {
		o := e.ooo[i]
		if seqLEQ(o.seq, s.seq) && seqGEQ(o.seq+uint32(len(o.data)), end) && (o.fin || !s.has(flagFIN)) {
			e.oooLast = s.seq
			return // a duplicate
		}
		if seqGT(o.seq, s.seq) {
			break
		}
	}
	if len(e.ooo) >= e.t.cfg.MaxOutOfOrder || e.oooLen+len(s.data) > e.rcv.limit {
		e.t.c.InOOODrops++
		return
	}
	o := oooSeg{seq: s.seq, data: append([]byte(nil), s.data...), fin: s.has(flagFIN)}
	e.ooo = append(e.ooo, oooSeg{})
	copy(e.ooo[i+1:], e.ooo[i:])
	e.ooo[i] = o
	e.oooLen += len(o.data)
	e.oooLast = s.seq
}

// drainOOO moves what has become in order into the receive buffer and
// reports whether the FIN came with it.
func (e *Endpoint) drainOOO() bool {
	for len(e.ooo) > 0 && seqLEQ(e.ooo[0].seq, e.rcvNxt) {
		o := e.ooo[0]
		e.ooo = e.ooo[1:]
		e.oooLen -= len(o.data)
		end := o.seq + uint32(len(o.data))
		if seqGT(end, e.rcvNxt) {
			e.rcvNxt += uint32(e.rcv.Write(o.data[e.rcvNxt-o.seq:]))
		}
		if o.fin && end == e.rcvNxt {
			e.ooo, e.oooLen = nil, 0
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
	e.ooo, e.oooLen = nil, 0
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

func (e *Endpoint) enterTimeWait(now time.Time) {
	e.state = TimeWait
	e.closeAt = now.Add(2 * MSL)
	e.rtoAt, e.persistAt, e.kaAt = time.Time{}, time.Time{}, time.Time{}
}
