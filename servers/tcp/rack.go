package tcp

import (
	"slices"
	"time"
)

// RACK-TLP (RFC 8985), on connections with SACK when Config.RACK is set.
//
// RACK finds losses by time rather than by counting: every transmission
// is remembered with the time it went (rackState.segs, in the order
// sent, a retransmission moving to the end). Each ACK delivers some of
// them, cumulatively or by SACK; the most recently sent one delivered is
// RACK.xmit_ts/end_seq, and its round trip RACK.rtt. A segment sent
// before it and still not delivered once RACK.rtt plus the reordering
// window has passed since it went is lost; one still inside the window
// arms the reorder timer (timerRACK). The window is min_RTT/4, times a
// multiplier that each round with a D-SACK (a spurious retransmission:
// the network reorders more than we thought) raises by one, for 16
// recoveries; it is 0 while no reordering has been seen and recovery
// runs, or DupThresh segments are SACKed.
//
// What RACK finds lost joins the RFC 6675 machinery of recovery.go rather
// than replacing it: an original transmission found lost moves
// rackState.lostTo (originals are sent in sequence order, so those lost
// are a prefix of the holes, as lostEnd wants), a retransmission found
// lost joins the relost queue; pipe and NextSeg then do the rest, and
// fast recovery starts if it is not running. The SACK rules stay: RACK
// only finds losses sooner (reordering below DupThresh segments, lost
// retransmissions, losses with too few segments after them).
//
// TLP: while data is outstanding outside recovery, a probe timeout
// (timerTLP) of 2·SRTT, plus WCDelAckT when one segment is in flight so a
// delayed ACK does not trigger it, is armed whenever new data goes or an
// ACK comes; it is not armed when the RTO would come first. When it
// fires, one segment goes: new data if the windows allow, else the last
// segment again, and no other probe until an ACK beyond it. The ACK a
// probe draws out carries SACK blocks that let RACK or RFC 6675 find the
// tail's losses, two round trips after the tail instead of an RTO. A
// retransmitted probe that repaired a loss (acknowledged beyond it
// without a D-SACK for it) reduces the window once (§7.4.2).
//
// None of this is kept across a restart (keep_record.go): a restored
// connection has no transmit times, so RACK sees nothing to judge and the
// RFC 6675 rules and the RTO recover, as without RACK.

const (
	wcDelAckT     = 200 * time.Millisecond // RFC 8985 §7.2 WCDelAckT
	maxRACKSegs   = 1024                   // transmissions remembered; past it the oldest are forgotten
	reoWndPersist = 16                     // recoveries a widened window lasts (§6.2 step 4)
	maxReoWndMult = 64
)

// xmitSeg is a transmission RACK watches.
type xmitSeg struct {
	seqRange
	at     time.Time
	ts     uint32 // our TSval in it
	rexmit bool   // a retransmission
	lost   bool   // found lost, not sent again yet
}

// rackState is a connection's RACK-TLP state (RFC 8985 §5.2 and §7).
type rackState struct {
	segs []xmitSeg // unacknowledged transmissions, oldest first

	xmit      time.Time     // RACK.xmit_ts: the latest sent of those delivered
	endSeq    uint32        // RACK.end_seq
	rtt       time.Duration // RACK.rtt
	minRTT    time.Duration // the least RTT seen
	fack      uint32        // the highest end of a delivered transmission
	fackOK    bool          // fack is set
	reordSeen bool          // RACK.reordering_seen

	reoMult    int    // RACK.reo_wnd_mult - 1
	reoPersist int    // RACK.reo_wnd_persist
	dsackRound uint32 // RACK.dsack_round: SND.NXT when the last D-SACK widened the window
	dsackOK    bool   // dsackRound is set
	dsackNow   bool   // this ACK carries a D-SACK
	dsackLast  seqRange

	lostTo uint32 // original transmissions below it are lost
	lostOK bool   // lostTo is set

	tlpOut    bool     // a probe is out (TLP.end_seq is set)
	tlpHigh   uint32   // SND.NXT after the probe
	tlpRexmit bool     // the probe was a retransmission
	tlpRange  seqRange // what it retransmitted
}

// rackOK reports whether RACK-TLP runs on this connection.
func (e *Endpoint) rackOK() bool { return e.t.cfg.RACK && e.sackOK }

