package tcp

import (
	"slices"
	"time"

	"keepnet/servers/header"
)

// Loss recovery: what to send again, and when a loss is a loss.
//
// With SACK (RFC 2018) negotiated, the sender keeps the RFC 6675
// scoreboard — the ranges the peer has SACKed above SND.UNA — and
// recovers per RFC 6675: a hole is lost (IsLost) once DupThresh SACKed
// ranges or more than (DupThresh-1)*SMSS SACKed bytes lie above it; fast
// recovery starts on the DupThresh-th duplicate ACK or as soon as
// IsLost(SND.UNA); during it, what is sent is limited by cwnd - pipe, pipe
// being the bytes estimated in flight, and chosen by NextSeg: lost holes
// first (HighRxt marks how far they were retransmitted), then new data,
// then holes not yet lost, then one rescue retransmission of the tail.
// Only holes are retransmitted; recovery ends when SND.UNA reaches the
// RecoveryPoint (recover).
//
// Without SACK, fast recovery is RFC 6582 NewReno: the first unacknowledged
// segment on the third duplicate ACK and on every partial ACK, with window
// inflation.
//
// A retransmission timeout (RFC 6298 §5) sets cwnd to one segment and
// makes everything unSACKed below SND.NXT lost (RFC 6675 §5.1: the
// RecoveryPoint moves to SND.NXT and fast recovery is off until SND.UNA
// reaches it). The scoreboard is kept across it, as RFC 2018's erratum 1610
// allows, because a receiver that reneges is detected: an ACK that stops
// at the left edge of a SACKed range clears the scoreboard. The lost
// data then goes hole by hole as slow start opens cwnd: without SACK that
// is go-back-N.
//
// A retransmission can be lost too. Each one is remembered with SND.NXT
// at the time it was sent; once the IsLost rule holds above that point —
// DupThresh segments sent after it have arrived and it has not — it is
// lost again and goes first (the idea of Linux's lost-retransmit marking).
// Without that only an RTO, 200 ms at least, would find it.
//
// Each loss episode — from the fast retransmit or the first RTO until
// SND.UNA reaches the RecoveryPoint — reduces the window once: the
// Congestion's OnLoss is called once per episode (RFC 5681 §3.1 holds
// ssthresh on repeated timeouts; an RTO during fast recovery does not
// reduce it again).
//
// A reduction that proves needless is undone: the first retransmission's
// timestamp is kept, and an ACK echoing an older one was caused by the
// original transmission (the Eifel detection of RFC 3522), and a D-SACK
// (RFC 2883) for every retransmission says each arrived twice (RFC 3708).
// The response restores cwnd and ssthresh as they were (RFC 4015's idea).

const (
	dupThresh     = 3  // RFC 6675 §2 DupThresh, RFC 5681 §3.2
	maxSACKRanges = 32 // ranges in the scoreboard; more are forgotten, smallest first
	maxRxtTracked = 32 // retransmissions watched for loss; more are merged
)

// seqRange is the sequence numbers [left, right).
type seqRange struct{ left, right uint32 }

func (r seqRange) size() int { return int(r.right - r.left) }

func seqMin(a, b uint32) uint32 {
	if seqLT(a, b) {
		return a
	}
	return b
}

func seqMax(a, b uint32) uint32 {
	if seqGT(a, b) {
		return a
	}
	return b
}

// scoreboard is the SACKed part of [SND.UNA, SND.NXT): sorted, disjoint,
// non-adjacent ranges, at most maxSACKRanges of them. Forgetting a range
// is always safe: its data counts as not SACKed, and may be sent again.
type scoreboard struct{ r []seqRange }

// add records b, which the caller has clipped to the send window, and
// returns how many of its bytes were not SACKed before.
func (sb *scoreboard) add(b seqRange) int {
	// Ranges i..j-1 touch b: they merge with it into m.
	i := 0
	for i < len(sb.r) && seqLT(sb.r[i].right, b.left) {
		i++
	}
	j, m, had := i, b, 0
	for j < len(sb.r) && seqLEQ(sb.r[j].left, b.right) {
		had += sb.r[j].size()
		m = seqRange{seqMin(m.left, sb.r[j].left), seqMax(m.right, sb.r[j].right)}
		j++
	}
	sb.r = slices.Replace(sb.r, i, j, m)
	if len(sb.r) > maxSACKRanges {
		// Forget the smallest range below the highest: its data may go
		// again, the least waste. The highest range must stay: without it
		// the data above the rest would count as in flight, not lost.
		k := 0
		for x := range sb.r[:len(sb.r)-1] {
			if sb.r[x].size() < sb.r[k].size() {
				k = x
			}
		}
		sb.r = slices.Delete(sb.r, k, k+1)
	}
	return m.size() - had
}