// rackSent records a transmission of r at now.
func (e *Endpoint) rackSent(now time.Time, r seqRange, rexmit bool) {
	if !e.rackOK() || !seqLT(r.left, r.right) {
		return
	}
	rs := &e.rack
	if rexmit {
		// What r covers of earlier transmissions is sent again: cut it out
		// of them; r goes to the end, the newest.
		for i := 0; i < len(rs.segs); i++ {
			x := rs.segs[i]
			if !seqLT(x.left, r.right) || !seqLT(r.left, x.right) {
				continue
			}
			var parts []xmitSeg
			if seqLT(x.left, r.left) {
				y := x
				y.right = r.left
				parts = append(parts, y)
			}
			if seqLT(r.right, x.right) {
				y := x
				y.left = r.right
				parts = append(parts, y)
			}
			rs.segs = slices.Replace(rs.segs, i, i+1, parts...)
			i += len(parts) - 1
		}
	}
	if len(rs.segs) >= maxRACKSegs {
		rs.segs = slices.Delete(rs.segs, 0, 1)
	}
	rs.segs = append(rs.segs, xmitSeg{seqRange: r, at: now, ts: e.tsNow(now), rexmit: rexmit})
}

// rackDSACK notes a D-SACK block r in the ACK being processed.
func (e *Endpoint) rackDSACK(r seqRange) {
	e.rack.dsackNow, e.rack.dsackLast = true, r
}

// rackReset forgets RACK's judgement of what is in flight (an RTO, a
// renege), keeping what it learned of the path.
func (e *Endpoint) rackReset() {
	e.rack.lostOK = false
	e.stopTimer(timerRACK)
	e.stopTimer(timerTLP)
}

// rackAck runs RACK for an ACK whose SACK blocks and SND.UNA are taken
// (RFC 8985 §6.2 steps 1-5, and §7.4 for the probe), then re-arms the
// probe timeout.
func (e *Endpoint) rackAck(s *segment, now time.Time) {
	if !e.rackOK() {
		return
	}
	rs := &e.rack
	dsack := rs.dsackNow
	rs.dsackNow = false
	if rs.tlpOut {
		switch {
		case dsack && seqGEQ(rs.dsackLast.left, rs.tlpRange.left) && seqLEQ(rs.dsackLast.right, rs.tlpRange.right) && rs.tlpRexmit:
			rs.tlpOut = false // the probe was needless: the tail had arrived
		case seqGT(e.sndUna, rs.tlpHigh):
			rs.tlpOut = false
			if rs.tlpRexmit && !e.inRecovery && !e.inLoss {
				// The probe repaired a loss (§7.4.2): the one reduction.
				e.ssthresh = e.cc.OnLoss(e.cwnd, int(e.sndNxt-e.sndUna), e.smss, now)
				e.cwnd = max(e.ssthresh, e.smss)
			}
		}
	}
	// Step 4's D-SACK part: the network reorders more than the window.
	if dsack && (!rs.dsackOK || seqGEQ(e.sndUna, rs.dsackRound)) {
		rs.dsackOK, rs.dsackRound = true, e.sndNxt
		rs.reoMult = min(rs.reoMult+1, maxReoWndMult)
		rs.reoPersist = reoWndPersist
	}
	if rs.lostOK && seqGEQ(e.sndUna, rs.lostTo) {
		rs.lostOK = false
	}
	// Steps 1-3: what this ACK delivered.
	keep := rs.segs[:0]
	for _, x := range rs.segs {
		if seqLT(e.sndUna, x.right) && e.sb.unsacked(seqRange{seqMax(x.left, e.sndUna), x.right}) > 0 {
			keep = append(keep, x)
			continue
		}
		rtt := now.Sub(x.at)
		if x.rexmit && (rtt < rs.minRTT ||
			e.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 && seqLT(s.opts.TSEcr, x.ts)) {
			continue // the original's delivery, maybe: no sample
		}
		if rs.minRTT == 0 || rtt < rs.minRTT {
			rs.minRTT = max(rtt, 1) // zero means none
		}
		if x.at.After(rs.xmit) || x.at.Equal(rs.xmit) && seqGT(x.right, rs.endSeq) {
			rs.xmit, rs.endSeq, rs.rtt = x.at, x.right, rtt
		}
		if !x.rexmit && rs.fackOK && seqLT(x.right, rs.fack) {
			rs.reordSeen = true // delivered after a later one
		}
		if !rs.fackOK || seqGT(x.right, rs.fack) {
			rs.fack, rs.fackOK = x.right, true
		}
	}
	clear(rs.segs[len(keep):])
	rs.segs = keep
	e.rackDetect(now)
	e.tlpArm(now)
}