// advance drops what SND.UNA = una has acknowledged. It reports a
// renege: una stopping where a SACKed range starts, which a receiver
// holding that range would have acknowledged past.
func (sb *scoreboard) advance(una uint32) bool {
	i := 0
	for i < len(sb.r) && seqLEQ(sb.r[i].right, una) {
		i++
	}
	sb.r = sb.r[i:]
	if len(sb.r) == 0 {
		sb.r = nil
		return false
	}
	if seqLEQ(sb.r[0].left, una) {
		sb.r = nil
		return true
	}
	return false
}

// above is how many bytes at or above seq are SACKed, in how many ranges.
func (sb *scoreboard) above(seq uint32) (bytes, ranges int) {
	for k := len(sb.r) - 1; k >= 0 && seqGT(sb.r[k].right, seq); k-- {
		bytes += int(sb.r[k].right - seqMax(sb.r[k].left, seq))
		ranges++
	}
	return bytes, ranges
}

// holes calls f with each unSACKed part of [from, to), in order, until f
// returns false.
func (sb *scoreboard) holes(from, to uint32, f func(seqRange) bool) {
	for _, x := range sb.r {
		if !seqLT(from, to) {
			return
		}
		if seqLEQ(x.right, from) {
			continue
		}
		if seqLT(from, x.left) && !f(seqRange{from, seqMin(x.left, to)}) {
			return
		}
		from = seqMax(from, x.right)
	}
	if seqLT(from, to) {
		f(seqRange{from, to})
	}
}

// unsacked is how many bytes of r are not SACKed.
func (sb *scoreboard) unsacked(r seqRange) int {
	n := 0
	sb.holes(r.left, r.right, func(h seqRange) bool { n += h.size(); return true })
	return n
}

// rxtSeg is a retransmission in flight: its range and SND.NXT when it went.
type rxtSeg struct {
	seqRange
	mark uint32
}

// episodeOver reports that no loss episode is running: SND.UNA has reached
// the RecoveryPoint of the last one (RFC 6582 §3.2 step 2, RFC 6675 §5).
func (e *Endpoint) episodeOver() bool { return seqGEQ(e.sndUna, e.recover) }

// lostAbove applies IsLost's rule (RFC 6675 §4) to what lies above seq.
func (e *Endpoint) lostAbove(seq uint32) bool {
	return e.lostBy(e.sb.above(seq))
}

// lostBy is IsLost's rule for data with bytes SACKed above it, in ranges.
func (e *Endpoint) lostBy(bytes, ranges int) bool {
	return ranges >= dupThresh || bytes > (dupThresh-1)*e.smss
}

// lostEnd is where the lost part of hole h ends, given what is SACKed
// above it: all of it is lost by the SACK rule, or up to the
// RecoveryPoint after an RTO; h.left if none is. Lost data is always a
// prefix of the holes: more is SACKed above a lower hole, and an RTO's
// loss starts at SND.UNA.
func (e *Endpoint) lostEnd(h seqRange, bytes, ranges int) uint32 {
	if e.lostBy(bytes, ranges) {
		return h.right
	}
	end := h.left
	if e.inLoss && seqLT(h.left, e.recover) {
		end = seqMin(h.right, e.recover)
	}
	if e.rack.lostOK && seqLT(h.left, e.rack.lostTo) {
		end = seqMax(end, seqMin(h.right, e.rack.lostTo)) // RACK's (rack.go)
	}
	return end
}

// pipe is the bytes in flight. With SACK, or after an RTO, it is RFC 6675
// §4 SetPipe: unSACKed bytes not lost, plus those retransmitted (below
// HighRxt) and not found lost again. Otherwise it is the FlightSize, which
// NewReno's inflated window is measured against.
func (e *Endpoint) pipe() int {
	if !e.sackOK && !e.inLoss {
		return int(e.sndNxt - e.sndUna)
	}
	p := 0
	hole := func(h seqRange, bytes, ranges int) {
		if !seqLT(h.left, h.right) {
			return
		}
		p += int(h.right - e.lostEnd(h, bytes, ranges))
		if seqGT(e.highRxt, h.left) {
			p += int(seqMin(h.right, e.highRxt) - h.left)
		}
	}
	// One pass up the scoreboard, what lies above each hole counted down.
	bytes, ranges := e.sb.above(e.sndUna)
	from := e.sndUna
	for _, x := range e.sb.r {
		hole(seqRange{from, x.left}, bytes, ranges)
		bytes, ranges, from = bytes-x.size(), ranges-1, x.right
	}
	hole(seqRange{from, e.sndNxt}, 0, 0)
	for _, r := range e.relost {
		r.left, r.right = seqMax(r.left, e.sndUna), seqMin(r.right, e.highRxt)
		if seqLT(r.left, r.right) {
			p -= e.sb.unsacked(r)
		}
	}
	return max(p, 0)
}

// What nextSeg chose.
const (
	segNone   = iota
	segRelost // a retransmission found lost, again
	segLost   // NextSeg rule (1): a lost hole above HighRxt
	segHole   // rule (3): a hole not (yet) lost
	segRescue // rule (4): the rescue retransmission
)

// nextSeg is NextSeg (RFC 6675 §4) for retransmissions: rule (1), led by
// the retransmissions found lost again; with late set, which the caller
// does when rule (2), new data, had nothing to send, rules (3) and (4).
// The range it returns may be longer than a segment.
func (e *Endpoint) nextSeg(late bool) (seqRange, int) {
	for len(e.relost) > 0 {
		r := e.relost[0]
		var got seqRange
		e.sb.holes(seqMax(r.left, e.sndUna), r.right, func(h seqRange) bool { got = h; return false })
		if got.size() > 0 {
			return got, segRelost
		}
		e.relost = e.relost[1:]
	}
	var got seqRange
	kind := segNone
	e.sb.holes(seqMax(e.highRxt, e.sndUna), e.sndNxt, func(h seqRange) bool {
		bytes, ranges := e.sb.above(h.left)
		if end := e.lostEnd(h, bytes, ranges); seqGT(end, h.left) {
			got, kind = seqRange{h.left, end}, segLost
		} else if late && e.inRecovery && e.sackOK && seqLT(h.right, e.sndNxt) {
			got, kind = h, segHole // below the highest SACKed byte (1.b)
		}
		return false
	})
	if kind != segNone || !late || !e.inRecovery || !e.sackOK || e.rescued || e.rackOK() {
		// With RACK-TLP (rack.go) no rescue: a lost retransmission is
		// found by time, and a tail by the probe.
		return got, kind
	}
	// Rule (4): the segment holding the highest unSACKed byte, once.
	e.sb.holes(e.sndUna, e.sndNxt, func(h seqRange) bool { got = h; return true })
	if got.size() == 0 {
		return got, segNone
	}
	got.left = seqMax(got.left, got.right-uint32(e.smss))
	return got, segRescue
}

// retransmit sends the first segment of r again, with our FIN if r holds
// it, and returns the sequence space it covered.
func (e *Endpoint) retransmit(now time.Time, r seqRange) uint32 {
	dataEnd := e.finSeq() // the end of the queued data
	n := 0
	if seqLT(r.left, dataEnd) {
		n = min(int(seqMin(r.right, dataEnd)-r.left), e.smss)
	}
	flags := uint8(0)
	if r.left+uint32(n) == dataEnd {
		if n > 0 {
			flags |= header.TCPFlagPSH
		}
		if e.finQ && seqGT(r.right, dataEnd) && seqGT(e.sndNxt, dataEnd) {
			flags |= header.TCPFlagFIN
		}
	}
	if n == 0 && flags&header.TCPFlagFIN == 0 {
		return 0
	}
	e.t.c.Retransmits++
	e.rttTiming = false // Karn
	e.send(now, r.left, n, flags)
	sent := uint32(n)
	if flags&header.TCPFlagFIN != 0 {
		sent++
	}
	e.rackSent(now, seqRange{r.left, r.left + sent}, true)
	if e.undoArmed {
		if e.undoRetrans == 0 {
			e.undoTS = e.tsNow(now)
		}
		e.undoRetrans++
		if len(e.undoLog) < maxRxtTracked {
			e.undoLog = append(e.undoLog, seqRange{r.left, r.left + sent})
		} else {
			e.undoLogFull = true
		}
	}
	return sent
}