// reoWnd is the reordering window (RFC 8985 §6.2 step 4).
func (e *Endpoint) reoWnd() time.Duration {
	rs := &e.rack
	if !rs.reordSeen {
		if e.inRecovery || e.inLoss {
			return 0
		}
		if bytes, _ := e.sb.above(e.sndUna); bytes >= dupThresh*e.smss {
			return 0
		}
	}
	w := time.Duration(rs.reoMult+1) * rs.minRTT / 4
	if e.hasRTT {
		w = min(w, e.srtt)
	}
	return w
}

// rackDetect marks lost what was sent before RACK.xmit_ts and is not
// delivered RACK.rtt + reo_wnd after it went, arms the reorder timer for
// the rest, and starts fast recovery on a loss (RFC 8985 §6.2 step 5).
// It reports whether it found a loss.
func (e *Endpoint) rackDetect(now time.Time) bool {
	rs := &e.rack
	if rs.xmit.IsZero() || e.sndUna == e.sndNxt {
		e.stopTimer(timerRACK)
		return false
	}
	reo := e.reoWnd()
	var wait time.Duration
	found := false
	for i := range rs.segs {
		x := &rs.segs[i]
		if !(x.at.Before(rs.xmit) || x.at.Equal(rs.xmit) && seqLT(x.right, rs.endSeq)) {
			break // sent after: in order of sending, so are the rest
		}
		if x.lost || !seqLT(e.sndUna, x.right) {
			continue
		}
		if left := x.at.Add(rs.rtt + reo).Sub(now); left > 0 {
			wait = max(wait, left)
			continue
		}
		x.lost, found = true, true
		r := seqRange{seqMax(x.left, e.sndUna), x.right}
		if x.rexmit {
			e.t.c.LostRetransmits++
			e.relostAdd(r)
		} else if !rs.lostOK || seqGT(r.right, rs.lostTo) {
			rs.lostTo, rs.lostOK = r.right, true
		}
	}
	if wait > 0 {
		e.setTimer(timerRACK, now.Add(wait))
	} else {
		e.stopTimer(timerRACK)
	}
	if found && !e.inRecovery && !e.inLoss && e.episodeOver() {
		e.enterRecovery(now)
	}
	return found
}

// rackTimeout is the reorder timer's expiry: what waited may be lost now.
func (e *Endpoint) rackTimeout(now time.Time) {
	if e.rackOK() && e.rackDetect(now) && e.canSend() {
		e.transmit(now)
	}
}

// tlpArm arms the probe timeout (RFC 8985 §7.2), or stops it when no
// probe is due: nothing outstanding, recovery running, a probe out, no
// RTT yet, or the RTO first.
func (e *Endpoint) tlpArm(now time.Time) {
	if !e.rackOK() || !e.hasRTT || e.inRecovery || e.inLoss || e.rack.tlpOut || e.sndUna == e.sndNxt {
		e.stopTimer(timerTLP)
		return
	}
	pto := 2 * e.srtt
	if int(e.sndNxt-e.sndUna) <= e.smss {
		pto += wcDelAckT
	}
	at := now.Add(pto)
	if rto := e.timers[timerRTO]; !rto.IsZero() && !at.Before(rto) {
		e.stopTimer(timerTLP)
		return
	}
	e.setTimer(timerTLP, at)
}

// tlpProbe is the probe timeout's expiry (RFC 8985 §7.3): one segment,
// new data if it may go, else the last segment again; then the RTO.
func (e *Endpoint) tlpProbe(now time.Time) {
	if !e.rackOK() || e.sndUna == e.sndNxt || e.inRecovery || e.inLoss || e.rack.tlpOut || !e.canSend() {
		return
	}
	rs := &e.rack
	rs.tlpOut, rs.tlpRexmit = true, false
	if e.transmitNew(now, e.smss) == 0 {
		last := seqRange{e.sndNxt - uint32(min(e.smss, int(e.sndNxt-e.sndUna))), e.sndNxt}
		if fin := e.finQ && seqGT(e.sndNxt, e.finSeq()); fin && last.size() > 1 {
			last.left = seqMax(e.sndUna, e.sndNxt-1-uint32(e.smss)) // the FIN and a segment of data
		}
		sent := e.retransmit(now, last)
		if sent == 0 {
			rs.tlpOut = false
			return
		}
		rs.tlpRexmit, rs.tlpRange = true, seqRange{last.left, last.left + sent}
	}
	rs.tlpHigh = e.sndNxt
	e.t.c.TailLossProbes++
	e.setTimer(timerRTO, now.Add(e.rto))
}