// retransmitted records a retransmission nextSeg chose.
func (e *Endpoint) retransmitted(r seqRange, kind int) {
	switch kind {
	case segRelost:
		if e.relost[0].left = r.right; !seqLT(r.right, e.relost[0].right) {
			e.relost = e.relost[1:]
		}
	case segLost, segHole:
		e.highRxt = seqMax(e.highRxt, r.right)
	case segRescue:
		e.rescued = true
		return // rule (4) leaves HighRxt, and the tail has nothing above to judge it by
	}
	switch n := len(e.rxt); {
	case !e.sackOK:
	case n < maxRxtTracked:
		e.rxt = append(e.rxt, rxtSeg{r, e.sndNxt})
	default:
		// Full: the newest joins the last one, judged by the later mark,
		// which can only find a loss later, never wrongly.
		x := &e.rxt[n-1]
		x.left, x.right, x.mark = seqMin(x.left, r.left), seqMax(x.right, r.right), e.sndNxt
	}
}

// retransmitFirst sends the oldest unacknowledged segment again (fast
// retransmit, NewReno's partial ACKs).
func (e *Endpoint) retransmitFirst(now time.Time) {
	if !e.canSend() || e.sndUna == e.sndNxt {
		return
	}
	var first seqRange
	e.sb.holes(e.sndUna, e.sndNxt, func(h seqRange) bool { first = h; return false })
	if sent := e.retransmit(now, first); sent > 0 {
		e.retransmitted(seqRange{first.left, first.left + sent}, segLost)
	}
}

// sackUpdate takes the SACK blocks of an ACK into the scoreboard (RFC 6675
// §5, Update) and returns how many bytes they newly SACK. A block must lie
// in what we sent; the part below SND.UNA is old news. A D-SACK (RFC 2883
// §4: the first block, below the cumulative ACK or inside the second
// block) reports a segment that arrived twice: it counts towards undoing
// the episode if a retransmission of ours was that segment.
func (e *Endpoint) sackUpdate(s *segment) int {
	if !e.sackOK || s.opts.NumSACK == 0 {
		return 0
	}
	e.sackSeen = true
	blocks := s.opts.SACK[:s.opts.NumSACK]
	newly := 0
	for i, b := range blocks {
		if !seqLT(b.Left, b.Right) || seqGT(b.Right, e.sndNxt) || seqLT(b.Left, e.sndUna-e.maxWnd) {
			continue // not something we sent: ignored (RFC 2018 gives no other remedy)
		}
		if i == 0 && (seqLT(b.Left, s.ack) ||
			len(blocks) > 1 && seqGEQ(b.Left, blocks[1].Left) && seqLEQ(b.Right, blocks[1].Right)) {
			e.dsack(seqRange{b.Left, b.Right})
			e.rackDSACK(seqRange{b.Left, b.Right})
			if seqLEQ(b.Right, e.sndUna) {
				continue
			}
		}
		r := seqRange{seqMax(b.Left, e.sndUna), b.Right}
		if seqLT(r.left, r.right) {
			newly += e.sb.add(r)
		}
	}
	return newly
}

// dsack counts a D-SACK towards undoing the running episode when it
// reports one of the episode's retransmissions.
func (e *Endpoint) dsack(r seqRange) {
	if !e.undoArmed {
		return
	}
	for _, x := range e.undoLog {
		if seqGEQ(r.left, x.left) && seqLEQ(r.right, x.right) {
			e.undoDSACKs++
			return
		}
	}
}

// enterRecovery starts fast recovery (RFC 6675 §5 step 4; RFC 6582 §3.2
// step 2 without SACK): the one window reduction of the episode, then the
// first segment again.
func (e *Endpoint) enterRecovery(now time.Time) {
	e.armUndo()
	flight := int(e.sndNxt - e.sndUna)
	e.ssthresh = e.cc.OnLoss(e.cwnd, flight, e.smss, now)
	e.recover = e.sndNxt
	e.inRecovery, e.partialSeen, e.rescued = true, false, false
	e.t.c.FastRetransmits++
	if !e.sackOK || !seqLT(e.sndUna, e.highRxt) {
		e.retransmitFirst(now) // unless the last episode sent it already
	}
	if e.sackOK {
		e.cwnd = e.ssthresh // pipe, not inflation, paces the rest
	} else {
		e.cwnd = e.ssthresh + dupThresh*e.smss
	}
}

// enterLoss is the RTO's part in recovery (RFC 6298 §5.5-5.6, RFC 5681
// §3.1, RFC 6675 §5.1): cwnd of one segment, all unSACKed data below
// SND.NXT lost, and a reduction unless this episode had one.
func (e *Endpoint) enterLoss(now time.Time) {
	if !e.inRecovery && !e.inLoss {
		e.armUndo()
		e.ssthresh = e.cc.OnLoss(e.cwnd, int(e.sndNxt-e.sndUna), e.smss, now)
	}
	e.cwnd = e.smss
	e.inRecovery, e.inLoss = false, true
	e.recover = e.sndNxt
	e.highRxt = e.sndUna
	e.rxt, e.relost = nil, nil
	e.dupAcks = 0
	e.rttTiming = false
	e.rackReset()
}

// armUndo remembers the window before an episode's reduction.
func (e *Endpoint) armUndo() {
	// With retransmissions of an earlier episode still outstanding, an
	// old echo may be theirs: Eifel cannot judge this one.
	e.undoArmed, e.undoEifel = true, !seqLT(e.sndUna, e.highRxt)
	e.undoCwnd, e.undoSsthresh = e.cwnd, e.ssthresh
	e.undoRetrans, e.undoDSACKs, e.undoLog, e.undoLogFull = 0, 0, e.undoLog[:0], false
}

// endEpisode leaves fast recovery or RTO recovery. What was retransmitted
// stays known (HighRxt, the watched retransmissions): holes found lost in
// data sent during the episode may have gone already. The reduction may
// still be undone by D-SACKs arriving after.
func (e *Endpoint) endEpisode() {
	e.inRecovery, e.inLoss = false, false
	e.undoEifel = false
	if e.rack.reoPersist > 0 {
		if e.rack.reoPersist--; e.rack.reoPersist == 0 {
			e.rack.reoMult = 0 // RFC 8985 §6.2 step 4: back to min_RTT/4
		}
	}
}

// undo takes back a needless reduction (RFC 4015's idea: the window as it
// was before) and ends the episode if it still runs; loss detection is
// free to start another one at once.
func (e *Endpoint) undo() {
	e.cwnd = max(e.cwnd, e.undoCwnd)
	e.ssthresh = max(e.ssthresh, e.undoSsthresh)
	e.undoArmed = false
	if e.inRecovery || e.inLoss {
		e.endEpisode()
		e.recover = e.sndUna
	}
	e.t.c.SpuriousRecoveries++
}

// ackRecovery runs recovery and the congestion window for an ACK of acked
// new bytes (SND.UNA already advanced), and reports whether the
// retransmission timer restarts.
func (e *Endpoint) ackRecovery(s *segment, acked int, now time.Time) bool {
	if e.sb.advance(e.sndUna) {
		// The peer reneged (RFC 2018 §8): what it SACKed may be lost, and
		// what was judged by it may be wrong. Start again from SND.UNA.
		e.rxt, e.relost, e.highRxt = nil, nil, e.sndUna
		e.rackReset()
	}
	e.highRxt = seqMax(e.highRxt, e.sndUna)
	if e.undoEifel && e.undoRetrans > 0 && (e.inLoss || e.episodeOver()) {
		// Eifel (RFC 3522): the first ACK after an RTO's retransmission,
		// or the one that ends fast recovery (every hole filled), echoing
		// a timestamp older than the first retransmission was sent for an
		// original: the retransmissions were needless.
		if e.tsOK && s.opts.HasTimestamps && s.opts.TSEcr != 0 && seqLT(s.opts.TSEcr, e.undoTS) {
			e.undo()
			return true
		}
		e.undoEifel = false
	}
	switch {
	case e.inRecovery && e.episodeOver():
		// Full acknowledgment (RFC 6582 §3.2 step 3, option 1).
		e.endEpisode()
		e.cwnd = min(e.ssthresh, max(int(e.sndNxt-e.sndUna), e.smss)+e.smss)
	case e.inRecovery && !e.sackOK:
		// Partial acknowledgment (RFC 6582 §3.2 step 4): the next hole
		// goes out now, and the window deflates by what was acknowledged.
		// The timer restarts on the first partial ACK only.
		e.retransmitFirst(now)
		e.cwnd = max(e.cwnd-acked, 0)
		if acked >= e.smss {
			e.cwnd += e.smss
		}
		e.cwnd = max(e.cwnd, e.smss)
		restart := !e.partialSeen
		e.partialSeen = true
		return restart
	case e.inRecovery:
		// A partial ACK with SACK: pipe fell, transmit sends by NextSeg.
		// From a peer whose SACK blocks never reach us (a middlebox strips
		// them), the scoreboard says nothing: infer the next hole as
		// NewReno does.
		if !e.sackSeen && !seqLT(e.sndUna, e.highRxt) {
			e.retransmitFirst(now)
		}
	default:
		e.cwnd = min(e.cc.OnAck(e.cwnd, e.ssthresh, acked, e.smss, now, e.srtt), 1<<30)
		if e.inLoss && e.episodeOver() {
			e.endEpisode()
		}
	}
	return true
}

// dupAck counts a duplicate ACK (RFC 5681 §2; with SACK, one that SACKs
// new data, RFC 6675 §2) and starts fast recovery on the DupThresh-th
// (RFC 6582 §3.2 step 2).
func (e *Endpoint) dupAck(now time.Time) {
	e.dupAcks++
	if e.inRecovery {
		if !e.sackOK {
			e.cwnd += e.smss // NewReno inflation
		}
		return
	}
	if e.dupAcks == dupThresh && !e.inLoss && e.episodeOver() {
		e.enterRecovery(now)
	}
}

// relostAdd queues r, a retransmission found lost, in order. The queue is
// bounded like the watch list: past it, r joins its neighbour, and what
// lies between them goes again too.
func (e *Endpoint) relostAdd(r seqRange) {
	i, _ := slices.BinarySearchFunc(e.relost, r.left, func(x seqRange, s uint32) int { return int(int32(x.left - s)) })
	e.relost = slices.Insert(e.relost, i, r)
	if len(e.relost) > maxRxtTracked {
		i = min(i, len(e.relost)-2)
		a, b := e.relost[i], e.relost[i+1]
		e.relost = slices.Replace(e.relost, i, i+2, seqRange{seqMin(a.left, b.left), seqMax(a.right, b.right)})
	}
}

// sackLoss is loss detection from the scoreboard after an ACK: needless
// retransmissions shown by D-SACKs, lost retransmissions, and fast
// recovery once IsLost(SND.UNA) (RFC 6675 §5) even if fewer than DupThresh
// duplicate ACKs came (ACKs get lost, and one ACK may SACK several
// segments).
func (e *Endpoint) sackLoss(now time.Time) {
	if !e.sackOK {
		return
	}
	if e.undoArmed && !e.undoLogFull && e.undoRetrans > 0 && e.undoDSACKs >= e.undoRetrans {
		e.undo() // every retransmission arrived twice (RFC 3708 §3)
	}
	if e.sndUna == e.sndNxt {
		return
	}
	keep := e.rxt[:0]
	for _, x := range e.rxt {
		x.left = seqMax(x.left, e.sndUna)
		switch {
		case !seqLT(x.left, x.right) || e.sb.unsacked(x.seqRange) == 0:
			// It arrived.
		case e.lostAbove(x.mark):
			e.t.c.LostRetransmits++
			e.relostAdd(x.seqRange)
		default:
			keep = append(keep, x)
		}
	}
	e.rxt = keep
	if !e.inRecovery && !e.inLoss && e.episodeOver() && e.lostAbove(e.sndUna) {
		e.enterRecovery(now)
	}
}
